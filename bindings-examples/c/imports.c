/* Repository contents from C: an Oracle VM template archive written here (a small ustar writer)
 * imported with its progress in bytes, a VM cloned from it sharing the template's disk and another
 * cloned from that VM with its disk copied, a server taken over, and a rebuild from servers into a
 * second manager with its report read item by item. */
#include "common.h"
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

static const char VM_CFG[] = "OVM_simple_name = 'OL7 template'\n"
                             "memory = 512\n"
                             "vcpus = 1\n"
                             "disk = ['file:/OVS/Repositories/x/VirtualDisks/System.img,xvda,w']\n"
                             "vif = ['bridge=xenbr0']\n";

/* Write one ustar entry (a regular file) of `size` bytes of `data` to `f`. */
static int tar_file(FILE *f, const char *name, const unsigned char *data, size_t size) {
  unsigned char h[512] = {0};
  size_t n = strlen(name);
  if (n >= 100) return 0;
  memcpy(h, name, n);
  memcpy(h + 100, "0000644", 8);
  memcpy(h + 108, "0000000", 8);
  memcpy(h + 116, "0000000", 8);
  snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
  memcpy(h + 136, "00000000000", 12);
  h[156] = '0';
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof h; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum); /* six digits, a NUL, and the space already there */
  static const unsigned char pad[512];
  size_t tail = (512 - size % 512) % 512;
  return fwrite(h, 1, sizeof h, f) == sizeof h && fwrite(data, 1, size, f) == size &&
         fwrite(pad, 1, tail, f) == tail;
}

/* Write the template archive into a new file under /tmp; `path` receives its name. */
static void write_template_archive(char path[32]) {
  strcpy(path, "/tmp/ovm-imports-XXXXXX");
  int fd = mkstemp(path);
  FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
  static unsigned char disk[1 << 20];
  memcpy(disk + 4096, "template-disk", 13);
  static const unsigned char end[1024];
  int ok = f && tar_file(f, "OVM_OL7/vm.cfg", (const unsigned char *)VM_CFG, strlen(VM_CFG)) &&
           tar_file(f, "OVM_OL7/System.img", disk, sizeof disk) && fwrite(end, 1, sizeof end, f) == sizeof end;
  if (!f || fclose(f) != 0 || !ok) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
}

/* Copy the first id after `"key":["` (a list of ids) in `json` into `id`. */
static int first_in_list(const char *json, const char *key, char id[OVM_ID_LEN]) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\":[\"", key);
  const char *at = strstr(json, pattern);
  if (!at) return 0;
  memcpy(id, at + strlen(pattern), OVM_ID_LEN - 1);
  id[OVM_ID_LEN - 1] = 0;
  return 1;
}

static int json_has(ovm_manager *mgr, uint32_t kind, const char *id, const char *needle) {
  char *json = NULL;
  CHECK(ovm_object_get_json(mgr, kind, id, &json));
  int has = strstr(json, needle) != NULL;
  ovm_string_free(json);
  return has;
}

