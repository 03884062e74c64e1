/* tests/unit/pool_test.h - helpers shared by the pool tests
 * (test_pool_common.c, test_pool_prefork.c): a registry with the example
 * plugins, jobs with packed args, and a driver that waits for a finished job
 * the way the worker's loop does (poll pool_fd up to the pool's next deadline,
 * pool_tick, pool_take_done), so no test sleeps and hopes. */
#ifndef WARREN_TESTS_POOL_TEST_H
#define WARREN_TESTS_POOL_TEST_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "worker/worker.h"

#define PT_PLUGIN_DIR WARREN_BUILD_DIR "/plugins/"

static inline registry *pt_registry(void)
{
	registry *reg = NULL;
	warren_error err = {0};
	cr_assert_eq(registry_new(&reg, &err), 0, "%s", err.msg);
	cr_assert_eq(plugin_load(reg, PT_PLUGIN_DIR "math.so", &err), 0, "%s", err.msg);
	cr_assert_eq(plugin_load(reg, PT_PLUGIN_DIR "test.so", &err), 0, "%s", err.msg);
	return reg;
}

static inline pool *pt_pool(pool_kind kind, int concurrency, const registry *reg)
{
	pool_options o = {.kind = kind, .concurrency = concurrency};
	pool *p = NULL;
	warren_error err = {0};
	cr_assert_eq(pool_new(&o, reg, &p, &err), 0, "%s", err.msg);
	return p;
}

/* A job for task `name`; args from the packer the caller filled (may be
 * NULL for none). */
static inline pool_job *pt_job(uint64_t seq, const char *name, msgpack_sbuffer *args)
{
	pool_job *j = calloc(1, sizeof *j);
	cr_assert_not_null(j);
	char id[64];
	snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llu", (unsigned long long)seq);
	j->seq = seq;
	j->task_id = strdup(id);
	j->task_name = strdup(name);
	if (args && args->size) {
		j->args_len = args->size;
		j->args = msgpack_sbuffer_release(args);
	}
	if (args)
		msgpack_sbuffer_destroy(args); /* what was not released */
	return j;
}

/* [a, b] */
static inline pool_job *pt_job_ints(uint64_t seq, const char *name, int64_t a, int64_t b)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int64(&pk, a);
	msgpack_pack_int64(&pk, b);
	return pt_job(seq, name, &sb);
}

/* [x] */
static inline pool_job *pt_job_double(uint64_t seq, const char *name, double x)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_double(&pk, x);
	return pt_job(seq, name, &sb);
}

/* [s] */
static inline pool_job *pt_job_str(uint64_t seq, const char *name, const char *s)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_str_with_body(&pk, s, strlen(s));
	return pt_job(seq, name, &sb);
}

static inline void pt_submit(pool *p, pool_job *j)
{
	warren_error err = {0};
	cr_assert_eq(pool_submit(p, j, &err), 0, "%s", err.msg);
}

static inline double pt_now(void)
{
	return (double)task_monotonic_ns() / 1e9;
}

/* The next finished job, waiting at most timeout seconds as the loop would;
 * NULL if none came. */
static inline pool_job *pt_wait(pool *p, double timeout)
{
	int64_t until = task_monotonic_ns() + (int64_t)(timeout * 1e9);
	for (;;) {
		pool_job *j = pool_take_done(p);
		if (j)
			return j;
		int64_t now = task_monotonic_ns();
		if (now >= until)
			return NULL;
		int64_t d = pool_next_deadline_ns(p);
		if (d == 0 || d > until)
			d = until;
		int64_t left = d - now;
		struct pollfd pfd = {.fd = pool_fd(p), .events = POLLIN};
		poll(&pfd, 1, left <= 0 ? 0 : (int)((left + 999999) / 1000000));
		pool_tick(p);
	}
}

/* Like pt_wait, failing the test on timeout. */
static inline pool_job *pt_expect(pool *p, double timeout)
{
	pool_job *j = pt_wait(p, timeout);
	cr_assert_not_null(j, "no job finished within %.1f s", timeout);
	return j;
}

/* The job's packed result, unpacked into u. */
static inline const msgpack_object *pt_result(const pool_job *j, msgpack_unpacked *u)
{
	cr_assert_eq(j->status, TASK_SUCCESS, "job %llu: status %d, %s: %s",
		     (unsigned long long)j->seq, j->status, j->exc_type ? j->exc_type : "-",
		     j->exc_message ? j->exc_message : "-");
	cr_assert_not_null(j->result);
	size_t off = 0;
	msgpack_unpacked_init(u);
	cr_assert_eq(msgpack_unpack_next(u, j->result, j->result_len, &off), MSGPACK_UNPACK_SUCCESS);
	return &u->data;
}

static inline int64_t pt_result_int(const pool_job *j)
{
	msgpack_unpacked u;
	const msgpack_object *o = pt_result(j, &u);
	cr_assert(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		  o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER, "result type %d", o->type);
	int64_t v = o->via.i64;
	msgpack_unpacked_destroy(&u);
	return v;
}

static inline void pt_expect_failure(const pool_job *j, const char *type, const char *module)
{
	cr_assert_eq(j->status, TASK_FAILURE, "job %llu: status %d", (unsigned long long)j->seq,
		     j->status);
	cr_assert_str_eq(j->exc_type ? j->exc_type : "(null)", type, "message: %s",
			 j->exc_message ? j->exc_message : "(null)");
	cr_assert_str_eq(j->exc_module ? j->exc_module : "(null)", module);
}

/* The open fds of this process as "0 1 2 ...", without the one reading them. */
static inline void pt_fds(char *buf, size_t cap)
{
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	int self = dirfd(d);
	int fds[1024];
	size_t n = 0;
	for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != self)
			fds[n++] = fd;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++) /* insertion sort: readdir order is not numeric */
		for (size_t k = i; k > 0 && fds[k - 1] > fds[k]; k--) {
			int t = fds[k];
			fds[k] = fds[k - 1];
			fds[k - 1] = t;
		}
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%d ", fds[i]);
}

/* No child of ours is left, not even a zombie. */
static inline void pt_expect_no_children(void)
{
	errno = 0;
	pid_t r = waitpid(-1, NULL, WNOHANG);
	cr_assert(r == -1 && errno == ECHILD, "a child is left: waitpid -> %d (%s)", (int)r,
		  strerror(errno));
}

#endif
