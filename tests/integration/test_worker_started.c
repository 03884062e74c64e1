/* tests/integration/test_worker_started.c - STARTED and task-started when a
 * task really starts, not when the loop hands it to the pool: a worker with
 * concurrency 1, prefetch 4, track_started and -E gets three 1-second tasks
 * at once, and Celery's own client and event receiver
 * (tests/interop/started_celery.py) see one task STARTED at a time, the
 * first alone in `inspect active` with the others `reserved`, and each
 * task-started after the previous task-succeeded. Both pools. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"

#define STARTED_HELPER WARREN_SOURCE_DIR "/tests/interop/started_celery.py"

static char config[128];

static void fini(void)
{
	worker_test_fini();
	if (config[0])
		unlink(config);
}

TestSuite(integration_worker_started, .fini = fini, .timeout = 90);

static void run(const char *pool)
{
	snprintf(config, sizeof config, "/tmp/warren-test-started.%d.yaml", (int)getpid());
	FILE *f = fopen(config, "w");
	cr_assert_not_null(f);
	fputs("tasks:\n  test.sleep:\n    track_started: true\n", f);
	fclose(f);
	char host[128], args[2048];
	snprintf(host, sizeof host, "started-%s-%d@localhost", pool, (int)getpid());
	const char *queue = worker_test_queue(0, pool);
	const char *redis = support_service_url("WARREN_TEST_REDIS");
	snprintf(args, sizeof args,
		 "--config %s %s -P %s -c 1 --prefetch-multiplier 4 -Q %s --result-backend %s -E "
		 "-n %s --without-mingle -l debug",
		 config, WORKER_PLUGINS, pool, queue, redis, host);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	static char out[1 << 16];
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' /usr/bin/python3 %s %s %s %s 3 1.0",
		 support_service_url("WARREN_TEST_BROKER"), redis, STARTED_HELPER, queue, host, pool);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	worker_test_assert_ok(out, pool);
	/* and the worker's log says when each began (debug) */
	cr_expect_eq(worker_test_count_log(pid, "] started: pid "), 3, "see %s",
		     worker_test_log(pid));
}

Test(integration_worker_started, threads_start_one_task_at_a_time)
{
	run("threads");
}

Test(integration_worker_started, prefork_starts_one_task_at_a_time)
{
	run("prefork");
}
