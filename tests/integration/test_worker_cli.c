/* tests/integration/test_worker_cli.c - the warren-worker binary's contract:
 * exit codes (0, 64, 78), --check-config, a hard time limit refused with the
 * threads pool, per-task rate limits from the config, and JSON logs. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"

TestSuite(integration_worker_cli, .fini = worker_test_fini, .timeout = 90);

static char config_path[256];

static const char *write_config(const char *yaml)
{
	snprintf(config_path, sizeof config_path, "/tmp/warren-test-worker-cli.%d.yaml",
		 (int)getpid());
	FILE *f = fopen(config_path, "w");
	cr_assert_not_null(f);
	fputs(yaml, f);
	fclose(f);
	return config_path;
}

static int run(const char *args, char *out, size_t cap)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s %s 2>&1", WORKER_BIN, args);
	return support_run(cmd, out, cap);
}

Test(integration_worker_cli, usage_errors_exit_64_and_help_0)
{
	char out[4096];
	cr_expect_eq(run("--concurency 3", out, sizeof out), 64, "%s", out);
	cr_expect(strstr(out, "unknown option '--concurency'"), "%s", out);
	cr_expect_eq(run("--help", out, sizeof out), 0);
	cr_expect(strstr(out, "--check-config"), "%s", out);
}

Test(integration_worker_cli, check_config_validates_plugins_and_config)
{
	char out[4096], args[1024];
	snprintf(args, sizeof args, "--check-config %s -P threads", WORKER_PLUGINS);
	cr_expect_eq(run(args, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "config ok: "), "%s", out);
	cr_expect_eq(run("--check-config --plugin /nonexistent/x.so", out, sizeof out), 78);
	cr_expect(strstr(out, "plugin '/nonexistent/x.so': cannot open"), "%s", out);
	snprintf(args, sizeof args, "--check-config %s --config %s", WORKER_PLUGINS,
		 write_config("worker:\n  concurency: 2\n"));
	cr_expect_eq(run(args, out, sizeof out), 78, "%s", out);
	cr_expect(strstr(out, "did you mean 'concurrency'"), "%s", out);
	unlink(config_path);
}

Test(integration_worker_cli, hard_time_limit_is_refused_with_the_threads_pool)
{
	char out[4096], args[1024];
	snprintf(args, sizeof args, "--check-config %s -P threads --config %s", WORKER_PLUGINS,
		 write_config("tasks:\n  test.sleep:\n    time_limit: 5\n"));
	cr_expect_eq(run(args, out, sizeof out), 78, "%s", out);
	cr_expect(strstr(out, "tasks.test.sleep.time_limit: a hard time limit needs the prefork "
			      "pool"), "%s", out);
	unlink(config_path);
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

Test(integration_worker_cli, rate_limit_spaces_tasks_and_json_logs_name_them)
{
	const char *queue = worker_test_queue(0, "rate");
	char args[1024];
	snprintf(args, sizeof args,
		 "%s -P threads -c 4 -Q %s --result-backend %s -l info --log-format json "
		 "--config %s",
		 WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"),
		 write_config("tasks:\n  math.add:\n    rate_limit: 5/s\n"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	double t0 = wall();
	/* 6 tasks at 5/s: the first at once, the last no sooner than 1 s later. */
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "math6",
					      queue, NULL);
	worker_test_assert_ok(json, "six math.add");
	double elapsed = wall() - t0;
	cr_expect_geq(elapsed, 1.0, "6 tasks at 5/s took only %.3fs", elapsed);
	cr_expect_geq(worker_test_count_log(pid, "\"state\":\"SUCCESS\""), 6, "see %s",
		      worker_test_log(pid));
	cr_expect_geq(worker_test_count_log(pid, "\"task\":\"math.add\""), 6);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0);
	unlink(config_path);
}