int main(void) {
  ovm_manager *mgr = NULL;
  ovm_job *job = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], nfs[OVM_ID_LEN], fs[OVM_ID_LEN], repo[OVM_ID_LEN];
  char tpl[OVM_ID_LEN], tdisk[OVM_ID_LEN], vm[OVM_ID_LEN], vm2[OVM_ID_LEN], id[OVM_ID_LEN];
  size_t n = 0;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  const char *admins[] = {s1};
  CHECK(ovm_sim_add_nfs_export(mgr, "nfs.example.com", "/export/fs1", 1ULL << 40));
  CHECK(ovm_file_server_register(mgr, "nfs1", OVM_FILE_SERVER_NFS, "nfs.example.com", admins, 1, &job));
  run_job(job, nfs);
  char *fss = NULL;
  CHECK(ovm_file_system_list_json(mgr, nfs, &fss));
  const char *at = strstr(fss, "\"id\":\"");
  if (!at) return 1;
  memcpy(fs, at + 6, OVM_ID_LEN - 1);
  fs[OVM_ID_LEN - 1] = 0;
  ovm_string_free(fss);
  CHECK(ovm_repository_create(mgr, "repo1", fs, pool, 0, &job));
  run_job(job, repo);
  const char *both[] = {s1, s2};
  CHECK(ovm_repository_present_to(mgr, repo, both, 2, &job));
  run_job(job, NULL);

  /* A template archive written here, imported; the job counts the archive's bytes. */
  char path[32];
  write_template_archive(path);
  struct stat st;
  if (stat(path, &st) != 0) return 1;
  CHECK(ovm_repository_import_template(mgr, repo, path, NULL, &job));
  uint64_t done = 0, total = 0;
  bool known = false;
  while (ovm_job_wait(job, 10) == OVM_RESULT_TIMEOUT) { /* what a progress bar would show */
    CHECK(ovm_job_bytes(job, &done, &total, &known));
  }
  CHECK(ovm_job_bytes(job, &done, &total, &known));
  run_job(job, tpl);
  remove(path);
  if (!known || done != (uint64_t)st.st_size || total != done) {
    fprintf(stderr, "bytes: %llu of %llu (known: %d), archive %lld\n", (unsigned long long)done,
            (unsigned long long)total, known, (long long)st.st_size);
    return 1;
  }
  char *t = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_TEMPLATE, tpl, &t));
  int named = strstr(t, "\"OL7 template\"") != NULL && first_in_list(t, "disks", tdisk);
  ovm_string_free(t);
  if (!named) return 1;
  printf("template: OL7 template imported from an archive, %llu of %llu bytes\n", (unsigned long long)done,
         (unsigned long long)total);

  /* Clone customisation. The imported disk is not shareable: sharing it is refused at once, as is
   * a mode out of range. */
  uint8_t slots[] = {0};
  uint32_t share[] = {OVM_DISK_CLONE_SHARE}, copy[] = {OVM_DISK_CLONE_COPY}, bogus[] = {7};
  if (ovm_vm_clone_template_custom(mgr, tpl, "shared-1", pool, NULL, slots, share, NULL, 1, &job) !=
      OVM_RESULT_INVALID_ARGUMENT)
    return 1;
  if (ovm_vm_clone_template_custom(mgr, tpl, "shared-1", pool, NULL, slots, bogus, NULL, 1, &job) !=
      OVM_RESULT_INVALID_ENUM)
    return 1;
  /* C has no typed call that makes a disk shareable: the generic update edits that field. */
  char *d = NULL;
  CHECK(ovm_object_get_json(mgr, OVM_OBJECT_VIRTUAL_DISK, tdisk, &d));
  char *flag = strstr(d, "\"shareable\":false");
  if (!flag) return 1;
  memcpy(flag, "\"shareable\":true ", 17);
  CHECK(ovm_object_update_json(mgr, d, &job));
  ovm_string_free(d);
  run_job(job, NULL);
  CHECK(ovm_vm_clone_template_custom(mgr, tpl, "shared-1", pool, NULL, slots, share, NULL, 1, &job));
  run_job(job, vm);
  if (!json_has(mgr, OVM_OBJECT_VM, vm, tdisk)) return 1;
  /* A VM cloned from it with its disk copied into the repository (NULL: the source's). */
  const char *into[] = {repo};
  CHECK(ovm_vm_clone(mgr, vm, "copied-1", NULL, NULL, slots, copy, into, 1, &job));
  run_job(job, vm2);
  if (json_has(mgr, OVM_OBJECT_VM, vm2, tdisk)) return 1;
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);
  printf("clone: slot 0 shared with the template, then copied by a VM clone; sharing a disk that is not "
         "shareable refused\n");

  /* A server taken over (a new simulated server: no other manager owns it). */
  CHECK(ovm_server_take_over(mgr, "sim://spare", OVM_SIM_PASSWORD, &job));
  run_job(job, id);

  /* A rebuild goes only into an empty inventory. */
  const char *addresses[] = {"sim://lone"}, *passwords[] = {OVM_SIM_PASSWORD};
  ovm_rebuild_report *report = NULL;
  if (ovm_manager_rebuild_from_servers(mgr, addresses, passwords, 1, &report) != OVM_RESULT_CONFLICT) return 1;
  /* A second manager opened from C has a simulated world of its own (C cannot share one between
   * managers), so it rebuilds from a server that holds no repository: the report is read all the same. */
  ovm_manager *fresh = NULL;
  CHECK(ovm_manager_open(":memory:", &fresh));
  CHECK(ovm_manager_rebuild_from_servers(fresh, addresses, passwords, 1, &report));
  size_t servers = 0, repositories = 0, running = 0, lost = 0, objects = 0;
  CHECK(ovm_rebuild_report_count(report, OVM_REBUILD_SERVERS, &servers));
  CHECK(ovm_rebuild_report_count(report, OVM_REBUILD_REPOSITORIES, &repositories));
  CHECK(ovm_rebuild_report_count(report, OVM_REBUILD_RUNNING_VMS, &running));
  CHECK(ovm_rebuild_report_count(report, OVM_REBUILD_NOT_RECOVERED, &lost));
  CHECK(ovm_rebuild_report_objects(report, &objects));
  if (servers != 1 || repositories != 0 || running != 0) return 1;
  CHECK(ovm_rebuild_report_item(report, OVM_REBUILD_SERVERS, 0, id, sizeof id, &n));
  if (!json_has(fresh, OVM_OBJECT_SERVER, id, "sim://lone")) return 1;
  for (size_t i = 0; i < lost; i++) {
    char line[512];
    CHECK(ovm_rebuild_report_item(report, OVM_REBUILD_NOT_RECOVERED, i, line, sizeof line, &n));
    printf("  not recovered: %s\n", line);
  }
  if (ovm_rebuild_report_item(report, OVM_REBUILD_SERVERS, 1, id, sizeof id, &n) != OVM_RESULT_INVALID_ARGUMENT)
    return 1;
  if (ovm_rebuild_report_count(report, 99, &n) != OVM_RESULT_INVALID_ENUM) return 1;
  ovm_rebuild_report_free(report);
  ovm_rebuild_report_free(NULL);
  printf("rebuild: refused into a full inventory; a new manager took over %zu server (%zu objects, %zu "
         "repositories recovered)\n",
         servers, objects, repositories);
  ovm_manager_free(fresh);

  ovm_manager_free(mgr);
  printf("imports: OK\n");
  return 0;
}
