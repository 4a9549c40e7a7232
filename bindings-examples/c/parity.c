/* The binding parity scenario through C (see ovm-core/examples/parity.rs): builds the same inventory
 * with the typed calls and prints the same JSON document the Rust and Python versions print;
 * bindings-examples/parity_compare.py compares them (make parity-test).
 *
 * With a URI argument (`parity ovm+unix:///path/manager.sock`) the same calls go to a manager
 * service (`ovm serve`) instead of an in-process manager: remote_parity.sh runs both and compares
 * them. The simulated NFS export then lives in the service (`ovm serve --sim-nfs-export`); adding
 * it through the handle needs an in-process manager and is refused, typed. */
#include "common.h"
#include <string.h>

/* The error code of a call refused at once or failing in its job (0: it succeeded). */
static unsigned code(ovm_result rc, ovm_job *job) {
  if (rc != OVM_RESULT_OK) return (unsigned)rc;
  rc = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  return (unsigned)rc;
}

/* Print `name: <owned JSON>` and free the JSON. */
static void section(const char *name, char *json, int last) {
  printf("  \"%s\": %s%s\n", name, json, last ? "" : ",");
  ovm_string_free(json);
}

int main(int argc, char **argv) {
  const char *uri = argc > 1 ? argv[1] : ":memory:";
  int remote = strncmp(uri, "ovm+", 4) == 0;
  ovm_manager *mgr = NULL;
  ovm_job *job = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], nfs[OVM_ID_LEN], fs[OVM_ID_LEN], repo[OVM_ID_LEN];
  char net[OVM_ID_LEN], disk[OVM_ID_LEN], web[OVM_ID_LEN], db[OVM_ID_LEN];
  char *running = NULL, *json = NULL;

  CHECK(ovm_manager_open(uri, &mgr));
  sim_pool(mgr, s1, s2, pool);
  if (!remote) {
    CHECK(ovm_sim_add_nfs_export(mgr, "nfs.example.com", "/export/fs1", 1ULL << 40));
  } else if (ovm_sim_add_nfs_export(mgr, "nfs.example.com", "/export/fs1", 1ULL << 40) != OVM_RESULT_UNSUPPORTED) {
    fprintf(stderr, "the simulated world of a service was reachable through its client\n");
    return 1;
  }
  const char *admins[] = {s1};
  CHECK(ovm_file_server_register(mgr, "nfs1", OVM_FILE_SERVER_NFS, "nfs.example.com", admins, 1, &job));
  run_job(job, nfs);
  char *fss = NULL;
  CHECK(ovm_file_system_list_json(mgr, nfs, &fss));
  const char *fs_at = strstr(fss, "\"id\":\"");
  if (!fs_at) {
    fprintf(stderr, "no file system discovered: %s\n", fss);
    return 1;
  }
  memcpy(fs, fs_at + 6, OVM_ID_LEN - 1);
  fs[OVM_ID_LEN - 1] = 0;
  ovm_string_free(fss);
  CHECK(ovm_repository_create(mgr, "repo1", fs, pool, 100ULL << 30, &job));
  run_job(job, repo);
  CHECK(ovm_repository_present(mgr, repo, s1, &job));
  run_job(job, NULL);
  CHECK(ovm_repository_present(mgr, repo, s2, &job));
  run_job(job, NULL);
  CHECK(ovm_network_create(mgr, "vmnet", "xenbr1", 0, &job));
  run_job(job, net);
  /* The VM network's bridge is made on the servers that have a member in it: eth1 of each. */
  const char *eth1s[] = {"xen1:eth1", "xen2:eth1"};
  for (int i = 0; i < 2; i++) {
    char eth1[OVM_ID_LEN];
    size_t found = 0;
    CHECK(ovm_object_lookup_by_name(mgr, OVM_OBJECT_PORT, eth1s[i], eth1, OVM_ID_LEN, &found));
    CHECK(ovm_network_add_member(mgr, net, OVM_MEMBER_PORT, eth1, &job));
    run_job(job, NULL);
  }
  CHECK(ovm_virtual_disk_create(mgr, repo, "web-disk", 1ULL << 30, &job));
  run_job(job, disk);

  CHECK(ovm_vm_create(mgr, "web", pool, 1024, 2, 1, &job));
  run_job(job, web);
  CHECK(ovm_vm_set_vnic_network(mgr, web, 0, net, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_attach_disk(mgr, web, 0, disk, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_create(mgr, "db", pool, 2048, 1, 0, &job));
  run_job(job, db);
  CHECK(ovm_vm_set_kernel(mgr, db, "/boot/vmlinuz", NULL, "console=hvc0", &job));
  run_job(job, NULL);

  CHECK(ovm_vm_start(mgr, web, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_list_json(mgr, pool, NULL, OVM_POWER_RUNNING, &running));
  CHECK(ovm_vm_stop(mgr, web, 10000, OVM_STOP_FORCE, &job));
  run_job(job, NULL);

  /* The edit the generic path must refuse: the VM's record with its power state set. */
  char *vm_json = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_VM, web, &vm_json));
  const char *stopped = "\"power_state\":\"Stopped\"";
  char *at = strstr(vm_json, stopped);
  if (!at) {
    fprintf(stderr, "no power state in %s\n", vm_json);
    return 1;
  }
  size_t edit_len = strlen(vm_json) + 64;
  char *edit = malloc(edit_len);
  if (!edit) return 1;
  snprintf(edit, edit_len, "{\"kind\":\"Vm\",\"object\":%.*s\"power_state\":\"Running\"%s}", (int)(at - vm_json), vm_json,
           at + strlen(stopped));
  ovm_string_free(vm_json);

  unsigned duplicate_pool, edit_power_state, start_unknown_vm;
  job = NULL;
  duplicate_pool = code(ovm_pool_create(mgr, "pool1", &job), job);
  job = NULL;
  edit_power_state = code(ovm_object_update_json(mgr, edit, &job), job);
  free(edit);
  job = NULL;
  start_unknown_vm = code(ovm_vm_start(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", 0, &job), job);

  printf("{\n");
  CHECK(ovm_server_list_json(mgr, pool, OVM_SERVER_POWER_ANY, &json));
  section("servers_in_pool", json, 0);
  CHECK(ovm_object_list_json(mgr, OVM_OBJECT_FILE_SYSTEM, &json));
  section("file_systems", json, 0);
  CHECK(ovm_object_list_json(mgr, OVM_OBJECT_REPOSITORY, &json));
  section("repositories", json, 0);
  CHECK(ovm_object_list_json(mgr, OVM_OBJECT_NETWORK, &json));
  section("networks", json, 0);
  CHECK(ovm_virtual_disk_list_json(mgr, repo, &json));
  section("disks_in_repo", json, 0);
  CHECK(ovm_vm_list_json(mgr, NULL, NULL, OVM_POWER_ANY, &json));
  section("vms", json, 0);
  section("running_in_pool", running, 0);
  CHECK(ovm_vm_list_json(mgr, NULL, NULL, OVM_POWER_STOPPED, &json));
  section("stopped", json, 0);
  printf("  \"errors\": {\"duplicate_pool\": %u, \"edit_power_state\": %u, \"start_unknown_vm\": %u}\n}\n",
         duplicate_pool, edit_power_state, start_unknown_vm);
  ovm_manager_free(mgr);
  return 0;
}
