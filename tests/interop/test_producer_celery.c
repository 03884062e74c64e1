/* tests/interop/test_producer_celery.c - libwarren and the `warren` CLI
 * against a real Celery 5.2 worker (tests/interop/celery_app.py): typed
 * arguments and results through redis and rpc, failures, countdown (with
 * and without broker-side delay), expires, and `warren call` end to end.
 *
 * Each test starts its own worker on its own queue (so the tests run in
 * parallel) and kills and reaps it in .fini, whatever the test did.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "warren/warren.h"

#define WARREN_BIN WARREN_BUILD_DIR "/bin/warren"

static pid_t worker_pid = -1;
static char queue[128];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void make_queue_name(const char *what)
{
	snprintf(queue, sizeof queue, "p.interop.%s.%d", what, (int)getpid());
}

/* A Celery worker on this suite's queue, its output in a log. */
static void start_worker(const char *backend_url)
{
	char log[256];
	snprintf(log, sizeof log, "/tmp/warren-celery-%s.log", queue);
	worker_pid = support_start_celery(queue, backend_url, log);
}

static void stop_worker(void)
{
	if (worker_pid <= 0)
		return;
	kill(worker_pid, SIGKILL);
	waitpid(worker_pid, NULL, 0);
	worker_pid = -1;
}

static warren_client *client(const char *backend_url)
{
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), backend_url, NULL,
				       &c, &err),
		     0, "%s", err.msg);
	return c;
}

/* Waits (bounded) until the worker consumes our queue. */
static void await_worker(warren_client *c)
{
	double deadline = now_s() + 60;
	for (;;) {
		uint32_t messages = 0, consumers = 0;
		warren_error err = {0};
		int rc = warren_queue_stats(c, queue, &messages, &consumers, &err);
		cr_assert(rc == 0 || rc == WARREN_ENOTFOUND, "%s", err.msg);
		if (consumers > 0)
			return;
		int status;
		cr_assert_eq(waitpid(worker_pid, &status, WNOHANG), 0,
			     "the Celery worker exited; see /tmp/warren-celery-%s.log", queue);
		cr_assert_lt(now_s(), deadline, "the Celery worker did not consume '%s' in 60 s",
			     queue);
		nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
	}
}

/* A client and a worker on a fresh queue for `backend_url` (NULL: redis). */
static warren_client *setup(const char *what, const char *backend_url)
{
	if (!backend_url)
		backend_url = support_service_url("WARREN_TEST_REDIS");
	make_queue_name(what);
	start_worker(backend_url);
	warren_client *c = client(backend_url);
	await_worker(c);
	return c;
}

static void send_opts(warren_send_opts *o)
{
	warren_send_opts_init(o);
	o->queue = queue;
}

/* Sends, waits up to 30 s and returns the ready result (caller frees). */
static warren_result *call(warren_client *c, const char *task, const warren_args *args,
			   const warren_args *kwargs, const warren_send_opts *o)
{
	warren_send_opts def;
	if (!o) {
		send_opts(&def);
		o = &def;
	}
	char id[WARREN_TASK_ID_MAX];
	warren_error err = {0};
	cr_assert_eq(warren_send(c, task, args, kwargs, o, id, &err), 0, "%s", err.msg);
	warren_result *r = NULL;
	cr_assert_eq(warren_result_wait(c, id, 30000, &r, &err), 0, "%s: %s", task, err.msg);
	cr_assert_str_eq(warren_result_id(r), id);
	return r;
}

static void expect_success(warren_result *r, const char *json)
{
	cr_expect_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "state %s: %s",
		     warren_state_name(warren_result_state(r)), warren_result_json(r));
	cr_expect_str_eq(warren_result_json(r), json);
	warren_result_free(r);
}

static warren_args *json_args(const char *json)
{
	warren_args *a = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_args_from_json(json, &a, &err), 0, "%s", err.msg);
	return a;
}

