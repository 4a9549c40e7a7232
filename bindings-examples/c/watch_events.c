/* Subscribe to the change feed with a callback, make changes, count what arrives, unsubscribe. */
#include "common.h"
#include <pthread.h>
#include <string.h>
#include <unistd.h>

struct counts {
  pthread_mutex_t lock;
  unsigned added, modified, removed, lost, vms, jobs;
  int freed;
};

/* Runs on the subscription's thread. */
static void on_change(void *userdata, const ovm_change *c) {
  struct counts *k = userdata;
  pthread_mutex_lock(&k->lock);
  switch (c->op) {
    case OVM_CHANGE_ADDED: k->added++; break;
    case OVM_CHANGE_MODIFIED: k->modified++; break;
    case OVM_CHANGE_REMOVED: k->removed++; break;
    case OVM_CHANGE_EVENTS_LOST: k->lost++; break;
  }
  if (c->kind == OVM_OBJECT_VM) k->vms++;
  if (c->kind == OVM_OBJECT_JOB) k->jobs++;
  pthread_mutex_unlock(&k->lock);
}

static void on_free(void *userdata) {
  struct counts *k = userdata;
  k->freed = 1;
}

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;
  struct counts k;
  memset(&k, 0, sizeof k);
  pthread_mutex_init(&k.lock, NULL);

  CHECK(ovm_manager_open(":memory:", &mgr));
  uint64_t start = 0, sub = 0;
  CHECK(ovm_current_token(mgr, &start));
  CHECK(ovm_subscribe(mgr, 0, false, on_change, &k, on_free, &sub));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "watched", pool, 512, 1, 0, &job));
  run_job(job, vm);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_kill(mgr, vm, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_delete(mgr, vm, 0, &job));
  run_job(job, NULL);

  uint64_t end = 0;
  CHECK(ovm_current_token(mgr, &end));
  /* Wait until the subscriber has seen every change up to `end`. */
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&k.lock);
    unsigned seen = k.added + k.modified + k.removed;
    pthread_mutex_unlock(&k.lock);
    if (seen >= end - start) break;
    usleep(10000);
  }
  CHECK(ovm_unsubscribe(mgr, sub));
  printf("changes %llu..%llu: added %u, modified %u, removed %u, lost %u (VM changes %u, job changes %u)\n",
         (unsigned long long)start, (unsigned long long)end, k.added, k.modified, k.removed, k.lost, k.vms, k.jobs);

  char *json = NULL;
  uint64_t next = 0;
  CHECK(ovm_changes_since(mgr, end - 3, &json, &next));
  printf("last 3 changes: %.200s (next token %llu)\n", json, (unsigned long long)next);
  ovm_string_free(json);

  int ok = k.freed && k.added + k.modified + k.removed == end - start && k.removed >= 1 && k.vms >= 4;
  ovm_manager_free(mgr);
  pthread_mutex_destroy(&k.lock);
  printf("watch_events: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
