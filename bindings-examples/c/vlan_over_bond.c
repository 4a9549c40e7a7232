/* A VLAN network over bonds on a pool of two (simulated) servers: on each server eth1 and eth2
 * bonded as bond0 (active-backup, ARP-monitored, addressed), VLAN 300 on the bond, a VM network on
 * bridge vmnet300 over the VLANs; a VM on it started, a second VNIC hot-plugged and unplugged; bad
 * input refused with its typed code and the servers' configuration unchanged; no drift. */
#include "common.h"
#include <string.h>

/* The code of a change: refused at once, or the code its job failed with (OVM_RESULT_OK if it
 * completed). */
static ovm_result outcome(ovm_result submitted, ovm_job *job) {
  if (submitted != OVM_RESULT_OK) return submitted;
  uint32_t code = OVM_RESULT_OK;
  if (ovm_job_wait(job, 30000) != OVM_RESULT_OK) CHECK(ovm_job_error_code(job, &code));
  ovm_job_free(job);
  return (ovm_result)code;
}

static char *network_config(ovm_manager *mgr, const char *server) {
  char *json = NULL;
  CHECK(ovm_server_network_config_json(mgr, server, &json));
  return json;
}

int main(void) {
  ovm_manager *mgr = NULL;
  ovm_job *job = NULL;
  char s[2][OVM_ID_LEN], pool[OVM_ID_LEN], bond[2][OVM_ID_LEN], vlan[2][OVM_ID_LEN], net[OVM_ID_LEN];
  char vm[OVM_ID_LEN], ports[2][2][OVM_ID_LEN];
  const char *names[2] = {"xen1", "xen2"};
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s[0], s[1], pool);

  /* bond0 of eth1 and eth2 on each server, with an address on the storage LAN; VLAN 300 on it. */
  for (int i = 0; i < 2; i++) {
    for (int p = 0; p < 2; p++) {
      char port_name[32];
      snprintf(port_name, sizeof port_name, "%s:eth%d", names[i], p + 1);
      CHECK(ovm_object_lookup_by_name(mgr, OVM_OBJECT_PORT, port_name, ports[i][p], OVM_ID_LEN, &n));
    }
    const char *members[] = {ports[i][0], ports[i][1]};
    const char *targets[] = {"10.77.1.254"};
    char address[32];
    snprintf(address, sizeof address, "10.77.1.%d/24", i + 1);
    CHECK(ovm_bond_create_with(mgr, s[i], "bond0", OVM_BOND_ACTIVE_BACKUP, members, 2, 1500, 200, targets, 1,
                               address, &job));
    run_job(job, bond[i]);
    CHECK(ovm_vlan_interface_create(mgr, s[i], NULL, bond[i], 300, &job));
    run_job(job, vlan[i]);
  }
  CHECK(ovm_network_create(mgr, "vm300", "vmnet300", OVM_NETWORK_VIRTUAL_MACHINE, &job));
  run_job(job, net);
  for (int i = 0; i < 2; i++) {
    CHECK(ovm_network_add_member(mgr, net, OVM_MEMBER_VLAN, vlan[i], &job));
    run_job(job, NULL);
  }
  for (int i = 0; i < 2; i++) {
    char *cfg = network_config(mgr, s[i]);
    char address[32];
    snprintf(address, sizeof address, "\"10.77.1.%d\"", i + 1);
    int built = strstr(cfg, "\"bond0\"") && strstr(cfg, "\"bond0.300\"") && strstr(cfg, "\"vmnet300\"") &&
                strstr(cfg, address) && strstr(cfg, "\"eth1\"") && strstr(cfg, "\"eth2\"");
    ovm_string_free(cfg);
    char *drift = NULL;
    CHECK(ovm_server_network_drift_json(mgr, s[i], &drift));
    int clean = strcmp(drift, "[]") == 0;
    ovm_string_free(drift);
    if (!built || !clean) {
      fprintf(stderr, "%s: the network is not as built (built %d, no drift %d)\n", names[i], built, clean);
      return 1;
    }
  }
  printf("network: bond0 (eth1+eth2) with VLAN 300 and bridge vmnet300 on both servers, no drift\n");

  /* A VM on the network, started; a second VNIC hot-plugged and unplugged while it runs. */
  CHECK(ovm_vm_create(mgr, "web", pool, 512, 1, 1, &job));
  run_job(job, vm);
  CHECK(ovm_vm_set_vnic_network(mgr, vm, 0, net, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  char *before = NULL, *after = NULL;
  CHECK(ovm_vm_nics_json(mgr, vm, &before));
  CHECK(ovm_vm_add_vnic(mgr, vm, net, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_nics_json(mgr, vm, &after));
  /* The new MAC: the one in `after` that `before` lacks. */
  char mac[18] = {0};
  for (const char *at = after; (at = strstr(at, "\"mac\":\"")) != NULL; at += 7) {
    memcpy(mac, at + 7, 17);
    if (!strstr(before, mac)) break;
    mac[0] = 0;
  }
  int plugged = mac[0] && strstr(before, "vmnet300") && strstr(after, "vmnet300");
  ovm_string_free(before);
  ovm_string_free(after);
  if (!plugged) {
    fprintf(stderr, "no hot-plugged VNIC on vmnet300\n");
    return 1;
  }
  CHECK(ovm_vm_remove_vnic(mgr, vm, mac, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_nics_json(mgr, vm, &after));
  int unplugged = !strstr(after, mac);
  ovm_string_free(after);
  if (!unplugged) return 1;
  printf("vm: started on vmnet300, VNIC %s hot-plugged and unplugged\n", mac);

  /* Bad input refused with its typed code, every server's configuration unchanged. */
  char *cfg_before[2] = {network_config(mgr, s[0]), network_config(mgr, s[1])};
  const char *taken[] = {ports[0][1]};
  ovm_result in_use =
      outcome(ovm_bond_create_with(mgr, s[0], "bond1", OVM_BOND_LACP, taken, 1, 0, 0, NULL, 0, NULL, &job), job);
  ovm_result vlan_id = outcome(ovm_vlan_interface_create(mgr, s[0], NULL, bond[0], 4095, &job), job);
  const char *not_ip[] = {"10.77.1.300"};
  const char *free_port[] = {ports[0][0]};
  ovm_result target = ovm_bond_create_with(mgr, s[0], "bond2", OVM_BOND_ACTIVE_BACKUP, free_port, 1, 0, 200,
                                           not_ip, 1, NULL, &job);
  ovm_result address = ovm_network_set_address(mgr, OVM_MEMBER_BOND, bond[0], "10.77.1.1", false, 0, &job);
  int unchanged = 1;
  for (int i = 0; i < 2; i++) {
    char *now = network_config(mgr, s[i]);
    unchanged = unchanged && strcmp(now, cfg_before[i]) == 0;
    ovm_string_free(now);
    ovm_string_free(cfg_before[i]);
  }
  if (in_use != OVM_RESULT_CONFLICT || vlan_id != OVM_RESULT_INVALID_ARGUMENT ||
      target != OVM_RESULT_INVALID_ARGUMENT || address != OVM_RESULT_INVALID_ARGUMENT || !unchanged) {
    fprintf(stderr, "bad input: %s, %s, %s, %s, unchanged %d\n", ovm_result_name(in_use), ovm_result_name(vlan_id),
            ovm_result_name(target), ovm_result_name(address), unchanged);
    return 1;
  }
  printf("refused: a port already bonded (%s), VLAN 4095, a bad ARP target and an address without a prefix "
         "(%s); servers unchanged\n",
         ovm_result_name(in_use), ovm_result_name(vlan_id));

  /* Re-applying a server that is as the model says changes nothing. */
  CHECK(ovm_server_network_reapply(mgr, s[1], &job));
  run_job(job, NULL);

  CHECK(ovm_vm_kill(mgr, vm, 0, &job));
  run_job(job, NULL);
  ovm_manager_free(mgr);
  printf("vlan_over_bond: OK\n");
  return 0;
}