/* ints, floats, UTF-8 strings, bytes, nested lists and maps, kwargs. */
static void check_types(warren_client *c)
{
	warren_args *a = json_args("[2, 3]");
	expect_success(call(c, "math.add", a, NULL, NULL), "5");
	warren_args_free(a);
	a = json_args("[0.1, 0.2]");
	expect_success(call(c, "math.add", a, NULL, NULL), "0.30000000000000004");
	warren_args_free(a);
	a = json_args("[-9000000000, 2]");
	warren_result *r = call(c, "math.mul", a, NULL, NULL);
	cr_expect_eq(warren_result_object(r)->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
	expect_success(r, "-18000000000");
	warren_args_free(a);
	a = json_args("[\"h\xc3\xa9llo \xe2\x82\xac\"]");
	expect_success(call(c, "text.upper", a, NULL, NULL), "\"H\xc3\x89LLO \xe2\x82\xac\"");
	warren_args_free(a);

	a = warren_args_new();
	warren_args_bytes(a, "\x00\xff", 2);
	warren_args_json(a, "[1, [2, {\"a\": [3, null]}], {\"m\": {\"n\": false}}]");
	warren_args *k = warren_kwargs_new();
	warren_args_key(k, "s");
	warren_args_str(k, "\xc3\xbc");
	warren_args_key(k, "f");
	warren_args_float(k, -1.5);
	expect_success(call(c, "test.echo", a, k, NULL),
		       "[[\"base64:AP8=\", [1, [2, {\"a\": [3, null]}], {\"m\": {\"n\": false}}]], "
		       "{\"s\": \"\xc3\xbc\", \"f\": -1.5}]");
	warren_args_free(a);
	warren_args_free(k);
}

static void check_failure(warren_client *c)
{
	warren_args *a = json_args("[\"boom \xc3\xa9\"]");
	warren_result *r = call(c, "test.fail", a, NULL, NULL);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_FAILURE);
	cr_expect_str_eq(warren_result_exc_type(r), "ValueError");
	cr_expect_str_eq(warren_result_exc_message(r), "boom \xc3\xa9");
	cr_expect_str_eq(warren_result_exc_module(r), "builtins");
	cr_expect(warren_result_traceback(r) && strstr(warren_result_traceback(r), "ValueError"));
	warren_result_free(r);
	warren_args_free(a);
}

TestSuite(interop_producer, .fini = stop_worker, .timeout = 180);

Test(interop_producer, types_and_failure_through_redis)
{
	warren_client *c = setup("redis", NULL);
	check_types(c);
	check_failure(c);
	warren_client_free(c);
}

Test(interop_producer, types_and_failure_through_rpc)
{
	warren_client *c = setup("rpc", "rpc://");
	check_types(c);
	check_failure(c);
	warren_client_free(c);
}

Test(interop_producer, wait_many_and_get)
{
	warren_client *c = setup("many", NULL);
	enum { N = 5 };
	char ids[N][WARREN_TASK_ID_MAX];
	const char *idp[N];
	warren_error err = {0};
	for (int i = 0; i < N; i++) {
		warren_args *a = warren_args_new();
		warren_args_int(a, i);
		warren_args_int(a, 10);
		warren_send_opts o;
		send_opts(&o);
		cr_assert_eq(warren_send(c, "math.mul", a, NULL, &o, ids[i], &err), 0, "%s", err.msg);
		idp[i] = ids[i];
		warren_args_free(a);
	}
	warren_result *rs[N];
	size_t pending = 99;
	cr_assert_eq(warren_result_wait_many(c, idp, N, 30000, rs, &pending, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(pending, 0);
	for (int i = 0; i < N; i++) {
		char want[16];
		snprintf(want, sizeof want, "%d", i * 10);
		expect_success(rs[i], want);
	}
	warren_result *r = NULL;
	cr_assert_eq(warren_result_get(c, ids[2], &r, &err), 0, "%s", err.msg);
	expect_success(r, "20");
	cr_assert_eq(warren_result_get(c, "no-such-task", &r, &err), 0, "%s", err.msg);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_PENDING);
	warren_result_free(r);
	warren_client_free(c);
}

/* Sends math.add with a countdown and checks it did not run before due. */
static void check_countdown(warren_client *c, double countdown)
{
	warren_send_opts o;
	send_opts(&o);
	o.countdown = countdown;
	warren_args *a = json_args("[20, 22]");
	double t0 = now_s();
	warren_result *r = call(c, "math.add", a, NULL, &o);
	double took = now_s() - t0;
	expect_success(r, "42");
	cr_expect_geq(took, countdown - 0.05, "ran after %.2f s, countdown %.1f s", took,
		      countdown);
	cr_expect_lt(took, countdown + 3, "ran after %.2f s, countdown %.1f s", took, countdown);
	warren_args_free(a);
}

Test(interop_producer, countdown_with_broker_delay_and_eta_header_only)
{
	warren_client *c = setup("countdown", NULL);
	check_countdown(c, 2.5);
	warren_client_free(c);
	/* The eta header alone: the Celery worker holds the task until due. */
	warren_client_opts opts;
	warren_client_opts_init(&opts);
	opts.broker_delay = false;
	warren_error err = {0};
	const char *redis = support_service_url("WARREN_TEST_REDIS");
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), redis, &opts, &c,
				       &err),
		     0, "%s", err.msg);
	check_countdown(c, 2.0);
	warren_client_free(c);
}

