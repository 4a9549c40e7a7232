/* Create a VM, start it and wait for its job, read its state and console, migrate it, stop it. */
#include "common.h"
#include <string.h>

static uint32_t power(ovm_manager *mgr, const char *vm) {
  uint32_t st = 0;
  CHECK(ovm_vm_power_state(mgr, vm, &st));
  return st;
}

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN], on[OVM_ID_LEN];
  ovm_job *job = NULL;
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "db01", pool, 2048, 2, 1, &job));
  run_job(job, vm);

  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  uint32_t state = 0;
  float progress = 0;
  CHECK(ovm_job_wait(job, 30000));
  CHECK(ovm_job_state(job, &state));
  CHECK(ovm_job_progress(job, &progress));
  char msg[256];
  CHECK(ovm_job_message(job, msg, sizeof msg, &n));
  printf("start job: state %u, progress %.1f, message \"%s\"\n", state, progress, msg);
  ovm_job_free(job);
  if (state != OVM_JOB_STATE_COMPLETED || power(mgr, vm) != OVM_POWER_RUNNING) {
    fprintf(stderr, "VM did not start\n");
    return 1;
  }
  char *console = NULL;
  CHECK(ovm_vm_console(mgr, vm, &console));
  printf("console: %s", console);
  ovm_string_free(console);

  CHECK(ovm_vm_server(mgr, vm, on, sizeof on, &n));
  const char *other = strcmp(on, s1) == 0 ? s2 : s1;
  CHECK(ovm_vm_migrate(mgr, vm, other, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_server(mgr, vm, on, sizeof on, &n));
  printf("migrated to %s\n", on);
  if (strcmp(on, other) != 0) return 1;

  /* A cold move back, chosen explicitly; it takes a migration slot like a live one. */
  uint32_t limit = 0;
  CHECK(ovm_migration_limit(mgr, &limit));
  CHECK(ovm_migration_limit_set(mgr, limit + 1, &job));
  run_job(job, NULL);
  CHECK(ovm_migration_limit(mgr, &limit));
  printf("migration limit: %u\n", limit);
  if (limit != 3) return 1;
  const char *back = strcmp(on, s1) == 0 ? s2 : s1;
  CHECK(ovm_vm_migrate_with(mgr, vm, back, OVM_MIGRATION_COLD, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_server(mgr, vm, on, sizeof on, &n));
  printf("moved cold to %s, power state %u\n", on, power(mgr, vm));
  if (strcmp(on, back) != 0 || power(mgr, vm) != OVM_POWER_RUNNING) return 1;

  CHECK(ovm_vm_stop(mgr, vm, 10000, OVM_STOP_FORCE, &job));
  run_job(job, NULL);
  printf("power state after stop: %u\n", power(mgr, vm));
  if (power(mgr, vm) != OVM_POWER_STOPPED) return 1;

  char *jobs = NULL;
  CHECK(ovm_job_list_json(mgr, 3, &jobs));
  printf("latest jobs: %.160s...\n", jobs);
  ovm_string_free(jobs);
  ovm_manager_free(mgr);
  printf("start_vm: OK\n");
  return 0;
}
