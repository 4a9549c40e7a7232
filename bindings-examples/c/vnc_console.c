/* A console plugin's use of a VM's graphical console: make a VM an HVM guest, start it, open its
 * one-time VNC endpoint (an address on this machine's loopback and a one-time password, for a VNC
 * viewer or noVNC's proxy), and save a screenshot of its screen as a PNG through the endpoint.
 * A wrong password is refused, and the endpoint takes nobody after its client. */
#include "common.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char tmp[512];
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmp, sizeof tmp, "%s/ovm-vnc-console-%d.png", dir, (int)getpid());
  const char *png = argc > 1 ? argv[1] : tmp;
  ovm_manager *mgr = NULL;
  char s1[OVM_ID_LEN], s2[OVM_ID_LEN], pool[OVM_ID_LEN], vm[OVM_ID_LEN];
  ovm_job *job = NULL;
  CHECK(ovm_manager_open(":memory:", &mgr));
  sim_pool(mgr, s1, s2, pool);
  CHECK(ovm_vm_create(mgr, "desktop01", pool, 1024, 1, 1, &job));
  run_job(job, vm);
  const uint32_t order[] = {OVM_BOOT_CDROM, OVM_BOOT_DISK};
  CHECK(ovm_vm_set_boot(mgr, vm, OVM_DOMAIN_HVM, order, 2, &job));
  run_job(job, NULL);
  const uint32_t twice[] = {OVM_BOOT_DISK, OVM_BOOT_DISK};
  if (ovm_vm_set_boot(mgr, vm, OVM_DOMAIN_HVM, twice, 2, &job) != OVM_RESULT_INVALID_ARGUMENT) return 1;
  CHECK(ovm_vm_start(mgr, vm, 0, &job));
  run_job(job, NULL);

  ovm_console_endpoint ep;
  CHECK(ovm_vm_console_open(mgr, vm, &ep));
  printf("vnc_console: %s, password %s, for %u s\n", ep.address, ep.password, ep.expires_in_secs);
  if (ovm_console_screenshot(ep.address, "not-it", 10000, png, NULL, NULL, NULL) != OVM_RESULT_PERMISSION_DENIED) {
    fprintf(stderr, "a wrong password was not refused\n");
    return 1;
  }
  uint32_t w = 0, h = 0, colours = 0;
  CHECK(ovm_console_screenshot(ep.address, ep.password, 10000, png, &w, &h, &colours));
  printf("vnc_console: screenshot %ux%u, %u colours, saved to %s\n", w, h, colours, png);
  ovm_result again = ovm_console_screenshot(ep.address, ep.password, 2000, png, NULL, NULL, NULL);
  int ok = w > 0 && h > 0 && colours > 1 && again != OVM_RESULT_OK;
  printf("vnc_console: the used endpoint refused a second client: %s\n", ovm_result_name(again));
  ovm_manager_free(mgr);
  if (argc <= 1) unlink(tmp);
  printf("vnc_console: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
