/* tests/integration/test_worker_metrics_dlopen.c - libmicrohttpd is
 * dlopen'd by worker/metrics.c only when metrics are asked for: a worker
 * without --metrics-port maps neither it nor gnutls (parent and prefork
 * children), one with it loads it and serves; and when the library cannot
 * be loaded, metrics_new fails with an error naming it and dlerror()'s
 * reason. The load failures go through the metrics_dlopen seam, so that
 * suite (worker_metrics_dlopen) needs no services; the one that starts real
 * workers is integration_metrics_dlopen. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "worker/worker.h"

static void nap_ms(int ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&d, NULL);
}

/* The HTTP status of GET path on 127.0.0.1:port, 0 when nothing answers. */
static int http_status(int port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	char buf[512];
	int n = snprintf(buf, sizeof buf, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	int status = 0;
	if (write(fd, buf, (size_t)n) == n) {
		ssize_t got = read(fd, buf, sizeof buf - 1);
		if (got > 0) {
			buf[got] = '\0';
			sscanf(buf, "HTTP/%*s %d", &status);
		}
	}
	close(fd);
	return status;
}

static bool wait_status(int port, const char *path, int want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 100) {
		if (http_status(port, path) == want)
			return true;
		nap_ms(100);
	}
	return false;
}

static metrics_options options(void)
{
	metrics_options o = {.port = support_free_port(), .pool = POOL_THREADS, .concurrency = 1,
			     .consumers = 1};
	return o;
}

/* ---- load failures, through the seam ------------------------------------------ */

/* Each fake records the names metrics.c asked for. */
static char asked[4][64];
static int n_asked;

static void remember(const char *file)
{
	if (n_asked < 4)
		snprintf(asked[n_asked++], sizeof asked[0], "%s", file);
}

/* The real dlopen of a path that does not exist, so dlerror() says what it
 * says on a machine without libmicrohttpd12. */
static void *open_nowhere(const char *file, int mode)
{
	char path[256];
	snprintf(path, sizeof path, "/nonexistent-warren-test/%s", file);
	return dlopen(path, mode);
}

/* Not installed. */
static void *dlopen_missing(const char *file, int mode)
{
	remember(file);
	return open_nowhere(file, mode);
}

/* A library that loads but is not libmicrohttpd. */
static void *dlopen_wrong_library(const char *file, int mode)
{
	remember(file);
	return dlopen("libm.so.6", mode);
}

/* Only the unversioned development symlink is there. */
static void *dlopen_dev_symlink_only(const char *file, int mode)
{
	remember(file);
	if (strcmp(file, "libmicrohttpd.so") != 0)
		return open_nowhere(file, mode);
	return dlopen(file, mode);
}

Test(worker_metrics_dlopen, a_missing_library_fails_naming_it_and_dlerror)
{
	metrics_dlopen = dlopen_missing;
	metrics_options o = options();
	metrics *m = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o, &m, &err), WARREN_ECONFIG, "%s", err.msg);
	cr_expect_null(m);
	cr_expect(strstr(err.msg, "cannot load 'libmicrohttpd.so.12'"), "%s", err.msg);
	cr_expect(strstr(err.msg, "/nonexistent-warren-test/libmicrohttpd.so.12: cannot open shared "
				  "object file"), "dlerror()'s reason for the runtime soname: %s",
		  err.msg);
	cr_expect_eq(n_asked, 2, "both sonames tried");
	cr_expect_str_eq(asked[0], "libmicrohttpd.so.12");
	cr_expect_str_eq(asked[1], "libmicrohttpd.so");
	cr_expect_eq(http_status(o.port, "/healthz"), 0, "nothing listens");
}

Test(worker_metrics_dlopen, a_library_without_the_functions_is_refused_by_symbol)
{
	metrics_dlopen = dlopen_wrong_library;
	metrics_options o = options();
	metrics *m = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o, &m, &err), WARREN_ECONFIG, "%s", err.msg);
	cr_expect_null(m);
	cr_expect(strstr(err.msg, "'libmicrohttpd.so.12' has no 'MHD_start_daemon'"), "%s",
		  err.msg);
	cr_expect_eq(n_asked, 1);
}

Test(worker_metrics_dlopen, falls_back_to_the_unversioned_soname_and_serves)
{
	metrics_dlopen = dlopen_dev_symlink_only;
	metrics_options o = options();
	metrics *m = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o, &m, &err), 0, "%s", err.msg);
	cr_expect_eq(n_asked, 2);
	cr_expect_str_eq(asked[1], "libmicrohttpd.so");
	cr_expect_eq(http_status(o.port, "/metrics"), 200);
	metrics_free(m);
}

Test(worker_metrics_dlopen, loads_once_for_every_server)
{
	metrics_dlopen = dlopen_dev_symlink_only;
	metrics_options o1 = options(), o2 = options();
	metrics *m1 = NULL, *m2 = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o1, &m1, &err), 0, "%s", err.msg);
	metrics_free(m1);
	cr_assert_eq(metrics_new(&o2, &m2, &err), 0, "%s", err.msg);
	cr_expect_eq(n_asked, 2, "the second server reuses the loaded library");
	cr_expect_eq(http_status(o2.port, "/healthz"), 503, "no loop report yet");
	metrics_free(m2);
}

/* ---- real workers ------------------------------------------------------------- */

/* Whether /proc/<pid>/maps names a file containing `lib`. */
static bool maps_has(pid_t pid, const char *lib)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	bool found = false;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, lib) != NULL;
	fclose(f);
	return found;
}

/* The pids of pid's children (the prefork pool), from /proc/<n>/stat. */
static int children_of(pid_t pid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	int n = 0;
	for (struct dirent *e; n < max && (e = readdir(d));) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[300], buf[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = '\0';
		const char *rp = strrchr(buf, ')'); /* the name may hold spaces */
		int ppid;
		if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == (int)pid)
			out[n++] = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return n;
}

Test(integration_metrics_dlopen, a_worker_without_metrics_maps_no_microhttpd_nor_gnutls,
     .fini = worker_test_fini, .timeout = 60)
{
	char args[1024];
	snprintf(args, sizeof args, "%s -Q %s -c 2 -P prefork", WORKER_PLUGINS,
		 worker_test_queue(0, "nometrics"));
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 15000), "see %s", worker_test_log(w));
	pid_t procs[8] = {w};
	int n = 1 + children_of(w, procs + 1, 7);
	cr_assert_eq(n, 3, "the parent and its 2 children");
	for (int i = 0; i < n; i++) {
		cr_expect_not(maps_has(procs[i], "libmicrohttpd"), "pid %d maps libmicrohttpd",
			      (int)procs[i]);
		cr_expect_not(maps_has(procs[i], "libgnutls"), "pid %d maps libgnutls",
			      (int)procs[i]);
	}
	cr_expect_eq(worker_test_stop(w, SIGTERM, 15000), 0);
}

Test(integration_metrics_dlopen, a_metrics_port_loads_microhttpd_and_serves,
     .fini = worker_test_fini, .timeout = 60)
{
	char args[1024];
	int port = support_free_port();
	snprintf(args, sizeof args, "%s -Q %s -c 1 -P threads --metrics-port %d", WORKER_PLUGINS,
		 worker_test_queue(0, "metricsload"), port);
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 15000), "see %s", worker_test_log(w));
	cr_expect(maps_has(w, "libmicrohttpd"));
	cr_expect(wait_status(port, "/healthz", 200, 5000), "/healthz never said 200");
	cr_expect_eq(http_status(port, "/metrics"), 200);
	cr_expect_eq(worker_test_stop(w, SIGTERM, 15000), 0);
}
