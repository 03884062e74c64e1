/* tests/integration/test_worker_prefork.c - the real warren-worker binary
 * with `--pool prefork --concurrency 2`, seen from a client: a crashing
 * child fails its task with Celery's WorkerLostError and is replaced; a hard
 * time limit kills the child and stores billiard's TimeLimitExceeded (read
 * back by Celery's own client as TimeLimitExceeded(1.0)); a soft limit is
 * the handler's SoftTimeLimitExceeded; a warm shutdown lets the running
 * tasks finish. libwarren sends the tasks and reads the Redis backend.
 *
 * With reject_on_worker_lost (a task key in the config, or the plugin's
 * default through warren_register_ext) a task whose child died goes back to
 * the queue once, then fails as usual. A hard limit refused with the threads
 * pool is tested in test_worker_cli.c. */
#include <criterion/criterion.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "warren/warren.h"

TestSuite(integration_worker_prefork, .fini = worker_test_fini, .timeout = 60);

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the worker's log has n lines with needle, or timeout_ms. */
static bool wait_count(pid_t pid, const char *needle, int n, int timeout_ms)
{
	long long until = now_ms() + timeout_ms;
	for (;;) {
		if (worker_test_count_log(pid, needle) >= n)
			return true;
		if (now_ms() >= until)
			return false;
		struct timespec d = {0, 20 * 1000000};
		nanosleep(&d, NULL);
	}
}

static pid_t start(const char *queue)
{
	char args[1024];
	snprintf(args, sizeof args, "%s --pool prefork --concurrency 2 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	return pid;
}

static warren_client *client(void)
{
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"),
				       support_service_url("WARREN_TEST_REDIS"), NULL, &c, &err),
		     0, "%s", err.msg);
	return c;
}

/* Sends task(args_json) to queue with the given limits (0 = none); the id
 * goes to id (WARREN_TASK_ID_MAX bytes). */
static void send_task(warren_client *c, const char *queue, const char *task, const char *args_json,
		      double time_limit, double soft_time_limit, char *id)
{
	warren_error err = {0};
	warren_args *a = NULL;
	cr_assert_eq(warren_args_from_json(args_json, &a, &err), 0, "%s", err.msg);
	warren_send_opts o;
	warren_send_opts_init(&o);
	o.queue = queue;
	o.time_limit = time_limit;
	o.soft_time_limit = soft_time_limit;
	cr_assert_eq(warren_send(c, task, a, NULL, &o, id, &err), 0, "%s: %s", task, err.msg);
	warren_args_free(a);
}

static warren_result *wait_result(warren_client *c, const char *id, int timeout_ms, pid_t worker)
{
	warren_result *r = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_result_wait(c, id, timeout_ms, &r, &err), 0, "%s: %s; see %s", id,
		     err.msg, worker_test_log(worker));
	return r;
}

static void expect_failure(const warren_result *r, const char *type, const char *module)
{
	cr_assert_eq(warren_result_state(r), WARREN_STATE_FAILURE, "state %s: %s",
		     warren_state_name(warren_result_state(r)), warren_result_json(r));
	cr_assert_str_eq(warren_result_exc_type(r), type, "%s", warren_result_json(r));
	cr_assert_str_eq(warren_result_exc_module(r), module, "%s", warren_result_json(r));
}

/* math.add(a, b) through the worker returns a + b. */
static void expect_add(warren_client *c, const char *queue, pid_t worker, int a, int b)
{
	char json[64], id[WARREN_TASK_ID_MAX];
	snprintf(json, sizeof json, "[%d, %d]", a, b);
	send_task(c, queue, "math.add", json, 0, 0, id);
	warren_result *r = wait_result(c, id, 15000, worker);
	cr_assert_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s", warren_result_json(r));
	char want[32];
	snprintf(want, sizeof want, "%d", a + b);
	cr_assert_str_eq(warren_result_json(r), want);
	warren_result_free(r);
}

/* How Celery's own client (celery_app, Redis backend) sees the result of
 * id: "STATE module.Type repr(args)". */
static const char *celery_view(const char *id)
{
	static char out[4096];
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' /usr/bin/python3 -c '"
		 "import sys; sys.path.insert(0, \"%s/tests/interop\"); "
		 "from celery_app import app; r = app.AsyncResult(sys.argv[1]); e = r.result; "
		 "print(r.state, type(e).__module__ + \".\" + type(e).__name__, repr(e.args))' %s",
		 support_service_url("WARREN_TEST_BROKER"), support_service_url("WARREN_TEST_REDIS"),
		 WARREN_SOURCE_DIR, id);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

static bool matches(const char *re, const char *text)
{
	regex_t rx;
	cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0, "%s", re);
	bool ok = regexec(&rx, text, 0, NULL, 0) == 0;
	regfree(&rx);
	return ok;
}

