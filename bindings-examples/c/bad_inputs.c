/* C-level tests of bad inputs: every one gets a clear result code and message, never a crash or leak. */
#include "common.h"
#include <string.h>

static int passed = 0, failed = 0;

static void expect(const char *what, ovm_result got, ovm_result want) {
  char msg[256];
  size_t n = 0;
  if (ovm_last_error_message(msg, sizeof msg, &n) != OVM_RESULT_OK) strcpy(msg, "(message too long)");
  if (got == want && (want == OVM_RESULT_OK || msg[0] != 0)) {
    passed++;
    printf("ok   %-44s %s: %s\n", what, ovm_result_name(got), msg);
  } else {
    failed++;
    printf("FAIL %-44s got %s, want %s (message \"%s\")\n", what, ovm_result_name(got), ovm_result_name(want), msg);
  }
}

int main(void) {
  ovm_manager *mgr = NULL;
  ovm_job *job = NULL;
  char buf[OVM_ID_LEN];
  size_t n = 0;
  uint32_t u = 0;
  uint64_t id64 = 0;
  char *js = NULL;

  expect("open with NULL uri", ovm_manager_open(NULL, &mgr), OVM_RESULT_NULL_PARAMETER);
  expect("open with NULL out", ovm_manager_open(":memory:", NULL), OVM_RESULT_NULL_PARAMETER);
  expect("open with an unsupported URI", ovm_manager_open("postgres://db", &mgr), OVM_RESULT_INVALID_ARGUMENT);
  expect("open", ovm_manager_open(":memory:", &mgr), OVM_RESULT_OK);

  expect("NULL manager", ovm_pool_create(NULL, "p", &job), OVM_RESULT_NULL_PARAMETER);
  expect("NULL name", ovm_pool_create(mgr, NULL, &job), OVM_RESULT_NULL_PARAMETER);
  expect("NULL out job", ovm_pool_create(mgr, "p", NULL), OVM_RESULT_NULL_PARAMETER);
  const char bad_utf8[] = {'p', (char)0xff, (char)0xfe, 0};
  expect("invalid UTF-8 name", ovm_pool_create(mgr, bad_utf8, &job), OVM_RESULT_INVALID_UTF8);
  expect("empty name", ovm_pool_create(mgr, "", &job), OVM_RESULT_INVALID_ARGUMENT);

  expect("create pool", ovm_pool_create(mgr, "p", &job), OVM_RESULT_OK);
  expect("wait", ovm_job_wait(job, 10000), OVM_RESULT_OK);
  expect("wrong handle type (job as manager)", ovm_pool_create((ovm_manager *)job, "q", &job), OVM_RESULT_WRONG_HANDLE);
  expect("wrong handle type (manager as job)", ovm_job_wait((ovm_job *)mgr, 0), OVM_RESULT_WRONG_HANDLE);
  expect("buffer too small", ovm_job_id(job, buf, 8, &n), OVM_RESULT_BUFFER_TOO_SMALL);
  if (n == OVM_ID_LEN) passed++; else { failed++; printf("FAIL needed size reported: %zu\n", n); }
  expect("buffer exactly right", ovm_job_id(job, buf, n, &n), OVM_RESULT_OK);
  expect("NULL buffer asks for the size", ovm_job_message(job, NULL, 0, &n), OVM_RESULT_BUFFER_TOO_SMALL);
  expect("NULL size output", ovm_job_id(job, buf, sizeof buf, NULL), OVM_RESULT_NULL_PARAMETER);
  expect("abort a finished job", ovm_job_abort(job), OVM_RESULT_INVALID_STATE);
  ovm_job_free(job);
  job = NULL;

  expect("enum out of range", ovm_object_count(mgr, 9999, &n), OVM_RESULT_INVALID_ENUM);
  expect("severity out of range", ovm_event_list_json(mgr, NULL, 42, false, 0, &js), OVM_RESULT_INVALID_ENUM);
  expect("network function bits out of range", ovm_network_create(mgr, "n", "xenbr1", 0x100, &job), OVM_RESULT_INVALID_ENUM);
  const char *some_id = "5b848d1a-c95c-4411-848a-34317e167ad8";
  expect("migration mode out of range", ovm_vm_migrate_with(mgr, some_id, some_id, 7, &job), OVM_RESULT_INVALID_ENUM);
  expect("migration limit of 0", ovm_migration_limit_set(mgr, 0, &job), OVM_RESULT_INVALID_ARGUMENT);
  expect("migration limit NULL output", ovm_migration_limit(mgr, NULL), OVM_RESULT_NULL_PARAMETER);
  const char *arp_targets[] = {"10.0.0.1"};
  expect("bond mode out of range", ovm_bond_create_with(mgr, some_id, "bond0", 9, NULL, 0, 0, 0, NULL, 0, NULL, &job),
         OVM_RESULT_INVALID_ENUM);
  expect("bond ports NULL with a count", ovm_bond_create_with(mgr, some_id, "bond0", OVM_BOND_LACP, NULL, 2, 0, 0, NULL, 0, NULL, &job),
         OVM_RESULT_NULL_PARAMETER);
  expect("ARP targets without an interval",
         ovm_bond_create_with(mgr, some_id, "bond0", OVM_BOND_LACP, NULL, 0, 0, 0, arp_targets, 1, NULL, &job),
         OVM_RESULT_INVALID_ARGUMENT);
  expect("bond address without a number prefix",
         ovm_bond_create_with(mgr, some_id, "bond0", OVM_BOND_LACP, NULL, 0, 0, 0, NULL, 0, "10.0.0.1/x", &job),
         OVM_RESULT_INVALID_ARGUMENT);
  expect("network member kind out of range", ovm_network_set_address(mgr, 7, some_id, NULL, false, 0, &job),
         OVM_RESULT_INVALID_ENUM);
  expect("drift of a server that is not a UUID", ovm_server_network_drift_json(mgr, "xen1", &js), OVM_RESULT_INVALID_ARGUMENT);
  expect("remove a VNIC of an unknown VM", ovm_vm_remove_vnic(mgr, some_id, "00:16:3e:00:00:01", &job), OVM_RESULT_NOT_FOUND);
  expect("add a VNIC on a network that is not a UUID", ovm_vm_add_vnic(mgr, some_id, "vmnet", &job), OVM_RESULT_INVALID_ARGUMENT);
  expect("not a UUID", ovm_vm_power_state(mgr, "not-a-uuid", &u), OVM_RESULT_INVALID_ARGUMENT);
  expect("unknown VM", ovm_vm_power_state(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", &u), OVM_RESULT_NOT_FOUND);
  expect("unknown flags", ovm_vm_start(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", 0x80, &job), OVM_RESULT_INVALID_ARGUMENT);
  char fp[80];
  expect("manager certificate fingerprint", ovm_manager_certificate_fingerprint(mgr, fp, sizeof fp, &n), OVM_RESULT_OK);
  if (n == 7 + 64 + 1 && strncmp(fp, "sha256:", 7) == 0) passed++; else { failed++; printf("FAIL fingerprint %s\n", fp); }
  expect("agent fingerprint of an unknown server", ovm_server_agent_fingerprint(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", fp, sizeof fp, &n), OVM_RESULT_NOT_FOUND);
  expect("restart the agent of an unknown server", ovm_server_restart_agent(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", &job), OVM_RESULT_NOT_FOUND);
  expect("import a kernel with a NULL source", ovm_repository_import_kernel(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", "k", NULL, NULL, &job), OVM_RESULT_NULL_PARAMETER);
  expect("import a kernel into an unknown repository", ovm_repository_import_kernel(mgr, "5b848d1a-c95c-4411-848a-34317e167ad8", "k", "/boot/vmlinuz", NULL, &job), OVM_RESULT_NOT_FOUND);
  expect("malformed JSON record", ovm_object_create_json(mgr, "{\"kind\":\"Tag\"", &job), OVM_RESULT_INVALID_ARGUMENT);
  expect("record of an unknown kind", ovm_object_create_json(mgr, "{\"kind\":\"Toaster\",\"object\":{}}", &job), OVM_RESULT_INVALID_ARGUMENT);
  expect("tag from a JSON record",
         ovm_object_create_json(mgr, "{\"kind\":\"Tag\",\"object\":{\"id\":\"6b848d1a-c95c-4411-848a-34317e167ad8\",\"name\":\"prod\"}}", &job),
         OVM_RESULT_OK);
  expect("wait for it", ovm_job_wait(job, 10000), OVM_RESULT_OK);
  ovm_job_free(job);
  job = NULL;
  expect("the same id again", ovm_object_create_json(mgr, "{\"kind\":\"Tag\",\"object\":{\"id\":\"6b848d1a-c95c-4411-848a-34317e167ad8\",\"name\":\"prod2\"}}", &job),
         OVM_RESULT_CONFLICT);
  expect("NULL callback", ovm_subscribe(mgr, 0, false, NULL, NULL, NULL, &id64), OVM_RESULT_NULL_PARAMETER);
  expect("unknown subscription", ovm_unsubscribe(mgr, 12345), OVM_RESULT_NOT_FOUND);
  expect("close", ovm_manager_close(mgr, 1000), OVM_RESULT_OK);
  expect("mutating call on a closed manager", ovm_pool_create(mgr, "late", &job), OVM_RESULT_CLOSED);
  size_t count_after_close = 0;
  expect("read on a closed manager", ovm_object_count(mgr, OVM_OBJECT_TAG, &count_after_close), OVM_RESULT_CLOSED);
  char closed_id[OVM_ID_LEN + 64];
  size_t closed_n = 0;
  expect("the id of a closed manager", ovm_manager_id(mgr, closed_id, sizeof closed_id, &closed_n), OVM_RESULT_OK);
  expect("closing again", ovm_manager_close(mgr, 0), OVM_RESULT_OK);

  ovm_job_free(NULL);
  ovm_manager_free(NULL);
  ovm_string_free(NULL);
  ovm_manager_free(mgr);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
