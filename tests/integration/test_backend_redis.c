/* tests/integration/test_backend_redis.c - the redis result backend
 * (backends/redis.c) against the real Redis of scripts/with-services
 * (WARREN_TEST_REDIS): store/get/forget, waiting for one and many results
 * that arrive late (from a forked child or a thread that stores once our
 * subscription is visible on the server, so no test depends on a sleep),
 * deadlines, Celery's SUCCESS-is-final rule, expiry, and a subscriber
 * connection killed in the middle of a wait. Tests run in parallel: every
 * task id is unique to its test. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "support.h"

/* ---- helpers ---- */

static void nap_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err->msg);
}

/* A task id no other test (or earlier run) uses. */
static void unique_id(char *buf, size_t cap, const char *tag)
{
	static unsigned counter;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, cap, "it-%s-%d-%ld%09ld-%u", tag, (int)getpid(), (long)ts.tv_sec,
		 ts.tv_nsec, counter++);
}

static backend *open_redis_url(const char *url, int64_t expires)
{
	warren_error err = {0};
	backend_options o;
	backend_options_default(&o);
	if (expires >= 0)
		o.result_expires = expires;
	backend *b = NULL;
	ok(backend_open(url, &o, &b, &err), &err);
	cr_assert_str_eq(backend_name(b), "redis");
	return b;
}

static backend *open_redis(int64_t expires)
{
	return open_redis_url(support_service_url("WARREN_TEST_REDIS"), expires);
}

/* A plain hiredis connection for looking behind the backend's back. */
static redisContext *raw_redis_url(const char *url)
{
	char host[256];
	int port;
	cr_assert_eq(support_url_host_port(url, host, sizeof host, &port), 0);
	redisContext *c = redisConnect(host, port);
	cr_assert(c && !c->err, "connect %s:%d", host, port);
	return c;
}

static redisContext *raw_redis(void)
{
	return raw_redis_url(support_service_url("WARREN_TEST_REDIS"));
}

static long long raw_integer(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(c, fmt, arg);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", fmt, arg);
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

/* Blocks (bounded) until some client is subscribed to task id's channel:
 * from then on a store must reach the waiter through pub/sub. */
static void until_subscribed(redisContext *c, const char *id)
{
	char key[256];
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	for (int i = 0; i < 2000; i++) {
		redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", key);
		cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
		long long n = r->element[1]->integer;
		freeReplyObject(r);
		if (n > 0)
			return;
		nap_ms(2);
	}
	cr_assert_fail("nobody subscribed to %s within 4 s", key);
}

/* SUCCESS with the value {"sum": [1, 2.5, "é"]} (nested, UTF-8). */
static const char NESTED[] = "\x81\xa3sum\x93\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xa2\xc3\xa9";
#define NESTED_LEN (sizeof NESTED - 1)

static void make_success(schema_result *r, const char *id)
{
	warren_error err = {0};
	schema_result_init(r);
	ok(schema_result_set_task_id(r, id, &err), &err);
	ok(schema_result_set_success(r, NESTED, NESTED_LEN, &err), &err);
	ok(schema_result_stamp_date_done(r, NULL, &err), &err);
}

static void make_failure(schema_result *r, const char *id, const char *message)
{
	warren_error err = {0};
	schema_result_init(r);
	ok(schema_result_set_task_id(r, id, &err), &err);
	ok(schema_result_set_exception(r, SCHEMA_STATE_FAILURE, "ValueError", "builtins",
				       message, &err), &err);
	ok(schema_result_stamp_date_done(r, NULL, &err), &err);
}

static void store_success(backend *b, const char *id)
{
	warren_error err = {0};
	schema_result r;
	make_success(&r, id);
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
}

static void expect_success(const schema_result *r, const char *id)
{
	cr_expect_str_eq(r->task_id, id);
	cr_expect_eq(r->state, SCHEMA_STATE_SUCCESS, "state %s", schema_state_name(r->state));
	cr_assert_eq(r->result_len, NESTED_LEN);
	cr_expect_eq(memcmp(r->result_mp, NESTED, NESTED_LEN), 0);
}

/* Stores SUCCESS for ids[0..n) in a forked child, each once a waiter is
 * subscribed to it, and returns the child's pid. */
static pid_t store_late_in_child(const char *const *ids, size_t n)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid != 0)
		return pid;
	/* Child: its own connections; never returns into Criterion. */
	warren_error err = {0};
	backend *b = NULL;
	redisContext *c = raw_redis();
	if (backend_open(getenv("WARREN_TEST_REDIS"), NULL, &b, &err) != 0)
		_exit(3);
	for (size_t i = 0; i < n; i++) {
		schema_result r;
		until_subscribed(c, ids[i]);
		make_success(&r, ids[i]);
		if (backend_store(b, &r, NULL, &err) != 0)
			_exit(4);
		schema_result_release(&r);
	}
	backend_free(b);
	redisFree(c);
	_exit(0);
}

