/* tests/support/support.h - what every test file may need: the services that
 * scripts/with-services started, fixture paths, running a helper program. */
#ifndef WARREN_TEST_SUPPORT_H
#define WARREN_TEST_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

/* The URL in environment variable `var` (WARREN_TEST_BROKER, WARREN_TEST_REDIS).
 * Fails the calling test, never skips it, when the variable is unset: tests
 * that need services run under `make test` (scripts/with-services). */
const char *support_service_url(const char *var);

/* "<repo>/<rel>" in a static buffer, valid until the next call. */
const char *support_source_path(const char *rel);

/* Parses "scheme://[user[:pass]@]host:port[/...]" into host (caller's buffer
 * of hostlen bytes) and port. Returns 0, or -1 if it has no host:port. */
int support_url_host_port(const char *url, char *host, size_t hostlen, int *port);

/* Runs `sh -c cmd`, collects at most cap-1 bytes of its stdout into out
 * (NUL-terminated) and returns its exit status (-1 if it could not run). */
int support_run(const char *cmd, char *out, size_t cap);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound, read, closed),
 * for a server the test starts. */
int support_free_port(void);

/* Forks a Celery 5.2 worker as the interop tests run it: `python3 -m celery
 * -A celery_app worker -P solo -c 1 -Q queue` without gossip, mingle or
 * heartbeat, in tests/interop, with WARREN_TEST_BROKER set and
 * CELERY_RESULT_BACKEND = backend, its output in log. Returns its pid; the
 * caller kills and reaps it. */
pid_t support_start_celery(const char *queue, const char *backend, const char *log);

#endif
