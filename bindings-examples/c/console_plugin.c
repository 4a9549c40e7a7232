/* A console-plugin-style program: it watches the change feed, acknowledges Warning events as they
 * arrive, and reports VMs whose jobs failed. The callback only queues ids; the main loop acts on
 * them, since callbacks must stay short and must not call ovm_unsubscribe. */
#include "common.h"
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define QMAX 256
struct queue {
  pthread_mutex_t lock;
  char events[QMAX][OVM_ID_LEN];
  char jobs[QMAX][OVM_ID_LEN];
  int nevents, njobs;
};

static void on_change(void *userdata, const ovm_change *c) {
  struct queue *q = userdata;
  pthread_mutex_lock(&q->lock);
  if (c->kind == OVM_OBJECT_EVENT && c->op == OVM_CHANGE_ADDED && q->nevents < QMAX)
    memcpy(q->events[q->nevents++], c->object_id, OVM_ID_LEN);
  if (c->kind == OVM_OBJECT_JOB && c->op == OVM_CHANGE_MODIFIED && q->njobs < QMAX)
    memcpy(q->jobs[q->njobs++], c->object_id, OVM_ID_LEN);
  pthread_mutex_unlock(&q->lock);
}

static int acknowledged = 0, failed_jobs = 0;

static void drain(ovm_manager *mgr, struct queue *q) {
  char events[QMAX][OVM_ID_LEN], jobs[QMAX][OVM_ID_LEN];
  pthread_mutex_lock(&q->lock);
  int ne = q->nevents, nj = q->njobs;
  memcpy(events, q->events, sizeof(events[0]) * (size_t)ne);
  memcpy(jobs, q->jobs, sizeof(jobs[0]) * (size_t)nj);
  q->nevents = q->njobs = 0;
  pthread_mutex_unlock(&q->lock);

  for (int i = 0; i < ne; i++) {
    uint32_t sev = 0;
    bool acked = false;
    CHECK(ovm_event_severity(mgr, events[i], &sev, &acked));
    if (sev == OVM_SEVERITY_WARNING && !acked) {
      ovm_job *job = NULL;
      CHECK(ovm_event_acknowledge(mgr, events[i], &job));
      run_job(job, NULL);
      printf("plugin: acknowledged warning %s\n", events[i]);
      acknowledged++;
    }
  }
  for (int i = 0; i < nj; i++) {
    ovm_job *job = NULL;
    uint32_t state = 0;
    CHECK(ovm_job_lookup(mgr, jobs[i], &job));
    CHECK(ovm_job_state(job, &state));
    if (state == OVM_JOB_STATE_FAILED) {
      char msg[512];
      size_t n = 0;
      CHECK(ovm_job_message(job, msg, sizeof msg, &n));
      printf("plugin: job %s failed: %s\n", jobs[i], msg);
      failed_jobs++;
    }
    ovm_job_free(job);
  }
}

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN], big[OVM_ID_LEN];
  ovm_job *job = NULL;
  struct queue q;
  memset(&q, 0, sizeof q);
  pthread_mutex_init(&q.lock, NULL);

  CHECK(ovm_manager_open(":memory:", &mgr));
  uint64_t sub = 0;
  CHECK(ovm_subscribe(mgr, 0, false, on_change, &q, NULL, &sub));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "app01", pool, 1024, 1, 1, &job));
  run_job(job, vm);

  /* A monitoring hook reports a warning on the VM. */
  char ev[OVM_ID_LEN];
  size_t n = 0;
  CHECK(ovm_event_raise(mgr, OVM_OBJECT_VM, vm, OVM_SEVERITY_WARNING, "monitor.disk", "disk 91% full", ev, sizeof ev, &n));

  /* A VM too large for any server: its start job fails at placement. */
  CHECK(ovm_vm_create(mgr, "huge01", pool, 60000, 4, 0, &job));
  run_job(job, big);
  CHECK(ovm_vm_start(mgr, big, 0, &job));
  ovm_result rc = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  printf("huge01 start: %s\n", ovm_result_name(rc));

  for (int i = 0; i < 100 && (acknowledged < 1 || failed_jobs < 1); i++) {
    drain(mgr, &q);
    usleep(20000);
  }
  CHECK(ovm_unsubscribe(mgr, sub));
  bool acked = false;
  uint32_t sev = 0;
  CHECK(ovm_event_severity(mgr, ev, &sev, &acked));
  ovm_manager_free(mgr);
  pthread_mutex_destroy(&q.lock);
  int ok = rc == OVM_RESULT_INSUFFICIENT_RESOURCES && acknowledged >= 1 && failed_jobs >= 1 && acked;
  printf("console_plugin: %s (acknowledged %d warning(s), reported %d failed job(s))\n", ok ? "OK" : "FAILED",
         acknowledged, failed_jobs);
  return ok ? 0 : 1;
}
