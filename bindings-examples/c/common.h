/* Helpers shared by the ovm C examples. */
#ifndef OVM_EXAMPLES_COMMON_H
#define OVM_EXAMPLES_COMMON_H

#include <ovm.h>
#include <stdio.h>
#include <stdlib.h>

/* Abort the example with ovm's last error message if `call` did not succeed. */
#define CHECK(call)                                                                     \
  do {                                                                                  \
    ovm_result rc_ = (call);                                                            \
    if (rc_ != OVM_RESULT_OK) {                                                         \
      char msg_[512];                                                                   \
      size_t n_ = 0;                                                                    \
      if (ovm_last_error_message(msg_, sizeof msg_, &n_) != OVM_RESULT_OK) msg_[0] = 0; \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,        \
              ovm_result_name(rc_), msg_);                                              \
      exit(1);                                                                          \
    }                                                                                   \
  } while (0)

/* Wait for a job, fail the example if it did not complete, copy its result id (if any), free it. */
static inline void run_job(ovm_job *job, char result_id[OVM_ID_LEN]) {
  CHECK(ovm_job_wait(job, 30000));
  if (result_id) {
    size_t n = 0;
    CHECK(ovm_job_result_id(job, result_id, OVM_ID_LEN, &n));
  }
  ovm_job_free(job);
}

/* Two simulated servers in one pool; fills the ids. */
static inline void sim_pool(ovm_manager *mgr, char s1[OVM_ID_LEN], char s2[OVM_ID_LEN], char pool[OVM_ID_LEN]) {
  ovm_job *job = NULL;
  CHECK(ovm_server_discover(mgr, "sim://xen1?memory_mib=32768", "ovm-sim", &job));
  run_job(job, s1);
  CHECK(ovm_server_discover(mgr, "sim://xen2?memory_mib=32768", "ovm-sim", &job));
  run_job(job, s2);
  CHECK(ovm_pool_create(mgr, "pool1", &job));
  run_job(job, pool);
  CHECK(ovm_pool_add_server(mgr, pool, s1, &job));
  run_job(job, NULL);
  CHECK(ovm_pool_add_server(mgr, pool, s2, &job));
  run_job(job, NULL);
}

#endif