static void reap(pid_t pid)
{
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

/* Records the order results arrive in. */
typedef struct arrivals {
	size_t index[16];
	size_t count;
	schema_result results[16];
} arrivals;

static int on_ready(void *arg, size_t index, schema_result *r)
{
	arrivals *a = arg;
	cr_assert_lt(a->count, 16);
	a->index[a->count] = index;
	a->results[a->count] = *r;
	schema_result_init(r);
	a->count++;
	return 0;
}

static void arrivals_release(arrivals *a)
{
	for (size_t i = 0; i < a->count; i++)
		schema_result_release(&a->results[i]);
}

/* ---- store, get, forget ---- */

Test(integration_backend_redis, get_of_an_unknown_id_is_pending)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "pending");
	backend *b = open_redis(-1);
	schema_result r;
	schema_result_init(&r);
	ok(backend_get(b, id, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_PENDING);
	cr_expect_str_eq(r.task_id, id);
	cr_expect_null(r.result_mp);
	schema_result_release(&r);
	backend_free(b);
}

Test(integration_backend_redis, store_then_get_round_trips_with_celerys_key)
{
	char id[96], key[160];
	warren_error err = {0};
	unique_id(id, sizeof id, "get");
	backend *b = open_redis(-1);
	store_success(b, id);

	schema_result r;
	schema_result_init(&r);
	ok(backend_get(b, id, &r, &err), &err);
	expect_success(&r, id);
	cr_expect_not_null(r.date_done);
	schema_result_release(&r);

	redisContext *c = raw_redis();
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	cr_expect_eq(raw_integer(c, "EXISTS %s", key), 1);
	redisFree(c);
	backend_free(b);
}

Test(integration_backend_redis, forget_deletes_the_result)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "forget");
	backend *b = open_redis(-1);
	store_success(b, id);
	ok(backend_forget(b, id, &err), &err);
	ok(backend_forget(b, id, &err), &err); /* already gone: fine */
	schema_result r;
	schema_result_init(&r);
	ok(backend_get(b, id, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_PENDING);
	schema_result_release(&r);
	backend_free(b);
}

Test(integration_backend_redis, a_stored_success_is_never_overwritten)
{
	char id[96], other[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "final");
	unique_id(other, sizeof other, "final");
	backend *b = open_redis(-1);
	schema_result r, got;
	schema_result_init(&got);

	/* SUCCESS then FAILURE (a redelivered task failing): SUCCESS stays. */
	store_success(b, id);
	make_failure(&r, id, "late duplicate");
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
	ok(backend_get(b, id, &got, &err), &err);
	expect_success(&got, id);

	/* FAILURE then SUCCESS (a retry that worked): SUCCESS replaces it. */
	make_failure(&r, other, "first try");
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
	store_success(b, other);
	ok(backend_get(b, other, &got, &err), &err);
	expect_success(&got, other);
	schema_result_release(&got);
	backend_free(b);
}

