/* Server power control, as DPM uses it: a server that runs a VM is refused, maintenance mode moves
 * the VM away, the server powers off through its agent (the only stopped server listed), and
 * another server of the pool wakes it with a Wake-on-LAN magic packet; it answers again. Then its
 * management controller powers it on out of band while no other server runs. */
#include "common.h"
#include <string.h>

/* The number of servers in `state`, from the JSON list. */
static int count_servers(ovm_manager *mgr, const char *pool, ovm_server_power_state state, const char *id) {
  char *json = NULL;
  CHECK(ovm_server_list_json(mgr, pool, state, &json));
  int n = 0;
  for (const char *p = json; (p = strstr(p, "\"power_state\"")) != NULL; p++) n++;
  if (id && n == 1 && strstr(json, id) == NULL) n = -1;
  ovm_string_free(json);
  return n;
}

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "web", pool, 1024, 2, 0, &job));
  run_job(job, vm);
  /* With server 2 in maintenance mode, the VM starts on server 1. */
  CHECK(ovm_server_set_maintenance(mgr, s2, true, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  CHECK(ovm_server_set_maintenance(mgr, s2, false, &job));
  run_job(job, NULL);

  if (ovm_server_power_off(mgr, s1, &job) != OVM_RESULT_CONFLICT) {
    fprintf(stderr, "a server running a VM was powered off\n");
    return 1;
  }
  CHECK(ovm_server_set_maintenance(mgr, s1, true, &job));
  run_job(job, NULL);
  CHECK(ovm_server_power_off(mgr, s1, &job));
  run_job(job, NULL);
  if (count_servers(mgr, pool, OVM_SERVER_STOPPED, s1) != 1) {
    fprintf(stderr, "server 1 is not the one stopped server\n");
    return 1;
  }
  printf("server 1 powered off; %d server running\n", count_servers(mgr, pool, OVM_SERVER_RUNNING, NULL));

  if (ovm_server_power_on(mgr, s2, 0, &job) != OVM_RESULT_INVALID_STATE) {
    fprintf(stderr, "a running server was powered on\n");
    return 1;
  }
  CHECK(ovm_server_power_on(mgr, s1, 10000, &job));
  run_job(job, NULL);
  if (count_servers(mgr, pool, OVM_SERVER_RUNNING, NULL) != 2) {
    fprintf(stderr, "server 1 did not come back\n");
    return 1;
  }
  printf("server 1 woken by a magic packet from server 2; 2 servers running (default wait %llu s)\n",
         (unsigned long long)(OVM_POWER_ON_TIMEOUT_MS / 1000));

  /* Out of band: server 1's management controller (the simulated BMCs here; an IPMI plug-in
   * registered with ovm_manager_register_power_plugin in a data centre) powers it on, with no
   * other server running and no Wake-on-LAN MAC. */
  if (ovm_server_set_power_control(mgr, s1, NULL, "sim-bmc", "xen1", &job) != OVM_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "a controller nobody registered was accepted\n");
    return 1;
  }
  if (ovm_manager_register_power_plugin(mgr, "ipmi", "relative/ipmi") != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_sim_register_power_controller(mgr));
  CHECK(ovm_server_set_power_control(mgr, s1, NULL, "sim-bmc", "xen1", &job));
  run_job(job, NULL);
  CHECK(ovm_vm_kill(mgr, vm, 0, &job)); /* it ran on server 2 */
  run_job(job, NULL);
  CHECK(ovm_server_power_off(mgr, s2, &job));
  run_job(job, NULL);
  CHECK(ovm_server_power_off(mgr, s1, &job));
  run_job(job, NULL);
  bool on = true;
  CHECK(ovm_server_out_of_band_power_state(mgr, s1, &on));
  if (on) return 1;
  CHECK(ovm_server_power_on(mgr, s1, 10000, &job));
  run_job(job, NULL);
  CHECK(ovm_server_out_of_band_power_state(mgr, s1, &on));
  if (!on || count_servers(mgr, pool, OVM_SERVER_RUNNING, s1) != 1) {
    fprintf(stderr, "server 1 was not powered on by its management controller\n");
    return 1;
  }
  printf("server 1 powered on by its management controller, server 2 off\n");
  if (ovm_server_out_of_band_power_state(mgr, s2, &on) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  ovm_manager_free(mgr);
  return 0;
}
