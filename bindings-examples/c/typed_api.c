/* The typed calls beyond the VM lifecycle: storage providers, ISOs and disks, bonds, VLANs and
 * network members, tags, anti-affinity groups, ownership, refresh and recurring jobs, and a VM set
 * up for direct kernel boot — no JSON records written by hand. */
#include "common.h"
#include <string.h>

/* Copy the first "id" of the JSON array `json` of `kind` objects into `id`. */
static void first_id(ovm_manager *mgr, uint32_t kind, char id[OVM_ID_LEN]) {
  char *json = NULL;
  CHECK(ovm_object_list_json(mgr, kind, &json));
  const char *at = strstr(json, "\"id\":\"");
  if (!at) {
    fprintf(stderr, "no object of kind %u: %s\n", kind, json);
    exit(1);
  }
  memcpy(id, at + 6, OVM_ID_LEN - 1);
  id[OVM_ID_LEN - 1] = 0;
  ovm_string_free(json);
}

static size_t count(ovm_manager *mgr, uint32_t kind) {
  size_t n = 0;
  CHECK(ovm_object_count(mgr, kind, &n));
  return n;
}

int main(void) {
  ovm_manager *mgr = NULL;
  ovm_job *job = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], id[OVM_ID_LEN], array[OVM_ID_LEN], lun[OVM_ID_LEN];
  char nfs[OVM_ID_LEN], fs[OVM_ID_LEN], repo[OVM_ID_LEN], iso[OVM_ID_LEN], disk[OVM_ID_LEN], vm[OVM_ID_LEN];
  char port[OVM_ID_LEN], bond[OVM_ID_LEN], vlan[OVM_ID_LEN], net[OVM_ID_LEN], tag[OVM_ID_LEN];
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);

  /* Storage providers, discovered from the (simulated) storage: an NFS server's export. */
  const char *admins[] = {s1};
  CHECK(ovm_sim_add_nfs_export(mgr, "nfs.example.com", "/export/fs1", 1ULL << 40));
  CHECK(ovm_file_server_register(mgr, "nfs1", OVM_FILE_SERVER_NFS, "nfs.example.com", admins, 1, &job));
  run_job(job, nfs);
  char *nfs_fss = NULL;
  CHECK(ovm_file_system_list_json(mgr, nfs, &nfs_fss));
  const char *fs_at = strstr(nfs_fss, "\"id\":\"");
  int exported = fs_at && strstr(nfs_fss, "\"/export/fs1\"") && strstr(nfs_fss, "\"size_bytes\":1099511627776");
  if (exported) {
    memcpy(fs, fs_at + 6, OVM_ID_LEN - 1);
    fs[OVM_ID_LEN - 1] = '\0';
  }
  ovm_string_free(nfs_fss);
  if (!exported || count(mgr, OVM_OBJECT_FILE_SYSTEM) != 1) return 1;
  /* What the storage says is not recorded by hand: the generic create refuses it. */
  if (ovm_object_create_json(mgr,
                             "{\"kind\":\"FileServer\",\"object\":{\"id\":\"6b848d1a-c95c-4411-848a-34317e167ad8\","
                             "\"name\":\"typed\",\"kind\":\"Nfs\",\"access_host\":\"nfs2.example.com\","
                             "\"admin_servers\":[],\"refreshed\":true}}",
                             &job) != OVM_RESULT_INVALID_ARGUMENT)
    return 1;
  printf("storage: an NFS server's export discovered with its size; a file server typed by hand refused\n");

  /* A server's local file system, discovered through the server (sizes from the server), and a
   * repository on it mounted there; an NFS server nobody runs is refused with nothing stored. */
  char local[OVM_ID_LEN], local_fs[OVM_ID_LEN], local_repo[OVM_ID_LEN];
  CHECK(ovm_file_server_register(mgr, "xen1-local", OVM_FILE_SERVER_LOCAL, NULL, admins, 1, &job));
  run_job(job, local);
  char *fss = NULL;
  CHECK(ovm_file_system_list_json(mgr, local, &fss));
  const char *at = strstr(fss, "\"id\":\"");
  int one_local = at && strstr(fss, "\"/OVS/Local\"") && !strstr(fss, "\"size_bytes\":0,");
  if (one_local) {
    memcpy(local_fs, at + 6, OVM_ID_LEN - 1);
    local_fs[OVM_ID_LEN - 1] = '\0';
  }
  ovm_string_free(fss);
  if (!one_local) return 1;
  CHECK(ovm_repository_create(mgr, "local-repo", local_fs, NULL, 0, &job));
  run_job(job, local_repo);
  const char *two_servers[] = {s1, s2};
  if (ovm_repository_present_to(mgr, local_repo, two_servers, 2, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_repository_present_to(mgr, local_repo, admins, 1, &job));
  run_job(job, NULL);
  char *lr = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_REPOSITORY, local_repo, &lr));
  int mounted = strstr(lr, "\"state\":\"Mounted\"") != NULL;
  ovm_string_free(lr);
  if (!mounted) return 1;
  size_t servers_before = count(mgr, OVM_OBJECT_FILE_SERVER);
  CHECK(ovm_file_server_register(mgr, "ghost", OVM_FILE_SERVER_NFS, "nfs9.example.com", admins, 1, &job));
  ovm_result failed = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  if (failed != OVM_RESULT_BACKEND || count(mgr, OVM_OBJECT_FILE_SERVER) != servers_before) return 1;
  /* A file server reached through an external plug-in: a bad plug-in name is refused at once, the
   * kind alone (without the plug-in) too, and a file server no plug-in reaches is not stored. */
  if (ovm_file_server_register_external(mgr, "nas", "../sh", "nas1:/shares", admins, 1, &job) !=
      OVM_RESULT_INVALID_ARGUMENT)
    return 1;
  if (ovm_file_server_register(mgr, "nas", OVM_FILE_SERVER_EXTERNAL, "nas1:/shares", admins, 1, &job) !=
      OVM_RESULT_INVALID_ARGUMENT)
    return 1;
  CHECK(ovm_file_server_register_external(mgr, "nas", "nas-shares", "nas1:/shares", admins, 1, &job));
  failed = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  if (failed != OVM_RESULT_BACKEND || count(mgr, OVM_OBJECT_FILE_SERVER) != servers_before) return 1;
  size_t arrays_before = count(mgr, OVM_OBJECT_STORAGE_ARRAY);
  CHECK(ovm_storage_array_register(mgr, "lio", "iscsi9.example.com", 3260, admins, 1, &job));
  failed = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  if (failed != OVM_RESULT_BACKEND || count(mgr, OVM_OBJECT_STORAGE_ARRAY) != arrays_before) return 1;
  CHECK(ovm_file_server_refresh(mgr, local, &job));
  run_job(job, NULL);
  /* A generic iSCSI array (a simulated target with one LUN): its LUN discovered. */
  CHECK(ovm_sim_add_lun(mgr, "iqn.2026-01.ovm.sim:generic", "lun0", 1ULL << 36));
  CHECK(ovm_storage_array_register(mgr, "array1", "storage", 3260, admins, 1, &job));
  run_job(job, array);
  char *generic = NULL;
  CHECK(ovm_physical_disk_list_json(mgr, array, &generic));
  const char *lun_at = strstr(generic, "\"id\":\"");
  int found = lun_at && strstr(generic, "\"size_bytes\":68719476736");
  if (found) {
    memcpy(lun, lun_at + 6, OVM_ID_LEN - 1);
    lun[OVM_ID_LEN - 1] = '\0';
  }
  ovm_string_free(generic);
  if (!found || count(mgr, OVM_OBJECT_PHYSICAL_DISK) != 1) return 1;
  printf("storage: a local file system discovered and mounted; an NFS server, an external plug-in's file server and an iSCSI portal nobody runs refused; a generic array's LUN discovered\n");

  /* A vendor-style array (the simulated ovm-lio management interface): LUNs and access groups. */
  const char *targets[] = {"iqn.2026-01.ovm.sim:managed"};
  CHECK(ovm_sim_add_managed_array(mgr, "lio-admin", "admin", "secret", targets, 1));
  arrays_before = count(mgr, OVM_OBJECT_STORAGE_ARRAY);
  CHECK(ovm_storage_array_register_vendor(mgr, "vendor1", "storage", 3260, admins, 1, NULL, "lio-admin", 3261,
                                          "admin", "wrong", NULL, &job));
  failed = ovm_job_wait(job, 30000);
  ovm_job_free(job);
  if (failed != OVM_RESULT_PERMISSION_DENIED || count(mgr, OVM_OBJECT_STORAGE_ARRAY) != arrays_before) return 1;
  char varray[OVM_ID_LEN], vlun[OVM_ID_LEN], group[OVM_ID_LEN], copy[OVM_ID_LEN];
  CHECK(ovm_storage_array_register_vendor(mgr, "vendor1", "storage", 3260, admins, 1, "ovm-lio", "lio-admin", 3261,
                                          "admin", "secret", NULL, &job));
  run_job(job, varray);
  if (ovm_lun_create(mgr, varray, NULL, "bad name/", 1ULL << 30, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_lun_create(mgr, varray, NULL, "data", 2ULL << 30, &job));
  run_job(job, vlun);
  const char *group_servers[] = {s1, s2};
  CHECK(ovm_access_group_create(mgr, varray, "pool1", group_servers, 2, &job));
  run_job(job, group);
  CHECK(ovm_lun_present(mgr, group, vlun, &job));
  run_job(job, NULL);
  /* Each server's step checked that it sees the LUN; the array records both as presented to. */
  char *va = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_STORAGE_ARRAY, varray, &va));
  int seen = strstr(va, s1) && strstr(va, s2);
  ovm_string_free(va);
  char *vg = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_ACCESS_GROUP, group, &vg));
  seen = seen && strstr(vg, vlun);
  ovm_string_free(vg);
  if (!seen) return 1;
  CHECK(ovm_lun_resize(mgr, vlun, 3ULL << 30, &job));
  run_job(job, NULL);
  if (ovm_lun_resize(mgr, vlun, 1ULL << 30, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_lun_clone(mgr, vlun, "data-copy", &job));
  run_job(job, copy);
  char *luns = NULL;
  CHECK(ovm_physical_disk_list_json(mgr, varray, &luns));
  int cloned = strstr(luns, "\"vendor1:data-copy\"") && strstr(luns, "\"size_bytes\":3221225472");
  ovm_string_free(luns);
  if (!cloned) return 1;
  if (ovm_access_group_delete(mgr, group, &job) != OVM_RESULT_CONFLICT) return 1;
  CHECK(ovm_lun_unpresent(mgr, group, vlun, &job));
  run_job(job, NULL);
  CHECK(ovm_lun_delete(mgr, vlun, &job));
  run_job(job, NULL);
  CHECK(ovm_lun_delete(mgr, copy, &job));
  run_job(job, NULL);
  CHECK(ovm_access_group_delete(mgr, group, &job));
  run_job(job, NULL);
  CHECK(ovm_physical_disk_list_json(mgr, varray, &luns));
  int none = strcmp(luns, "[]") == 0;
  ovm_string_free(luns);
  if (!none) return 1;
  printf("vendor array: wrong password refused; a LUN created, presented to two servers, grown, cloned, "
         "unpresented and deleted; an access group created and deleted\n");

  /* A repository, an ISO, disks. */
  CHECK(ovm_repository_create(mgr, "repo1", fs, pool, 100ULL << 30, &job));
  run_job(job, repo);
  CHECK(ovm_repository_present(mgr, repo, s1, &job));
  run_job(job, NULL);
  /* The ISO is read from a file on this machine: 64 KiB that look like an ISO 9660 image. */
  char iso_path[] = "/tmp/ovm-typed-api-XXXXXX";
  int iso_fd = mkstemp(iso_path);
  FILE *iso_file = iso_fd < 0 ? NULL : fdopen(iso_fd, "wb");
  if (!iso_file) return 1;
  static unsigned char image[64 << 10];
  memcpy(image + 32769, "CD001", 5);
  int written = fwrite(image, 1, sizeof image, iso_file) == sizeof image;
  if (fclose(iso_file) != 0 || !written) return 1;
  CHECK(ovm_repository_import_iso(mgr, repo, "install.iso", iso_path, &job));
  CHECK(ovm_job_wait(job, 30000));
  uint64_t iso_done = 0, iso_total = 0;
  bool iso_known = false;
  CHECK(ovm_job_bytes(job, &iso_done, &iso_total, &iso_known));
  run_job(job, iso);
  remove(iso_path);
  if (!iso_known || iso_done != sizeof image || iso_total != sizeof image) return 1;
  CHECK(ovm_virtual_disk_create(mgr, repo, "scratch", 1ULL << 30, &job));
  run_job(job, disk);
  CHECK(ovm_virtual_disk_delete(mgr, disk, &job));
  run_job(job, NULL);
  CHECK(ovm_virtual_disk_create(mgr, repo, "root", 4ULL << 30, &job));
  run_job(job, disk);
  char *disks = NULL;
  CHECK(ovm_virtual_disk_list_json(mgr, repo, &disks));
  int only_root = strstr(disks, "\"root\"") && !strstr(disks, "\"scratch\"");
  ovm_string_free(disks);
  if (!only_root || count(mgr, OVM_OBJECT_VIRTUAL_CDROM) != 1) return 1;
  printf("repository: ISO imported from a file (%llu of %llu bytes), a disk created and deleted, one disk left\n",
         (unsigned long long)iso_done, (unsigned long long)iso_total);

  /* Bonds, VLANs, networks. */
  CHECK(ovm_server_refresh(mgr, s1, &job));
  run_job(job, NULL);
  first_id(mgr, OVM_OBJECT_PORT, port);
  const char *ports[] = {port};
  ovm_result bond_rc = ovm_bond_create(mgr, s1, "bond1", OVM_BOND_ACTIVE_BACKUP, ports, 1, &job);
  if (bond_rc == OVM_RESULT_OK) {
    CHECK(ovm_job_wait(job, 30000));
    CHECK(ovm_job_result_id(job, bond, OVM_ID_LEN, &n));
    ovm_job_free(job);
    CHECK(ovm_vlan_interface_create(mgr, s1, NULL, bond, 100, &job));
  } else if (bond_rc == OVM_RESULT_CONFLICT) {
    /* The port carries the management network, so it cannot be bonded: VLAN on the port itself. */
    CHECK(ovm_vlan_interface_create(mgr, s1, port, NULL, 100, &job));
  } else {
    CHECK(bond_rc);
  }
  run_job(job, vlan);
  CHECK(ovm_network_create(mgr, "vlan100", "xenbr100", OVM_NETWORK_VIRTUAL_MACHINE, &job));
  run_job(job, net);
  CHECK(ovm_network_add_member(mgr, net, OVM_MEMBER_VLAN, vlan, &job));
  run_job(job, NULL);
  CHECK(ovm_network_remove_member(mgr, net, OVM_MEMBER_VLAN, vlan, &job));
  run_job(job, NULL);
  CHECK(ovm_network_add_member(mgr, net, OVM_MEMBER_VLAN, vlan, &job));
  run_job(job, NULL);
  ovm_result both = ovm_vlan_interface_create(mgr, s1, port, port, 7, &job);
  if (both != OVM_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "a VLAN on a port and a bond at once was not refused: %s\n", ovm_result_name(both));
    return 1;
  }
  printf("network: %s, VLAN 100, network member added and removed\n", bond_rc == OVM_RESULT_OK ? "bond" : "bond refused on a network member; VLAN on the port");

  /* A VM set up for direct kernel boot, its disk and NIC wired, started. */
  CHECK(ovm_vm_create(mgr, "guest", pool, 1024, 1, 1, &job));
  run_job(job, vm);
  CHECK(ovm_vm_attach_disk(mgr, vm, 0, disk, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_set_vnic_network(mgr, vm, 0, net, &job));
  run_job(job, NULL);
  if (ovm_vm_set_vnic_network(mgr, vm, 5, net, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_vm_set_kernel(mgr, vm, "/OVS/Repositories/r/Kernels/k/vmlinux", NULL, "root=/dev/xvda ro", &job));
  run_job(job, NULL);
  char *vms = NULL;
  CHECK(ovm_vm_list_json(mgr, pool, NULL, OVM_POWER_STOPPED, &vms));
  int wired = strstr(vms, "root=/dev/xvda ro") && strstr(vms, net) && strstr(vms, disk);
  ovm_string_free(vms);
  if (!wired) return 1;
  CHECK(ovm_vm_set_kernel(mgr, vm, NULL, NULL, NULL, &job));
  run_job(job, NULL);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  char *console = NULL;
  CHECK(ovm_vm_console(mgr, vm, &console));
  ovm_string_free(console);
  /* Only a suspended VM resumes on another server (this one runs). */
  if (ovm_vm_resume_on(mgr, vm, s1, 0, &job) != OVM_RESULT_INVALID_STATE) return 1;
  printf("vm: kernel, disk and network set through typed calls, started; resuming a running VM elsewhere refused\n");

  /* Guest messages: the simulated guest answers each message KEY=VALUE with reply-KEY=VALUE. */
  const char *keys[] = {"hostname", "role"};
  const char *values[] = {"web-01", "frontend"};
  CHECK(ovm_vm_send_messages(mgr, vm, keys, values, 2, 0, &job));
  run_job(job, NULL);
  char *data = NULL;
  CHECK(ovm_vm_guest_data_json(mgr, vm, &data));
  if (!strstr(data, "\"reply-hostname\":\"web-01\"") || !strstr(data, "\"reply-role\":\"frontend\"")) {
    fprintf(stderr, "guest data without the answers: %s\n", data);
    return 1;
  }
  ovm_string_free(data);
  const char *bad_keys[] = {"a/b"};
  if (ovm_vm_send_messages(mgr, vm, bad_keys, values, 1, 0, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  printf("vm: two messages sent, the guest's answers read back; a key with a slash refused\n");

  /* Tags and anti-affinity. */
  CHECK(ovm_tag_create(mgr, "gold", &job));
  run_job(job, tag);
  CHECK(ovm_tag_set(mgr, tag, OVM_OBJECT_VM, vm, true, &job));
  run_job(job, NULL);
  char *tag_json = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_TAG, tag, &tag_json));
  int tagged = strstr(tag_json, vm) != NULL;
  ovm_string_free(tag_json);
  if (!tagged) return 1;
  CHECK(ovm_tag_set(mgr, tag, OVM_OBJECT_VM, vm, false, &job));
  run_job(job, NULL);
  const char *members[] = {vm};
  CHECK(ovm_anti_affinity_group_create(mgr, pool, "spread", members, 1, &job));
  run_job(job, id);
  printf("tags: attached and detached; anti-affinity group created\n");

  /* Servers: filtered list, ownership, recurring jobs. */
  char *servers = NULL;
  CHECK(ovm_server_list_json(mgr, pool, OVM_SERVER_RUNNING, &servers));
  int both_running = strstr(servers, s1) && strstr(servers, s2);
  ovm_string_free(servers);
  if (!both_running) return 1;
  char *recurring = NULL;
  CHECK(ovm_recurring_job_list_json(mgr, &recurring));
  printf("recurring jobs: %.120s\n", recurring);
  ovm_string_free(recurring);
  CHECK(ovm_server_discover(mgr, "sim://spare", OVM_SIM_PASSWORD, &job));
  run_job(job, id);
  CHECK(ovm_server_release_ownership(mgr, id, &job));
  run_job(job, NULL);
  CHECK(ovm_server_take_ownership(mgr, id, OVM_SIM_PASSWORD, &job));
  run_job(job, NULL);
  printf("servers: filtered list, ownership released and taken again\n");

  ovm_manager_free(mgr);
  printf("typed_api: OK\n");
  return 0;
}
