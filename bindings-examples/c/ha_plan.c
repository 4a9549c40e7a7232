/* HA: the failures-to-tolerate planner. Three servers with 7 GiB for guests each run an HA VM of
 * 3 GiB: any one server may fail (its VM restarts on another), but not two (the survivor takes one of
 * the two VMs). The plan names the VM that would not restart and why. */
#include "common.h"
#include <string.h>

int main(void) {
  ovm_manager *mgr = NULL;
  char s[3][OVM_ID_LEN], pool[OVM_ID_LEN], vm[3][OVM_ID_LEN], on[OVM_ID_LEN];
  ovm_job *job = NULL;
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  CHECK(ovm_pool_create(mgr, "pool1", &job));
  run_job(job, pool);
  for (int i = 0; i < 3; i++) {
    char address[64];
    snprintf(address, sizeof address, "sim://xen%d?memory_mib=8192", i + 1);
    CHECK(ovm_server_discover(mgr, address, OVM_SIM_PASSWORD, &job));
    run_job(job, s[i]);
    CHECK(ovm_pool_add_server(mgr, pool, s[i], &job));
    run_job(job, NULL);
  }
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "ha%d", i + 1);
    CHECK(ovm_vm_create(mgr, name, pool, 3072, 1, 0, &job));
    run_job(job, vm[i]);
    CHECK(ovm_vm_set_high_availability(mgr, vm[i], true, (uint8_t)(30 * (i + 1)), &job));
    run_job(job, NULL);
    /* Each on its own server, chosen explicitly. */
    CHECK(ovm_vm_start_on(mgr, vm[i], s[i], 0, &job));
    run_job(job, NULL);
    CHECK(ovm_vm_server(mgr, vm[i], on, sizeof on, &n));
    if (strcmp(on, s[i]) != 0) return 1;
  }

  ovm_ha_plan *one = NULL;
  CHECK(ovm_pool_ha_plan(mgr, pool, 1, &one));
  printf("one failure: tolerated=%d exhaustive=%d combinations=%llu of %u servers\n", one->tolerated,
         one->exhaustive, (unsigned long long)one->combinations, one->servers_considered);
  if (!one->tolerated || !one->exhaustive || one->combinations != 3 || one->servers_considered != 3 ||
      one->memory_bound != -1 || one->n_not_restarted != 0 || one->n_failed != 1 || one->n_decisions != 1 ||
      one->decisions[0].action != OVM_HA_RESTART || !one->decisions[0].has_target)
    return 1;
  ovm_ha_plan_free(one);

  ovm_ha_plan *two = NULL;
  CHECK(ovm_pool_ha_plan(mgr, pool, 2, &two));
  printf("two failures: tolerated=%d, %zu HA VM(s) would not restart\n", two->tolerated, two->n_not_restarted);
  if (two->tolerated || two->n_not_restarted != 1 || two->n_failed != 2 || two->n_decisions != 2) return 1;
  int seen = 0;
  for (size_t i = 0; i < two->n_decisions; i++) {
    const ovm_ha_decision *d = &two->decisions[i];
    printf("  %s (priority %u, %llu MiB): %s\n", d->vm_name, d->priority, (unsigned long long)d->memory_mib,
           d->detail);
    if (i > 0 && d->priority > two->decisions[i - 1].priority) return 1; /* priority order */
    if (d->action != OVM_HA_NOT_RESTARTED) continue;
    if (d->has_target || d->n_reasons != 1) return 1;
    const ovm_ha_reason *r = &d->reasons[0];
    printf("    %s on %s: %s\n", ovm_ha_reason_kind_name(r->kind), r->server_id, r->detail);
    if (r->kind != OVM_HA_REASON_NO_CAPACITY || !r->has_server) return 1;
    for (size_t f = 0; f < two->n_failed; f++)
      if (strcmp(r->server_id, two->failed[f].id) == 0) return 1; /* a survivor */
    seen = 1;
  }
  ovm_ha_plan_free(two);
  if (!seen) return 1;

  char *json = NULL;
  CHECK(ovm_pool_ha_plan_json(mgr, pool, 2, &json));
  printf("as JSON: %.100s...\n", json);
  if (!strstr(json, "\"tolerated\":false") || !strstr(json, "\"kind\":\"NoCapacity\"")) return 1;
  ovm_string_free(json);

  uint32_t max = 99;
  CHECK(ovm_pool_max_failures_tolerated(mgr, pool, &max));
  printf("the pool tolerates %u failure(s)\n", max);
  if (max != 1) return 1;
  /* DPM keeps room for as many failures as the pool is set to tolerate: at most what it absorbs. */
  job = NULL;
  if (ovm_pool_set_ha_failures_to_tolerate(mgr, pool, 2, &job) != OVM_RESULT_CONFLICT || job != NULL) return 1;
  char msg[512];
  CHECK(ovm_last_error_message(msg, sizeof msg, &n));
  printf("tolerating 2 failures refused: %s\n", msg);
  CHECK(ovm_pool_set_ha_failures_to_tolerate(mgr, pool, 1, &job));
  run_job(job, NULL);

  /* Bad input is a typed error. */
  const char *nil = "00000000-0000-0000-0000-000000000000";
  ovm_ha_plan *p = NULL;
  if (ovm_pool_ha_plan(mgr, nil, 1, &p) != OVM_RESULT_NOT_FOUND || p != NULL) return 1;
  if (ovm_pool_ha_plan(mgr, pool, 4, &p) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  if (ovm_pool_ha_plan(mgr, pool, 1, NULL) != OVM_RESULT_NULL_PARAMETER) return 1;
  if (ovm_pool_max_failures_tolerated(mgr, nil, &max) != OVM_RESULT_NOT_FOUND) return 1;
  if (ovm_vm_set_high_availability(mgr, vm[0], true, 0, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  if (ovm_vm_start_on(mgr, vm[0], s[1], 0, &job) != OVM_RESULT_INVALID_STATE) return 1; /* running */
  if (ovm_ha_reason_kind_name(0) != NULL) return 1;
  ovm_ha_plan_free(NULL);

  /* A clustered pool made on a shared LUN: its members form its cluster on their servers. */
  char array[OVM_ID_LEN], disk[OVM_ID_LEN], cpool[OVM_ID_LEN], s4[OVM_ID_LEN];
  const char *admins[] = {s[0]};
  CHECK(ovm_sim_add_lun(mgr, "iqn.2026-01.ovm.sim:pool", "pool", 1ULL << 30));
  CHECK(ovm_storage_array_register(mgr, "array", "storage", 3260, admins, 1, &job));
  run_job(job, array);
  char *luns = NULL;
  CHECK(ovm_physical_disk_list_json(mgr, array, &luns));
  const char *at = strstr(luns, "\"id\":\"");
  if (!at) return 1;
  memcpy(disk, at + 6, OVM_ID_LEN - 1);
  disk[OVM_ID_LEN - 1] = '\0';
  ovm_string_free(luns);
  job = NULL;
  if (ovm_pool_create_clustered(mgr, "cp", "not-an-ip", disk, 12, &job) != OVM_RESULT_INVALID_ARGUMENT || job)
    return 1;
  if (ovm_pool_create_clustered(mgr, "cp", "192.0.2.30", nil, 12, &job) != OVM_RESULT_NOT_FOUND || job) return 1;
  if (ovm_pool_create_clustered(mgr, "cp", "192.0.2.30", disk, 5, &job) != OVM_RESULT_INVALID_ARGUMENT || job)
    return 1;
  CHECK(ovm_pool_create_clustered(mgr, "cp", "192.0.2.30", disk, 12, &job));
  run_job(job, cpool);
  CHECK(ovm_server_discover(mgr, "sim://xen4", OVM_SIM_PASSWORD, &job));
  run_job(job, s4);
  CHECK(ovm_pool_add_server(mgr, cpool, s4, &job));
  run_job(job, NULL);
  char *cluster = NULL;
  CHECK(ovm_pool_cluster_status_json(mgr, cpool, &cluster));
  printf("the clustered pool's cluster: %s\n", cluster);
  int formed = strstr(cluster, "\"members\":[\"xen4\"]") && strstr(cluster, "\"master\":\"xen4\"") &&
               strstr(cluster, "\"epoch\":1");
  ovm_string_free(cluster);
  if (!formed) return 1;
  CHECK(ovm_pool_cluster_status_json(mgr, pool, &cluster));
  int none = strcmp(cluster, "null") == 0; /* the servers of the unclustered pool are in no cluster */
  ovm_string_free(cluster);
  if (!none) return 1;
  if (ovm_pool_cluster_status_json(mgr, nil, &cluster) != OVM_RESULT_NOT_FOUND) return 1;
  /* The pool reached at its address: its master answers. */
  CHECK(ovm_pool_reach_json(mgr, cpool, &cluster));
  printf("reached at its address: %s\n", cluster);
  int reached = strstr(cluster, s4) && strstr(cluster, "\"master\":\"xen4\"");
  ovm_string_free(cluster);
  if (!reached) return 1;
  if (ovm_pool_reach_json(mgr, pool, &cluster) != OVM_RESULT_INVALID_ARGUMENT) return 1;

  /* A clustered pool whose pool file system is a file on an NFS file system, as Oracle VM keeps it. */
  char nfs[OVM_ID_LEN], fs[OVM_ID_LEN], npool[OVM_ID_LEN], s5[OVM_ID_LEN];
  CHECK(ovm_sim_add_nfs_export(mgr, "nfs.example.com", "/export/poolfs", 1ULL << 40));
  CHECK(ovm_file_server_register(mgr, "nfs1", OVM_FILE_SERVER_NFS, "nfs.example.com", admins, 1, &job));
  run_job(job, nfs);
  char *fss = NULL;
  CHECK(ovm_file_system_list_json(mgr, nfs, &fss));
  at = strstr(fss, "\"id\":\"");
  if (!at) return 1;
  memcpy(fs, at + 6, OVM_ID_LEN - 1);
  fs[OVM_ID_LEN - 1] = '\0';
  ovm_string_free(fss);
  job = NULL;
  if (ovm_pool_create_clustered_on_file_system(mgr, "np", "192.0.2.31", nil, 12, &job) != OVM_RESULT_NOT_FOUND ||
      job)
    return 1;
  CHECK(ovm_pool_create_clustered_on_file_system(mgr, "np", "192.0.2.31", fs, 12, &job));
  run_job(job, npool);
  CHECK(ovm_server_discover(mgr, "sim://xen5", OVM_SIM_PASSWORD, &job));
  run_job(job, s5);
  CHECK(ovm_pool_add_server(mgr, npool, s5, &job));
  run_job(job, NULL);
  CHECK(ovm_pool_cluster_status_json(mgr, npool, &cluster));
  printf("the cluster of the pool on NFS: %s\n", cluster);
  formed = strstr(cluster, "\"members\":[\"xen5\"]") && strstr(cluster, "\"master\":\"xen5\"");
  ovm_string_free(cluster);
  if (!formed) return 1;

  ovm_manager_free(mgr);
  printf("ha_plan: OK\n");
  return 0;
}
