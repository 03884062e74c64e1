/* tests/integration/test_worker_support.h - starting the real warren-worker
 * binary as a child for the worker's integration and interop tests, waiting
 * on conditions with deadlines, and reaping every child even when a test
 * fails (worker_test_fini, registered as each suite's .fini). */
#ifndef WARREN_TEST_WORKER_SUPPORT_H
#define WARREN_TEST_WORKER_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define WORKER_BIN WARREN_BUILD_DIR "/bin/warren-worker"
#define WORKER_PLUGINS                                                            \
	"--plugin " WARREN_BUILD_DIR "/plugins/test.so --plugin " WARREN_BUILD_DIR \
	"/plugins/math.so --plugin " WARREN_BUILD_DIR "/plugins/text.so"
#define WORKER_CLIENT WARREN_SOURCE_DIR "/tests/interop/worker_celery_client.py"

/* "warren.test.worker.<tag>.<pid>" (static buffer, one per slot 0..3). */
const char *worker_test_queue(int slot, const char *tag);

/* Starts `warren-worker <args>` (split on spaces) with the test broker,
 * logging to a file; returns its pid. Every child is remembered for
 * worker_test_fini. */
pid_t worker_test_start(const char *args);

/* The log file of a child started by worker_test_start. */
const char *worker_test_log(pid_t pid);

/* Waits until the worker's log contains `needle` (true) or timeout_ms passes. */
bool worker_test_wait_log(pid_t pid, const char *needle, int timeout_ms);

/* Counts lines of the log containing needle. */
int worker_test_count_log(pid_t pid, const char *needle);

/* Sends sig and waits up to timeout_ms for the child to exit; returns its
 * exit status (128+signal if killed), or -1 if it did not exit (then it is
 * SIGKILLed and reaped). */
int worker_test_stop(pid_t pid, int sig, int timeout_ms);

/* Runs the Celery client helper (`mode queue args`) with the result backend
 * `backend_url` and returns its stdout (static buffer). */
const char *worker_test_client(const char *backend_url, const char *mode, const char *queue,
			       const char *args);

/* Asserts the helper's JSON says ok, printing its detail otherwise. */
void worker_test_assert_ok(const char *json, const char *what);

/* Kills and reaps every child still running. */
void worker_test_fini(void);

#endif
