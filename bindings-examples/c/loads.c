/* Server and VM loads: sampled by the manager, kept raw and downsampled, read as typed structs. A
 * VM runs on a simulated pool; two sampling rounds later its server's sample names it, with the
 * server's CPU count and memory, and the sampling settings are checked (a bad one changes
 * nothing). */
#include "common.h"
#include <string.h>

int main(void) {
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;
  size_t n = 0;
  bool found = true;

  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "web", pool, 1024, 2, 0, &job));
  run_job(job, vm);
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);

  ovm_load_sample sample;
  CHECK(ovm_server_load(mgr, s1, &sample, &found));
  if (found) {
    fprintf(stderr, "a sample before any sampling round\n");
    return 1;
  }
  ovm_load_sampling settings;
  CHECK(ovm_load_sampling_get(mgr, &settings));
  printf("sampling every %llu ms, raw kept %llu ms, averaged over %llu ms, kept %llu ms\n",
         (unsigned long long)settings.interval_ms, (unsigned long long)settings.raw_retention_ms,
         (unsigned long long)settings.coarse_interval_ms, (unsigned long long)settings.coarse_retention_ms);
  ovm_load_sampling bad = settings;
  bad.coarse_interval_ms = settings.interval_ms + 1;
  if (ovm_load_sampling_set(mgr, bad) != OVM_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "a coarse interval that is no multiple of the interval was accepted\n");
    return 1;
  }
  settings.interval_ms = 1000;
  settings.raw_retention_ms = 60000;
  settings.coarse_interval_ms = 2000;
  settings.coarse_retention_ms = 600000;
  CHECK(ovm_load_sampling_set(mgr, settings));

  for (int round = 0; round < 4; round++) {
    CHECK(ovm_sample_loads(mgr, &n));
    if (n != 2) {
      fprintf(stderr, "%zu servers sampled, not 2\n", n);
      return 1;
    }
  }
  ovm_vm_load_sample vl;
  CHECK(ovm_vm_load(mgr, vm, &vl, &found));
  if (!found || vl.memory_mib != 1024) {
    fprintf(stderr, "the VM's load is missing or wrong (%d, %llu MiB)\n", found, (unsigned long long)vl.memory_mib);
    return 1;
  }
  printf("web uses %.1f%% of a CPU and %llu MiB\n", vl.cpu_percent, (unsigned long long)vl.memory_mib);

  int vms = 0;
  const char *servers[] = {s1, s2};
  for (int i = 0; i < 2; i++) {
    CHECK(ovm_server_load(mgr, servers[i], &sample, &found));
    if (!found || sample.cpus != 8 || sample.samples != 1) {
      fprintf(stderr, "server %d: no sample or a wrong one\n", i + 1);
      return 1;
    }
    vms += (int)sample.vm_count;
    printf("server %d: cpu %.1f%% of %u CPUs, %llu MiB free, %u VMs, %u interfaces\n", i + 1, sample.cpu_percent,
           sample.cpus, (unsigned long long)sample.free_memory_mib, sample.vm_count, sample.interface_count);
    ovm_load_sample history[8];
    if (ovm_server_load_history(mgr, servers[i], OVM_LOAD_RAW, NULL, 0, &n) != OVM_RESULT_BUFFER_TOO_SMALL ||
        n != 4) {
      fprintf(stderr, "expected 4 raw samples, got %zu\n", n);
      return 1;
    }
    CHECK(ovm_server_load_history(mgr, servers[i], OVM_LOAD_RAW, history, 8, &n));
    CHECK(ovm_server_load_history(mgr, servers[i], OVM_LOAD_COARSE, history, 8, &n));
    if (n != 2 || history[0].samples != 2) {
      fprintf(stderr, "expected 2 averages of 2 samples, got %zu\n", n);
      return 1;
    }
    ovm_interface_load ifs[16];
    CHECK(ovm_server_interface_loads(mgr, servers[i], ifs, 16, &n));
    char *json = NULL;
    CHECK(ovm_server_load_history_json(mgr, servers[i], OVM_LOAD_COARSE, &json));
    if (strstr(json, "\"cpu_percent\"") == NULL) {
      fprintf(stderr, "the JSON history lacks cpu_percent: %s\n", json);
      return 1;
    }
    ovm_string_free(json);
  }
  if (vms != 1) {
    fprintf(stderr, "the VM appears in %d samples, not 1\n", vms);
    return 1;
  }
  if (ovm_server_load_history(mgr, s1, 7, NULL, 0, &n) != OVM_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "an unknown resolution was accepted\n");
    return 1;
  }
  ovm_manager_free(mgr);
  puts("loads: ok");
  return 0;
}