Test(integration_worker_prefork, crash_fails_with_worker_lost_and_the_worker_keeps_serving)
{
	const char *queue = worker_test_queue(0, "pf-crash");
	pid_t pid = start(queue);
	warren_client *c = client();
	char id[WARREN_TASK_ID_MAX];
	send_task(c, queue, "test.crash", "[]", 0, 0, id);
	warren_result *r = wait_result(c, id, 15000, pid);
	expect_failure(r, "WorkerLostError", "billiard.exceptions");
	const char *msg = warren_result_exc_message(r);
	cr_expect(matches("^Worker exited prematurely: signal 11 \\(SIGSEGV\\) Job: [0-9]+\\.$", msg),
		  "exc message: %s", msg);
	warren_result_free(r);
	/* Celery's client rebuilds billiard's exception with that one arg. */
	const char *seen = celery_view(id);
	cr_expect(matches("^FAILURE billiard\\.exceptions\\.WorkerLostError \\('Worker exited "
			  "prematurely: signal 11 \\(SIGSEGV\\) Job: [0-9]+\\.',\\)$",
			  seen),
		  "celery sees: %s", seen);
	expect_add(c, queue, pid, 2, 3);
	cr_expect(waitpid(pid, NULL, WNOHANG) == 0, "the worker died; see %s", worker_test_log(pid));
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}

Test(integration_worker_prefork, hard_time_limit_kills_the_child_with_time_limit_exceeded)
{
	const char *queue = worker_test_queue(0, "pf-hard");
	pid_t pid = start(queue);
	warren_client *c = client();
	char id[WARREN_TASK_ID_MAX];
	long long t0 = now_ms();
	send_task(c, queue, "test.sleep", "[10]", 1, 0, id);
	warren_result *r = wait_result(c, id, 2500, pid);
	long long elapsed = now_ms() - t0;
	expect_failure(r, "TimeLimitExceeded", "billiard.exceptions");
	cr_expect_str_eq(warren_result_exc_message(r), "1.0", "%s", warren_result_json(r));
	cr_expect_geq(elapsed, 1000, "killed before its limit: %lld ms", elapsed);
	warren_result_free(r);
	/* Celery stores exc_message [1.0]: its client gets TimeLimitExceeded(1.0). */
	const char *seen = celery_view(id);
	cr_expect_str_eq(seen, "FAILURE billiard.exceptions.TimeLimitExceeded (1.0,)");
	cr_expect_eq(worker_test_count_log(pid, "hard time limit (1s) exceeded"), 1, "see %s",
		     worker_test_log(pid));
	/* The child was replaced: both slots serve again. */
	expect_add(c, queue, pid, 40, 2);
	expect_add(c, queue, pid, 1, 1);
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}

Test(integration_worker_prefork, soft_time_limit_is_the_handlers_soft_time_limit_exceeded)
{
	const char *queue = worker_test_queue(0, "pf-soft");
	pid_t pid = start(queue);
	warren_client *c = client();
	char id[WARREN_TASK_ID_MAX];
	long long t0 = now_ms();
	send_task(c, queue, "test.sleep", "[10]", 0, 1, id);
	warren_result *r = wait_result(c, id, 5000, pid);
	long long elapsed = now_ms() - t0;
	expect_failure(r, "SoftTimeLimitExceeded", "billiard.exceptions");
	cr_expect_geq(elapsed, 1000, "stopped before its soft limit: %lld ms", elapsed);
	cr_expect_lt(elapsed, 2500, "soft limit noticed late: %lld ms", elapsed);
	warren_result_free(r);
	/* Stored as a Celery worker stores it: the class lives in billiard and
	 * celery.exceptions only re-exports it. */
	const char *seen = celery_view(id);
	cr_expect_str_eq(seen, "FAILURE billiard.exceptions.SoftTimeLimitExceeded "
			       "('test.sleep: soft time limit exceeded',)");
	expect_add(c, queue, pid, 3, 4);
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}

#define N_ADDS 100

Test(integration_worker_prefork, crashes_in_a_row_then_every_task_still_runs)
{
	const char *queue = worker_test_queue(0, "pf-crashes");
	pid_t pid = start(queue);
	warren_client *c = client();
	/* Five crashes, more than the two children: each one's replacement
	 * crashes too, and they are all sent at once. */
	char crash_ids[5][WARREN_TASK_ID_MAX];
	const char *crash_ptrs[5];
	for (int i = 0; i < 5; i++) {
		send_task(c, queue, "test.crash", "[]", 0, 0, crash_ids[i]);
		crash_ptrs[i] = crash_ids[i];
	}
	warren_result *cr[5] = {0};
	size_t pending = 0;
	warren_error err = {0};
	cr_assert_eq(warren_result_wait_many(c, crash_ptrs, 5, 15000, cr, &pending, &err), 0,
		     "%zu pending: %s; see %s", pending, err.msg, worker_test_log(pid));
	for (int i = 0; i < 5; i++) {
		expect_failure(cr[i], "WorkerLostError", "billiard.exceptions");
		warren_result_free(cr[i]);
	}
	static char ids[N_ADDS][WARREN_TASK_ID_MAX];
	const char *ptrs[N_ADDS];
	for (int i = 0; i < N_ADDS; i++) {
		char json[64];
		snprintf(json, sizeof json, "[%d, %d]", i, 1000);
		send_task(c, queue, "math.add", json, 0, 0, ids[i]);
		ptrs[i] = ids[i];
	}
	static warren_result *rs[N_ADDS];
	cr_assert_eq(warren_result_wait_many(c, ptrs, N_ADDS, 20000, rs, &pending, &err), 0,
		     "%zu pending: %s; see %s", pending, err.msg, worker_test_log(pid));
	for (int i = 0; i < N_ADDS; i++) {
		char want[32];
		snprintf(want, sizeof want, "%d", i + 1000);
		cr_expect_eq(warren_result_state(rs[i]), WARREN_STATE_SUCCESS, "%d: %s", i,
			     warren_result_json(rs[i]));
		cr_expect_str_eq(warren_result_json(rs[i]), want, "%d", i);
		warren_result_free(rs[i]);
	}
	cr_expect_eq(worker_test_count_log(pid, "succeeded in"), N_ADDS, "see %s",
		     worker_test_log(pid));
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}