Test(integration_backend_redis, results_expire_after_result_expires)
{
	char id[96], key[160];
	unique_id(id, sizeof id, "ttl");
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	redisContext *c = raw_redis();

	backend *b = open_redis(120);
	store_success(b, id);
	long long ttl = raw_integer(c, "TTL %s", key);
	cr_expect(ttl > 100 && ttl <= 120, "TTL %lld", ttl);
	backend_free(b);

	/* result_expires 0: SET, no expiry (TTL -1); the default: one day. */
	unique_id(id, sizeof id, "ttl");
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	b = open_redis(0);
	store_success(b, id);
	cr_expect_eq(raw_integer(c, "TTL %s", key), -1);
	redisReply *r = redisCommand(c, "DEL %s", key);
	freeReplyObject(r);
	backend_free(b);

	unique_id(id, sizeof id, "ttl");
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	b = open_redis(-1);
	store_success(b, id);
	ttl = raw_integer(c, "TTL %s", key);
	cr_expect(ttl > 86000 && ttl <= 86400, "TTL %lld", ttl);
	backend_free(b);
	redisFree(c);
}

Test(integration_backend_redis, database_from_the_url_is_selected)
{
	char id[96], url[512], key[160];
	warren_error err = {0};
	unique_id(id, sizeof id, "db");
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	/* The service URL ends in /0; point at database 2 instead. */
	snprintf(url, sizeof url, "%s", support_service_url("WARREN_TEST_REDIS"));
	char *slash = strrchr(url, '/');
	cr_assert_not_null(slash);
	strcpy(slash, "/2");
	backend *b = NULL;
	ok(backend_open(url, NULL, &b, &err), &err);
	store_success(b, id);
	backend_free(b);

	redisContext *c = raw_redis();
	cr_expect_eq(raw_integer(c, "EXISTS %s", key), 0, "stored in database 0");
	redisReply *r = redisCommand(c, "SELECT 2");
	freeReplyObject(r);
	cr_expect_eq(raw_integer(c, "EXISTS %s", key), 1, "not in database 2");
	redisFree(c);
}

Test(integration_backend_redis, a_wrong_password_is_reported_masked)
{
	char url[512], host[256];
	int port;
	warren_error err = {0};
	cr_assert_eq(support_url_host_port(support_service_url("WARREN_TEST_REDIS"), host,
					   sizeof host, &port), 0);
	snprintf(url, sizeof url, "redis://:hunter2@%s:%d/0", host, port);
	backend *b = NULL;
	cr_assert_eq(backend_open(url, NULL, &b, &err), WARREN_EBACKEND);
	cr_expect(strstr(err.msg, ":****@") && strstr(err.msg, ": AUTH: "), "%s", err.msg);
	cr_expect_null(strstr(err.msg, "hunter2"));
	cr_expect_null(b);
}

/* ---- waiting ---- */

Test(integration_backend_redis, wait_returns_a_result_stored_before)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "before");
	backend *b = open_redis(-1);
	store_success(b, id);
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	size_t pending = 99;
	ok(backend_wait_results(b, ids, 1, 5000, &r, &pending, &err), &err);
	cr_expect_eq(pending, 0);
	expect_success(&r, id);
	schema_result_release(&r);
	backend_free(b);
}

