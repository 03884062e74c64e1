/* tests/integration/test_worker_reload.c - SIGHUP reloads the --config file:
 * a worker started with math.add at 1/s and log level warning gets 100/s
 * and info from the rewritten file (10 math.add then run well under the old
 * pace), the changed concurrency is named as needing a restart and kept; a
 * broken file on a second SIGHUP is logged with file:line:column and the
 * worker runs on with the settings it had. Without --config, a SIGHUP only
 * says there is nothing to reload. libwarren sends the tasks and reads the
 * Redis backend. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "warren/warren.h"

TestSuite(integration_worker_reload, .fini = worker_test_fini, .timeout = 90);

static char config_path[256];

static void write_config(const char *fmt, const char *queue)
{
	snprintf(config_path, sizeof config_path, "/tmp/warren-test-worker-reload.%d.yaml",
		 (int)getpid());
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%s.tmp", config_path);
	FILE *f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fprintf(f, fmt, queue);
	fclose(f);
	cr_assert_eq(rename(tmp, config_path), 0); /* the worker never reads half a file */
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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

/* Sends n math.add(i, 1) to queue, waits for every result; returns the
 * seconds it took. */
static double run_adds(warren_client *c, const char *queue, int n, pid_t worker)
{
	char ids[16][WARREN_TASK_ID_MAX];
	cr_assert_leq(n, 16);
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		char json[64];
		snprintf(json, sizeof json, "[%d, 1]", i);
		warren_error err = {0};
		warren_args *a = NULL;
		cr_assert_eq(warren_args_from_json(json, &a, &err), 0, "%s", err.msg);
		warren_send_opts o;
		warren_send_opts_init(&o);
		o.queue = queue;
		cr_assert_eq(warren_send(c, "math.add", a, NULL, &o, ids[i], &err), 0, "%s",
			     err.msg);
		warren_args_free(a);
	}
	for (int i = 0; i < n; i++) {
		warren_result *r = NULL;
		warren_error err = {0};
		cr_assert_eq(warren_result_wait(c, ids[i], 20000, &r, &err), 0, "%s: %s; see %s",
			     ids[i], err.msg, worker_test_log(worker));
		cr_assert_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s",
			     warren_result_json(r));
		char want[16];
		snprintf(want, sizeof want, "%d", i + 1);
		cr_expect_str_eq(warren_result_json(r), want);
		warren_result_free(r);
	}
	return now_s() - t0;
}

static const char config_before[] = "worker:\n"
				    "  pool: threads\n"
				    "  concurrency: 2\n"
				    "  log_level: warning\n"
				    "  queues: [%s]\n"
				    "tasks:\n"
				    "  math.add:\n"
				    "    rate_limit: 1/s\n";

static const char config_after[] = "worker:\n"
				   "  pool: threads\n"
				   "  concurrency: 4\n"
				   "  log_level: info\n"
				   "  queues: [%s]\n"
				   "tasks:\n"
				   "  math.add:\n"
				   "    rate_limit: 100/s\n";

/* Line 3 opens a flow sequence that never closes. */
static const char config_broken[] = "worker:\n"
				    "  queues: [%s\n"
				    "  concurrency: [1, 2\n"
				    "tasks: {\n";

Test(integration_worker_reload, sighup_applies_rate_and_level_and_names_what_needs_a_restart)
{
	const char *queue = worker_test_queue(0, "reload");
	write_config(config_before, queue);
	char args[1024];
	snprintf(args, sizeof args, "%s --result-backend %s --config %s", WORKER_PLUGINS,
		 support_service_url("WARREN_TEST_REDIS"), config_path);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	warren_client *c = client();

	/* 1/s from the file: the third of three runs no sooner than ~2 s. */
	double slow = run_adds(c, queue, 3, pid);
	cr_expect_geq(slow, 1.5, "3 math.add at 1/s took only %.3fs", slow);
	cr_expect_eq(worker_test_count_log(pid, "received"), 0, "level warning: no info lines");

	write_config(config_after, queue);
	cr_assert_eq(kill(pid, SIGHUP), 0);
	cr_assert(worker_test_wait_log(pid, "reload: done:", 10000), "see %s",
		  worker_test_log(pid));
	cr_expect_gt(worker_test_count_log(pid, "reload: tasks.math.add.rate_limit changed "
						"(1/s -> 100/s)"), 0, "see %s", worker_test_log(pid));
	cr_expect_gt(worker_test_count_log(pid, "reload: worker.log_level changed "
						"(warning -> info)"), 0, "see %s",
		     worker_test_log(pid));
	cr_expect_gt(worker_test_count_log(pid, "reload: worker.concurrency changed (2 -> 4): "
						"needs a restart; kept 2"), 0, "see %s",
		     worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "worker.queues changed"), 0,
		     "unchanged settings are not named");

	/* 100/s now: 10 run far under the old pace (9 s at 1/s). */
	double fast = run_adds(c, queue, 10, pid);
	cr_expect_lt(fast, 4.0, "10 math.add after the reload took %.3fs; see %s", fast,
		     worker_test_log(pid));
	cr_expect_geq(worker_test_count_log(pid, "] Task math.add["), 10,
		      "level info now: the tasks are logged; see %s", worker_test_log(pid));

	/* A broken file: logged where it breaks; the previous settings stay. */
	write_config(config_broken, queue);
	cr_assert_eq(kill(pid, SIGHUP), 0);
	char where[320];
	snprintf(where, sizeof where, "reload: %s:", config_path);
	cr_assert(worker_test_wait_log(pid, "running settings kept", 10000), "see %s",
		  worker_test_log(pid));
	cr_expect_gt(worker_test_count_log(pid, where), 0, "file:line:column; see %s",
		     worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "reload: done:"), 1, "nothing applied");
	cr_expect_eq(kill(pid, 0), 0, "the worker runs on");
	int logged = worker_test_count_log(pid, "] Task math.add[");
	fast = run_adds(c, queue, 10, pid);
	cr_expect_lt(fast, 4.0, "still 100/s: 10 math.add took %.3fs", fast);
	cr_expect_gt(worker_test_count_log(pid, "] Task math.add["), logged, "still at info");

	warren_client_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
	unlink(config_path);
}

Test(integration_worker_reload, sighup_without_config_reloads_nothing)
{
	const char *queue = worker_test_queue(0, "noconf");
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 1 -Q %s", WORKER_PLUGINS, queue);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	cr_assert_eq(kill(pid, SIGHUP), 0);
	cr_assert(worker_test_wait_log(pid, "reload: no --config file: nothing to reload", 10000),
		  "see %s", worker_test_log(pid));
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "see %s", worker_test_log(pid));
}
