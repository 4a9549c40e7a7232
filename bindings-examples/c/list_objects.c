/* List the objects of a manager: servers, pools, networks and VMs, with their counts and records. */
#include "common.h"
#include <string.h>

static void list(ovm_manager *mgr, uint32_t kind, const char *label) {
  size_t count = 0;
  char *json = NULL;
  CHECK(ovm_object_count(mgr, kind, &count));
  CHECK(ovm_object_list_json(mgr, kind, &json));
  printf("%-10s %zu: %.120s%s\n", label, count, json, strlen(json) > 120 ? "..." : "");
  ovm_string_free(json);
}

int main(int argc, char **argv) {
  const char *db = argc > 1 ? argv[1] : ":memory:";
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;

  printf("ovm %s, database %s\n", ovm_version(), db);
  CHECK(ovm_manager_open(db, &mgr));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "web01", pool, 1024, 1, 1, &job));
  run_job(job, vm);

  list(mgr, OVM_OBJECT_SERVER, "servers");
  list(mgr, OVM_OBJECT_SERVER_POOL, "pools");
  list(mgr, OVM_OBJECT_NETWORK, "networks");
  list(mgr, OVM_OBJECT_VM, "vms");

  char found[OVM_ID_LEN];
  size_t n = 0;
  CHECK(ovm_object_lookup_by_name(mgr, OVM_OBJECT_VM, "web01", found, sizeof found, &n));
  if (strcmp(found, vm) != 0) {
    fprintf(stderr, "lookup by name returned %s, expected %s\n", found, vm);
    return 1;
  }
  char *rec = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_VM, vm, &rec));
  printf("web01 = %.200s\n", rec);
  ovm_string_free(rec);
  ovm_manager_free(mgr);
  printf("list_objects: OK\n");
  return 0;
}
