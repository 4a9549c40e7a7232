/* Migration pre-checks: every reason a live migration would fail, from one call. A small server in
 * maintenance mode without the VM's network reports all three reasons at once; a clean server
 * reports none, and the migration then goes. */
#include "common.h"
#include <string.h>

/* Print the blockers and whether each of the `want` kinds is among them. */
static int report(const ovm_migration_blocker *b, size_t n, const uint32_t *want, size_t n_want) {
  for (size_t i = 0; i < n; i++) {
    const char *about = b[i].has_object ? b[i].object_id : "-";
    printf("  %-22s about %s: %s\n", ovm_migration_blocker_kind_name(b[i].kind), about, b[i].detail);
  }
  for (size_t w = 0; w < n_want; w++) {
    int seen = 0;
    for (size_t i = 0; i < n; i++) seen |= b[i].kind == want[w];
    if (!seen) {
      fprintf(stderr, "blocker %s was not reported\n", ovm_migration_blocker_kind_name(want[w]));
      return 0;
    }
  }
  return 1;
}

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], s3[OVM_ID_LEN], pool[OVM_ID_LEN], net[OVM_ID_LEN], vm[OVM_ID_LEN];
  char on[OVM_ID_LEN];
  ovm_job *job = NULL;
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  /* A third, small server: 4 GiB, 1 GiB of it for dom0. */
  CHECK(ovm_server_discover(mgr, "sim://xen3?memory_mib=4096", OVM_SIM_PASSWORD, &job));
  run_job(job, s3);
  CHECK(ovm_pool_add_server(mgr, pool, s3, &job));
  run_job(job, NULL);
  /* The VM network has members (eth1) on xen1 and xen2 only. */
  CHECK(ovm_network_create(mgr, "vmnet", "xenbr1", 0, &job));
  run_job(job, net);
  const char *eth1s[] = {"xen1:eth1", "xen2:eth1"};
  for (int i = 0; i < 2; i++) {
    char eth1[OVM_ID_LEN];
    CHECK(ovm_object_lookup_by_name(mgr, OVM_OBJECT_PORT, eth1s[i], eth1, OVM_ID_LEN, &n));
    CHECK(ovm_network_add_member(mgr, net, OVM_MEMBER_PORT, eth1, &job));
    run_job(job, NULL);
  }
  CHECK(ovm_vm_create(mgr, "big", pool, 8192, 2, 1, &job));
  run_job(job, vm);
  CHECK(ovm_vm_set_vnic_network(mgr, vm, 0, net, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_server_set_maintenance(mgr, s3, true, &job));
  run_job(job, NULL);

  /* How many: cap 0 answers OVM_RESULT_BUFFER_TOO_SMALL with the number found. */
  ovm_result rc = ovm_vm_migration_blockers(mgr, vm, s3, NULL, 0, &n);
  if (rc != OVM_RESULT_BUFFER_TOO_SMALL || n != 3) {
    fprintf(stderr, "expected 3 blockers, got %s and %zu\n", ovm_result_name(rc), n);
    return 1;
  }
  ovm_migration_blocker blockers[8];
  CHECK(ovm_vm_migration_blockers(mgr, vm, s3, blockers, 8, &n));
  printf("migrating big to xen3 is blocked %zu times:\n", n);
  const uint32_t want[] = {OVM_MIGRATION_BLOCKER_TARGET_IN_MAINTENANCE, OVM_MIGRATION_BLOCKER_NETWORK_MISSING,
                           OVM_MIGRATION_BLOCKER_INSUFFICIENT_MEMORY};
  int all = report(blockers, n, want, 3);
  for (size_t i = 0; i < n; i++) {
    if (blockers[i].kind == OVM_MIGRATION_BLOCKER_NETWORK_MISSING &&
        (!blockers[i].has_object || blockers[i].object_kind != OVM_OBJECT_NETWORK ||
         strcmp(blockers[i].object_id, net) != 0)) {
      fprintf(stderr, "the missing network is not named\n");
      all = 0;
    }
  }
  ovm_migration_blockers_free(blockers, n);
  if (!all) return 1;

  /* The same as one error, and migrate refuses at once: no job. */
  rc = ovm_vm_assert_can_migrate(mgr, vm, s3);
  char msg[2048];
  if (rc != OVM_RESULT_INVALID_STATE || ovm_last_error_message(msg, sizeof msg, &n) != OVM_RESULT_OK) {
    fprintf(stderr, "assert_can_migrate: %s\n", ovm_result_name(rc));
    return 1;
  }
  printf("assert_can_migrate: %s\n", msg);
  job = NULL;
  rc = ovm_vm_migrate(mgr, vm, s3, 0, &job);
  if (rc != OVM_RESULT_INVALID_STATE || job != NULL) {
    fprintf(stderr, "migrate to xen3: %s\n", ovm_result_name(rc));
    return 1;
  }
  char *json = NULL;
  CHECK(ovm_vm_migration_blockers_json(mgr, vm, s3, &json));
  printf("as JSON: %.120s...\n", json);
  if (!strstr(json, "\"kind\":\"TargetInMaintenance\"")) return 1;
  ovm_string_free(json);

  /* The other big server is clean: no blockers, and the migration goes. */
  CHECK(ovm_vm_server(mgr, vm, on, sizeof on, &n));
  const char *other = strcmp(on, s1) == 0 ? s2 : s1;
  CHECK(ovm_vm_migration_blockers(mgr, vm, other, blockers, 8, &n));
  if (n != 0) return 1;
  CHECK(ovm_vm_assert_can_migrate(mgr, vm, other));
  CHECK(ovm_vm_migrate(mgr, vm, other, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_server(mgr, vm, on, sizeof on, &n));
  if (strcmp(on, other) != 0) return 1;
  printf("migrated big to %s\n", strcmp(other, s1) == 0 ? "xen1" : "xen2");

  /* Bad input is a typed error. */
  if (ovm_vm_migration_blockers(mgr, vm, other, NULL, 4, &n) != OVM_RESULT_NULL_PARAMETER) return 1;
  if (ovm_vm_migration_blockers(mgr, vm, "not-a-uuid", blockers, 8, &n) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  if (ovm_vm_assert_can_migrate(mgr, vm, "00000000-0000-0000-0000-000000000000") != OVM_RESULT_NOT_FOUND) return 1;
  if (ovm_migration_blocker_kind_name(0) != NULL) return 1;
  ovm_migration_blockers_free(NULL, 3);

  ovm_manager_free(mgr);
  printf("migration_blockers: OK\n");
  return 0;
}