Test(integration_backend_redis, wait_gets_results_stored_late_by_another_process)
{
	char a[96], bb[96], c[96];
	warren_error err = {0};
	unique_id(a, sizeof a, "many");
	unique_id(bb, sizeof bb, "many");
	unique_id(c, sizeof c, "many");
	backend *b = open_redis(-1);
	store_success(b, a); /* one ready before the wait, two after */
	const char *late[] = {c, bb};
	pid_t child = store_late_in_child(late, 2);

	const char *ids[] = {a, bb, c};
	arrivals got = {0};
	ok(backend_wait(b, ids, 3, 10000, on_ready, &got, &err), &err);
	reap(child);
	cr_assert_eq(got.count, 3);
	/* a was ready at once; the child stored c before bb. */
	cr_expect_eq(got.index[0], 0);
	cr_expect_eq(got.index[1], 2);
	cr_expect_eq(got.index[2], 1);
	for (size_t i = 0; i < 3; i++)
		expect_success(&got.results[i], ids[got.index[i]]);
	arrivals_release(&got);

	/* The same handle waits again: the subscriber connection is reused. */
	char d[96];
	unique_id(d, sizeof d, "many");
	const char *again[] = {d};
	child = store_late_in_child(again, 1);
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(b, again, 1, 10000, &r, NULL, &err), &err);
	reap(child);
	expect_success(&r, d);
	schema_result_release(&r);
	backend_free(b);
}

static int count_each(void *arg, size_t index, schema_result *r)
{
	unsigned char *seen = arg;
	cr_assert_eq(r->state, SCHEMA_STATE_SUCCESS);
	seen[index]++;
	return 0;
}

Test(integration_backend_redis, wait_for_a_thousand_half_of_them_late)
{
	enum { N = 1000 };
	static char idbuf[N][96];
	static const char *ids[N];
	static unsigned char seen[N];
	warren_error err = {0};
	backend *b = open_redis(-1);
	for (size_t i = 0; i < N; i++) {
		unique_id(idbuf[i], sizeof idbuf[i], "k");
		ids[i] = idbuf[i];
		if (i % 2 == 0)
			store_success(b, ids[i]);
	}
	/* The odd ones, stored by a child once it sees the last subscription
	 * (SUBSCRIBE names them all in one command). */
	static const char *late[N / 2];
	for (size_t i = 0; i < N / 2; i++)
		late[i] = ids[N - 1 - 2 * i];
	pid_t child = store_late_in_child(late, N / 2);
	ok(backend_wait(b, ids, N, 20000, count_each, seen, &err), &err);
	reap(child);
	for (size_t i = 0; i < N; i++)
		cr_expect_eq(seen[i], 1, "ids[%zu] reported %d times", i, seen[i]);
	backend_free(b);
}

typedef struct late_store {
	const char *id;
	bool failure;
} late_store;

static void *store_late_thread(void *arg)
{
	late_store *ls = arg;
	warren_error err = {0};
	backend *b = open_redis(-1);
	redisContext *c = raw_redis();
	schema_result r;
	until_subscribed(c, ls->id);
	if (ls->failure)
		make_failure(&r, ls->id, "late and wrong");
	else
		make_success(&r, ls->id);
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
	redisFree(c);
	backend_free(b);
	return NULL;
}

Test(integration_backend_redis, wait_gets_a_failure_stored_late_by_a_thread)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "thread");
	backend *b = open_redis(-1);
	late_store ls = {id, true};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, store_late_thread, &ls), 0);
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(b, ids, 1, 10000, &r, NULL, &err), &err);
	pthread_join(t, NULL);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE);
	schema_exc exc;
	ok(schema_exc_read(r.result_mp, r.result_len, &exc, &err), &err);
	cr_expect_str_eq(exc.type, "ValueError");
	cr_expect_str_eq(exc.message, "late and wrong");
	schema_exc_release(&exc);
	schema_result_release(&r);
	backend_free(b);
}

