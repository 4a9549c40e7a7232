/* DRS from C: three busy VMs on one server of a simulated pool, the pool's policy set to DRS with
 * a 30% CPU threshold, loads sampled, the dry-run plan read (one migration, its reason) and then
 * carried out: one VM moves to the idle server. A bad mode or period is refused. */
#include "common.h"
#include <string.h>

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;
  size_t n = 0;
  char *json = NULL;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  ovm_load_sampling settings;
  CHECK(ovm_load_sampling_get(mgr, &settings));
  settings.interval_ms = 1000;
  settings.raw_retention_ms = 600000;
  settings.coarse_interval_ms = 10000;
  settings.coarse_retention_ms = 600000;
  CHECK(ovm_load_sampling_set(mgr, settings));

  /* Server 2 in maintenance mode while the VMs start: they all run on server 1. */
  CHECK(ovm_server_set_maintenance(mgr, s2, true, &job));
  run_job(job, NULL);
  const char *names[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    CHECK(ovm_vm_create(mgr, names[i], pool, 1024, 1, 0, &job));
    run_job(job, vm);
    CHECK(ovm_vm_start(mgr, vm, 0, &job));
    run_job(job, NULL);
    CHECK(ovm_sim_set_domain_load(mgr, vm, 100.0f));
  }
  CHECK(ovm_server_set_maintenance(mgr, s2, false, &job));
  run_job(job, NULL);

  if (ovm_pool_set_policy(mgr, pool, 7, 30, 60, NULL, NULL, 0, &job) != OVM_RESULT_INVALID_ENUM ||
      ovm_pool_set_policy(mgr, pool, OVM_POLICY_DRS, 30, 10, NULL, NULL, 0, &job) != OVM_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "a bad policy was accepted\n");
    return 1;
  }
  CHECK(ovm_pool_set_policy(mgr, pool, OVM_POLICY_DRS, 30, 60, NULL, NULL, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_sample_loads(mgr, &n));

  CHECK(ovm_pool_policy_plan_json(mgr, pool, &json));
  printf("plan: %s\n", json);
  const char *first = strstr(json, "\"action\":\"migrate\"");
  if (first == NULL || strstr(first + 1, "\"action\"") != NULL || strstr(json, "\"cpu_over_threshold\"") == NULL ||
      strstr(json, s1) == NULL || strstr(json, s2) == NULL) {
    fprintf(stderr, "expected one migration from server 1 to server 2 for CPU\n");
    return 1;
  }
  ovm_string_free(json);

  CHECK(ovm_pool_run_policy(mgr, pool, &job));
  run_job(job, NULL);
  ovm_load_sample sample;
  bool found = false;
  CHECK(ovm_sample_loads(mgr, &n));
  CHECK(ovm_server_load(mgr, s2, &sample, &found));
  if (!found || sample.vm_count != 1) {
    fprintf(stderr, "server 2 does not run the moved VM\n");
    return 1;
  }
  printf("one VM moved to server 2; it now runs %u VM at %.1f%% CPU\n", sample.vm_count, sample.cpu_percent);
  ovm_manager_free(mgr);
  return 0;
}