Test(integration_worker_prefork, warm_shutdown_lets_running_tasks_finish)
{
	const char *queue = worker_test_queue(0, "pf-warm");
	pid_t pid = start(queue);
	warren_client *c = client();
	char ids[2][WARREN_TASK_ID_MAX];
	send_task(c, queue, "test.sleep", "[1]", 0, 0, ids[0]);
	send_task(c, queue, "test.sleep", "[1]", 0, 0, ids[1]);
	/* Both received (concurrency 2: both handed to a child at once). */
	cr_assert(wait_count(pid, "received", 2, 10000), "see %s", worker_test_log(pid));
	long long t0 = now_ms();
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "warm shutdown status; see %s",
		     worker_test_log(pid));
	cr_expect_lt(now_ms() - t0, 5000, "shutdown took %lld ms", now_ms() - t0);
	cr_expect_eq(worker_test_count_log(pid, "succeeded in"), 2, "see %s", worker_test_log(pid));
	/* Stored before exit: the results are there with no worker running. */
	for (int i = 0; i < 2; i++) {
		warren_result *r = wait_result(c, ids[i], 2000, pid);
		cr_expect_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s",
			     warren_result_json(r));
		cr_expect_str_eq(warren_result_json(r), "1");
		warren_result_free(r);
	}
	warren_client_free(c);
}

Test(integration_worker_prefork, reject_on_worker_lost_requeues_a_crashed_task_once)
{
	const char *queue = worker_test_queue(0, "pf-reject");
	char path[256];
	snprintf(path, sizeof path, "/tmp/warren-test-reject.%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("tasks:\n  test.crash:\n    reject_on_worker_lost: true\n", f);
	fclose(f);
	char args[1024];
	snprintf(args, sizeof args,
		 "--config %s %s --pool prefork --concurrency 2 -Q %s --result-backend %s -l info",
		 path, WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	warren_client *c = client();
	char id[WARREN_TASK_ID_MAX];
	send_task(c, queue, "test.crash", "[]", 0, 0, id);
	/* First death: requeued, not stored. The redelivered copy dies too and
	 * fails as usual, so the caller is not left waiting forever. */
	warren_result *r = wait_result(c, id, 20000, pid);
	expect_failure(r, "WorkerLostError", "billiard.exceptions");
	warren_result_free(r);
	cr_expect_eq(worker_test_count_log(pid, "requeued once"), 1, "see %s", worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "(redelivered)"), 1, "see %s", worker_test_log(pid));
	expect_add(c, queue, pid, 4, 5);
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
	unlink(path);
}

/* The same from the plugin's default alone (test.crash_requeued registers
 * with reject_on_worker_lost on), no config; and test.crash beside it, which
 * the plugin leaves unset, still fails at the first death. */
Test(integration_worker_prefork, reject_on_worker_lost_from_the_plugin_requeues_once)
{
	const char *queue = worker_test_queue(0, "pf-reject-plugin");
	pid_t pid = start(queue);
	warren_client *c = client();
	char id[WARREN_TASK_ID_MAX], plain[WARREN_TASK_ID_MAX];
	send_task(c, queue, "test.crash_requeued", "[]", 0, 0, id);
	warren_result *r = wait_result(c, id, 20000, pid);
	expect_failure(r, "WorkerLostError", "billiard.exceptions");
	warren_result_free(r);
	cr_expect_eq(worker_test_count_log(pid, "requeued once"), 1, "see %s", worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "(redelivered)"), 1, "see %s", worker_test_log(pid));
	send_task(c, queue, "test.crash", "[]", 0, 0, plain);
	r = wait_result(c, plain, 20000, pid);
	expect_failure(r, "WorkerLostError", "billiard.exceptions");
	warren_result_free(r);
	cr_expect_eq(worker_test_count_log(pid, "requeued once"), 1, "test.crash was requeued; see %s",
		     worker_test_log(pid));
	expect_add(c, queue, pid, 4, 5);
	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}