Test(integration_backend_redis, timeout_says_how_many_are_pending)
{
	char a[96], bb[96], c[96];
	warren_error err = {0};
	unique_id(a, sizeof a, "timeout");
	unique_id(bb, sizeof bb, "timeout");
	unique_id(c, sizeof c, "timeout");
	backend *b = open_redis(-1);
	store_success(b, bb);
	const char *ids[] = {a, bb, c};
	schema_result rs[3];
	for (size_t i = 0; i < 3; i++)
		schema_result_init(&rs[i]);
	size_t pending = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(backend_wait_results(b, ids, 3, 300, rs, &pending, &err), WARREN_ETIMEOUT,
		     "%s", err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_expect(took >= 0.29 && took < 2.0, "waited %.3f s for a 300 ms deadline", took);
	cr_expect_eq(pending, 2);
	cr_expect(strstr(err.msg, "2 of 3 results still pending after 300 ms"), "%s", err.msg);
	cr_expect_eq(rs[0].state, SCHEMA_STATE_PENDING);
	expect_success(&rs[1], bb);
	cr_expect_eq(rs[2].state, SCHEMA_STATE_PENDING);

	/* timeout 0 only looks. */
	warren_error_clear(&err);
	schema_result_release(&rs[1]);
	cr_expect_eq(backend_wait_results(b, ids, 3, 0, rs, &pending, &err), WARREN_ETIMEOUT);
	cr_expect_eq(pending, 2);
	expect_success(&rs[1], bb);
	for (size_t i = 0; i < 3; i++)
		schema_result_release(&rs[i]);

	/* After a timeout the handle still works. */
	store_success(b, a);
	arrivals got = {0};
	ok(backend_wait(b, ids, 2, 1000, on_ready, &got, &err), &err);
	cr_expect_eq(got.count, 2);
	arrivals_release(&got);
	backend_free(b);
}

Test(integration_backend_redis, states_that_are_not_ready_do_not_end_a_wait)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "started");
	backend *b = open_redis(-1);
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_started(&r, 42, "w1@host", &err), &err);
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
	const char *ids[] = {id};
	cr_expect_eq(backend_wait_results(b, ids, 1, 200, &r, NULL, &err), WARREN_ETIMEOUT);
	cr_expect_eq(r.state, SCHEMA_STATE_PENDING);
	/* but backend_get shows it */
	ok(backend_get(b, id, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_STARTED);
	schema_result_release(&r);
	backend_free(b);
}

Test(integration_backend_redis, an_id_given_twice_is_reported_at_both_positions)
{
	char id[96];
	warren_error err = {0};
	unique_id(id, sizeof id, "dup");
	backend *b = open_redis(-1);
	const char *late[] = {id};
	pid_t child = store_late_in_child(late, 1);
	const char *ids[] = {id, id};
	arrivals got = {0};
	ok(backend_wait(b, ids, 2, 10000, on_ready, &got, &err), &err);
	reap(child);
	cr_assert_eq(got.count, 2);
	cr_expect_neq(got.index[0], got.index[1]);
	expect_success(&got.results[0], id);
	expect_success(&got.results[1], id);
	arrivals_release(&got);
	backend_free(b);
}

static int stop_at_first(void *arg, size_t index, schema_result *r)
{
	(void)index;
	(void)r;
	(*(int *)arg)++;
	return WARREN_EIO;
}

Test(integration_backend_redis, the_callback_can_stop_the_wait)
{
	char a[96], bb[96];
	warren_error err = {0};
	unique_id(a, sizeof a, "stop");
	unique_id(bb, sizeof bb, "stop");
	backend *b = open_redis(-1);
	store_success(b, a);
	store_success(b, bb);
	const char *ids[] = {a, bb};
	int calls = 0;
	cr_expect_eq(backend_wait(b, ids, 2, 1000, stop_at_first, &calls, &err), WARREN_EIO);
	cr_expect_eq(calls, 1);
	backend_free(b);
}

Test(integration_backend_redis, a_published_value_that_is_no_result_names_its_task)
{
	char id[96], key[160];
	warren_error err = {0};
	unique_id(id, sizeof id, "garbage");
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	backend *b = open_redis(-1);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		redisContext *cc = raw_redis();
		until_subscribed(cc, id);
		redisReply *r = redisCommand(cc, "PUBLISH %s %b", key, "\xc1", (size_t)1);
		freeReplyObject(r);
		redisFree(cc);
		_exit(0);
	}
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	int rc = backend_wait_results(b, ids, 1, 10000, &r, NULL, &err);
	reap(pid);
	cr_expect(rc == WARREN_EDECODE || rc == WARREN_ELIMIT, "rc %d: %s", rc, err.msg);
	cr_expect(strstr(err.msg, id), "%s", err.msg);
	backend_free(b);
}

