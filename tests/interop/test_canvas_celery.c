/* tests/interop/test_canvas_celery.c - canvases crossing between Celery 5.2
 * and warren: a chain and a chord started by Python Celery (msgpack, Redis
 * backend) run on warren workers with the results Celery expects; a chain
 * sent by libwarren runs on a real Celery worker. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#include "../integration/test_worker_support.h"
#include "warren/warren.h"

static pid_t celery_pid = -1;

static void fini(void)
{
	if (celery_pid > 0) {
		kill(celery_pid, SIGKILL);
		waitpid(celery_pid, NULL, 0);
		celery_pid = -1;
	}
	worker_test_fini();
}

TestSuite(interop_canvas_celery, .fini = fini, .timeout = 120);

static const char *helper(const char *mode, const char *queue, const char *arg)
{
	static char out[1 << 16];
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' /usr/bin/python3 %s %s %s %s",
		 support_service_url("WARREN_TEST_BROKER"), support_service_url("WARREN_TEST_REDIS"),
		 support_source_path("tests/interop/canvas_celery.py"), mode, queue, arg ? arg : "");
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	return out;
}

static pid_t start_warren(const char *queue)
{
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 4 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	return pid;
}

Test(interop_canvas_celery, chain_from_celery_runs_on_warren)
{
	const char *queue = worker_test_queue(0, "cvchain");
	start_warren(queue);
	worker_test_assert_ok(helper("chain", queue, NULL), "celery chain on warren");
}

Test(interop_canvas_celery, chord_from_celery_runs_on_warren)
{
	const char *queue = worker_test_queue(0, "cvchord");
	start_warren(queue);
	worker_test_assert_ok(helper("chord", queue, NULL), "celery chord on warren");
}

static void start_celery(const char *queue)
{
	char log[256];
	snprintf(log, sizeof log, "/tmp/warren-celery-canvas.%d.log", (int)getpid());
	celery_pid = support_start_celery(queue, support_service_url("WARREN_TEST_REDIS"), log);
}

Test(interop_canvas_celery, chain_from_warren_runs_on_celery)
{
	const char *queue = worker_test_queue(0, "cvtocelery");
	start_celery(queue);
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"),
				       support_service_url("WARREN_TEST_REDIS"), NULL, &c, &err),
		     0, "%s", err.msg);
	const char *steps_json[3][2] = {{"math.add", "[2, 3]"}, {"math.mul", "[10]"},
					{"math.add", "[1]"}};
	warren_sig *s[3];
	for (int i = 0; i < 3; i++) {
		warren_args *a = NULL;
		cr_assert_eq(warren_args_from_json(steps_json[i][1], &a, &err), 0, "%s", err.msg);
		cr_assert_eq(warren_sig_new(steps_json[i][0], a, NULL, &s[i], &err), 0, "%s",
			     err.msg);
		cr_assert_eq(warren_sig_set_queue(s[i], queue, &err), 0, "%s", err.msg);
		warren_args_free(a);
	}
	warren_sig *ch = NULL;
	cr_assert_eq(warren_chain((const warren_sig *const *)s, 3, &ch, &err), 0, "%s", err.msg);
	warren_canvas *cv = NULL;
	cr_assert_eq(warren_canvas_send(c, ch, &cv, &err), 0, "%s", err.msg);
	warren_result *r = NULL;
	cr_assert_eq(warren_canvas_wait(c, cv, 30000, &r, &err), 0, "%s", err.msg);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s", warren_result_json(r));
	cr_expect_str_eq(warren_result_json(r), "51");
	warren_result_free(r);
	/* and Celery's own client reads the same result */
	worker_test_assert_ok(helper("read", queue, warren_canvas_id(cv)), "celery reads it");
	warren_canvas_free(cv);
	warren_sig_free(ch);
	for (int i = 0; i < 3; i++)
		warren_sig_free(s[i]);
	warren_client_free(c);
}
