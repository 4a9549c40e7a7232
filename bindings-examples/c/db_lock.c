/* A manager database has one manager: a second open is refused with OVM_RESULT_DATABASE_LOCKED naming
 * the holder's process id, whether the holder is in this process or another; a holder killed with
 * SIGKILL leaves nothing locked; a closed manager gives the file up. Also: a reference to an object
 * that does not exist is OVM_RESULT_NOT_FOUND. */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void expect_locked_by(const char *path, long pid) {
  ovm_manager *mgr = NULL;
  ovm_result rc = ovm_manager_open(path, &mgr);
  char msg[512], want[64];
  size_t n = 0;
  CHECK(ovm_last_error_message(msg, sizeof msg, &n));
  snprintf(want, sizeof want, "process %ld", pid);
  if (rc != OVM_RESULT_DATABASE_LOCKED || mgr != NULL || strstr(msg, want) == NULL) {
    fprintf(stderr, "expected OVM_RESULT_DATABASE_LOCKED naming %s, got %s: %s\n", want, ovm_result_name(rc), msg);
    exit(1);
  }
  printf("refused while held by process %ld: %s\n", pid, msg);
}

int main(void) {
  /* A private directory for the database, under $TMPDIR (mkdtemp fills in the Xs). */
  const char *tmp = getenv("TMPDIR");
  char dir[96];
  snprintf(dir, sizeof dir, "%s/ovm-db-lock-XXXXXX", tmp && *tmp && strlen(tmp) < 64 ? tmp : "/tmp");
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
  char path[128];
  snprintf(path, sizeof path, "%s/manager.db", dir);

  /* Another process holds the database (forked before this process starts any thread). */
  int ready[2];
  if (pipe(ready) != 0) return perror("pipe"), 1;
  pid_t child = fork();
  if (child < 0) return perror("fork"), 1;
  if (child == 0) {
    ovm_manager *held = NULL;
    if (ovm_manager_open(path, &held) != OVM_RESULT_OK) _exit(2);
    if (write(ready[1], "R", 1) != 1) _exit(3);
    for (;;) pause(); /* until SIGKILL: no destructor runs */
  }
  close(ready[1]);
  char c = 0;
  if (read(ready[0], &c, 1) != 1 || c != 'R') return fprintf(stderr, "the holder did not start\n"), 1;
  expect_locked_by(path, (long)child);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) return fprintf(stderr, "holder did not die of SIGKILL\n"), 1;

  /* The killed holder left nothing locked. */
  ovm_manager *mgr = NULL, *other = NULL;
  CHECK(ovm_manager_open(path, &mgr));
  printf("opened after the holder was killed\n");
  /* A second manager in this process is refused too. */
  expect_locked_by(path, (long)getpid());

  /* A reference to a missing pool is NOT_FOUND, not INVALID_ARGUMENT. */
  ovm_job *job = NULL;
  ovm_result rc = ovm_vm_create(mgr, "orphan", "5b848d1a-c95c-4411-848a-34317e167ad8", 512, 1, 0, &job);
  char msg[512];
  size_t n = 0;
  CHECK(ovm_last_error_message(msg, sizeof msg, &n));
  if (rc != OVM_RESULT_NOT_FOUND || strstr(msg, "5b848d1a-c95c-4411-848a-34317e167ad8") == NULL)
    return fprintf(stderr, "create_vm with a missing pool: %s: %s\n", ovm_result_name(rc), msg), 1;
  printf("a missing pool is %s: %s\n", ovm_result_name(rc), msg);

  /* Closing gives the database up; writes on the closed manager are refused. */
  CHECK(ovm_manager_close(mgr, 5000));
  CHECK(ovm_manager_open(path, &other));
  rc = ovm_pool_create(mgr, "late", &job);
  if (rc != OVM_RESULT_CLOSED) return fprintf(stderr, "write after close: %s\n", ovm_result_name(rc)), 1;
  printf("opened by a second manager after close; the closed one refuses writes\n");
  ovm_manager_free(other);
  ovm_manager_free(mgr);

  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return 1;
  printf("db_lock: all checks passed\n");
  return 0;
}