/* ---- reconnecting ---- */

/* Killing connections would disturb the tests running in parallel on the
 * shared server, so these tests start a Redis of their own. */
typedef struct private_redis {
	pid_t pid;
	char url[64];
} private_redis;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void private_redis_start(private_redis *pr)
{
	char port[16];
	snprintf(port, sizeof port, "%d", free_port());
	snprintf(pr->url, sizeof pr->url, "redis://127.0.0.1:%s/0", port);
	pr->pid = fork();
	cr_assert_neq(pr->pid, -1);
	if (pr->pid == 0) {
		execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port,
		       "--save", "", "--appendonly", "no", "--loglevel", "warning",
		       "--logfile", "/dev/null", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		redisContext *c = redisConnect("127.0.0.1", atoi(port));
		bool up = c && !c->err;
		redisFree(c);
		if (up)
			return;
		nap_ms(5);
	}
	cr_assert_fail("redis-server on port %s did not start", port);
}

static void private_redis_stop(private_redis *pr)
{
	kill(pr->pid, SIGTERM);
	waitpid(pr->pid, NULL, 0);
}

typedef struct killer {
	const char *url;
	const char *id;
} killer;

/* Once the waiter is subscribed: kill its connection, then store. */
static void *kill_then_store(void *arg)
{
	killer *k = arg;
	warren_error err = {0};
	redisContext *c = raw_redis_url(k->url);
	until_subscribed(c, k->id);
	redisReply *r = redisCommand(c, "CLIENT KILL TYPE pubsub");
	cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
	freeReplyObject(r);
	backend *b = open_redis_url(k->url, -1);
	schema_result res;
	make_success(&res, k->id);
	ok(backend_store(b, &res, NULL, &err), &err);
	schema_result_release(&res);
	backend_free(b);
	redisFree(c);
	return NULL;
}

Test(integration_backend_redis, wait_survives_a_killed_subscriber_connection)
{
	char id[96];
	warren_error err = {0};
	private_redis pr;
	private_redis_start(&pr);
	unique_id(id, sizeof id, "killed");
	backend *b = open_redis_url(pr.url, -1);
	killer k = {pr.url, id};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, kill_then_store, &k), 0);
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(b, ids, 1, 10000, &r, NULL, &err), &err);
	pthread_join(t, NULL);
	expect_success(&r, id);
	schema_result_release(&r);
	backend_free(b);
	private_redis_stop(&pr);
}

Test(integration_backend_redis, commands_survive_a_killed_connection)
{
	char id[96];
	warren_error err = {0};
	private_redis pr;
	private_redis_start(&pr);
	unique_id(id, sizeof id, "cmdkill");
	backend *b = open_redis_url(pr.url, -1);
	store_success(b, id);
	redisContext *c = raw_redis_url(pr.url);
	redisReply *r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
	freeReplyObject(r);
	schema_result got;
	schema_result_init(&got);
	ok(backend_get(b, id, &got, &err), &err);
	expect_success(&got, id);
	store_success(b, id); /* and a store after another kill */
	r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	freeReplyObject(r);
	ok(backend_forget(b, id, &err), &err);
	ok(backend_get(b, id, &got, &err), &err);
	cr_expect_eq(got.state, SCHEMA_STATE_PENDING);
	schema_result_release(&got);
	redisFree(c);
	backend_free(b);

	/* A server that is gone for good is an error naming the URL. */
	b = open_redis_url(pr.url, -1);
	private_redis_stop(&pr);
	warren_error_clear(&err);
	cr_expect_eq(backend_get(b, id, &got, &err), WARREN_EBACKEND);
	cr_expect(strstr(err.msg, pr.url), "%s", err.msg);
	backend_free(b);
}
