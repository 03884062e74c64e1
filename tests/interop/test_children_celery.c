/* tests/interop/test_children_celery.c - the `children` a worker stores with
 * a result: the same canvases, sent by Python Celery's client, run once on a
 * real Celery 5.2 worker and once on warren-worker, and what each stored is
 * compared: the raw `children` of every result (the celery-task-meta-<id>
 * key on Redis; the reply on rpc), what AsyncResult(id).children gives, and
 * the first task's result.graph and collect(). Ids are pinned per run and
 * made comparable by tests/interop/children_celery.py, which also lists the
 * canvases. Celery runs first, so its answers are the reference; each of
 * them must hold at least one child, or the comparison would prove nothing. */
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

static pid_t celery_pid = -1;

static void stop_celery(void)
{
	if (celery_pid > 0) {
		kill(celery_pid, SIGKILL);
		waitpid(celery_pid, NULL, 0);
		celery_pid = -1;
	}
}

static void fini(void)
{
	stop_celery();
	worker_test_fini();
}

TestSuite(interop_children_celery, .fini = fini, .timeout = 240);

static void start_celery(const char *queue, const char *backend)
{
	char log[256];
	snprintf(log, sizeof log, "/tmp/warren-celery-children.%d.log", (int)getpid());
	celery_pid = support_start_celery(queue, backend, log);
}

static pid_t start_warren(const char *queue, const char *backend)
{
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 4 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, backend);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	return pid;
}

/* The helper's detail for one mode (asserted ok); the caller decrefs it. */
static json_t *run_mode(const char *mode, const char *queue, const char *run,
			const char *backend)
{
	static char out[1 << 16];
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' /usr/bin/python3 %s %s %s %s",
		 support_service_url("WARREN_TEST_BROKER"), backend,
		 support_source_path("tests/interop/children_celery.py"), mode, queue, run);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	json_error_t jerr;
	json_t *doc = json_loads(out, 0, &jerr);
	cr_assert_not_null(doc, "%s %s: not JSON: %s", mode, run, out);
	cr_assert(json_is_true(json_object_get(doc, "ok")), "%s on %s: %s", mode, run, out);
	json_t *detail = json_incref(json_object_get(doc, "detail"));
	json_decref(doc);
	return detail;
}

/* Runs each mode on a Celery worker, then on a warren worker, with the
 * result backend `backend`, and compares what they stored. */
static void compare(const char *const *modes, size_t n, const char *backend)
{
	json_t *celery[16], *warren[16];
	cr_assert_leq(n, 16);
	char run[64];
	const char *queue = worker_test_queue(0, "chcel");
	start_celery(queue, backend);
	for (size_t i = 0; i < n; i++) {
		snprintf(run, sizeof run, "cel%d%s", (int)getpid(), modes[i]);
		celery[i] = run_mode(modes[i], queue, run, backend);
	}
	stop_celery();
	queue = worker_test_queue(1, "chwar");
	start_warren(queue, backend);
	for (size_t i = 0; i < n; i++) {
		snprintf(run, sizeof run, "war%d%s", (int)getpid(), modes[i]);
		warren[i] = run_mode(modes[i], queue, run, backend);
	}
	for (size_t i = 0; i < n; i++) {
		const char *first = strcmp(modes[i], "retry") == 0 ? "r" : "a";
		json_t *kids = json_object_get(json_object_get(celery[i], "meta"), first);
		cr_expect(json_array_size(kids) > 0, "%s: Celery stored no children for '%s'",
			  modes[i], first);
		char *c = json_dumps(celery[i], JSON_SORT_KEYS | JSON_COMPACT);
		char *w = json_dumps(warren[i], JSON_SORT_KEYS | JSON_COMPACT);
		cr_expect(json_equal(celery[i], warren[i]), "%s:\n  celery %s\n  warren %s", modes[i],
			  c, w);
		free(c);
		free(w);
		json_decref(celery[i]);
		json_decref(warren[i]);
	}
}

Test(interop_children_celery, callbacks_as_celery_stores_them)
{
	static const char *const modes[] = {"link1", "link2", "linkgroup", "linkmix",
					    "linkchain", "linkchord", "linkgchain"};
	compare(modes, sizeof modes / sizeof modes[0], support_service_url("WARREN_TEST_REDIS"));
}

Test(interop_children_celery, chain_links_and_retries_as_celery_stores_them)
{
	static const char *const modes[] = {"chain", "chaingroup", "chainchord", "retry"};
	compare(modes, sizeof modes / sizeof modes[0], support_service_url("WARREN_TEST_REDIS"));
}

Test(interop_children_celery, rpc_replies_carry_them_as_celery_sends_them)
{
	static const char *const modes[] = {"rpclink1", "rpcchain"};
	compare(modes, sizeof modes / sizeof modes[0], "rpc://");
}

/* One shape spelled out, so the reference itself is checked: a task linked
 * to two callbacks stores one group (made by the worker) holding both. */
Test(interop_children_celery, two_callbacks_are_one_group_made_by_the_worker)
{
	const char *backend = support_service_url("WARREN_TEST_REDIS");
	const char *queue = worker_test_queue(0, "chtwo");
	start_warren(queue, backend);
	char run[64];
	snprintf(run, sizeof run, "two%d", (int)getpid());
	json_t *detail = run_mode("link2", queue, run, backend);
	json_error_t jerr;
	json_t *want = json_loads("[[[\"<gen 1>\", null], [[[\"m\", null], null], "
				  "[[\"d\", null], null]]]]", 0, &jerr);
	cr_assert_not_null(want, "%s", jerr.text);
	json_t *got = json_object_get(json_object_get(detail, "meta"), "a");
	char *text = json_dumps(got, JSON_COMPACT);
	cr_expect(json_equal(got, want), "children of a: %s", text);
	free(text);
	json_t *kid = json_array_get(json_object_get(json_object_get(detail, "children"), "a"), 0);
	cr_expect_str_eq(json_string_value(json_array_get(kid, 0)), "GroupResult");
	json_decref(want);
	json_decref(detail);
}