Test(interop_producer, expired_before_the_worker_sees_it_is_revoked)
{
	warren_client *c = setup("expires", NULL);
	/* Due in 3 s, expired after 1 s: the worker meets it expired. */
	warren_send_opts o;
	send_opts(&o);
	o.countdown = 3;
	o.expires = 1;
	warren_args *a = json_args("[1, 1]");
	warren_result *r = call(c, "math.add", a, NULL, &o);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_REVOKED, "%s",
		     warren_state_name(warren_result_state(r)));
	cr_expect_str_eq(warren_result_exc_type(r), "TaskRevokedError");
	cr_expect_str_eq(warren_result_exc_message(r), "expired");
	warren_result_free(r);
	warren_args_free(a);
	warren_client_free(c);
}

/* Runs the CLI; stdout (and stderr when merge) into out. */
static int run_cli(char *out, size_t cap, bool merge, const char *fmt, ...)
{
	char args[1024], cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "%s --broker '%s' --result-backend '%s' %s %s", WARREN_BIN,
		 support_service_url("WARREN_TEST_BROKER"), support_service_url("WARREN_TEST_REDIS"),
		 args, merge ? "2>&1" : "2>/dev/null");
	return support_run(cmd, out, cap);
}

Test(interop_producer, cli_call_end_to_end)
{
	warren_client *c = setup("cli", NULL);
	char out[4096];
	cr_expect_eq(run_cli(out, sizeof out, false, "call --queue %s math.add 2 3", queue), 0);
	cr_expect_str_eq(out, "5\n");
	cr_expect_eq(run_cli(out, sizeof out, false, "call --queue %s text.upper h\xc3\xa9llo",
			     queue), 0);
	cr_expect_str_eq(out, "\"H\xc3\x89LLO\"\n");
	cr_expect_eq(run_cli(out, sizeof out, false, "call --queue %s test.echo 1 '\"2\"' x "
			     "--kwargs '{\"k\": [1.5]}'", queue), 0);
	cr_expect_str_eq(out, "[[1, \"2\", \"x\"], {\"k\": [1.5]}]\n");
	cr_expect_eq(run_cli(out, sizeof out, true, "call --queue %s test.fail boom", queue), 1);
	cr_expect_str_eq(out, "ValueError: boom\n");
	cr_expect_eq(run_cli(out, sizeof out, true, "call -v --queue %s test.fail boom", queue), 1);
	cr_expect(strstr(out, "ValueError: boom\nTraceback"), "%s", out);
	cr_expect_eq(run_cli(out, sizeof out, true, "call --queue %s --timeout 0.5 test.sleep 2",
			     queue), 2, "%s", out);
	/* send + result --wait */
	cr_assert_eq(run_cli(out, sizeof out, false, "send --queue %s math.mul 6 7", queue), 0);
	out[strcspn(out, "\n")] = '\0';
	char id[128];
	snprintf(id, sizeof id, "%.100s", out);
	cr_expect_eq(strlen(id), 36, "%s", id);
	cr_expect_eq(run_cli(out, sizeof out, false, "result %s --wait --timeout 20", id), 0);
	cr_expect_str_eq(out, "42\n");
	warren_client_free(c);
}
