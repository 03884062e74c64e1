/* tests/interop/test_control_pool_resize.c - `celery control pool_grow` and
 * `pool_shrink` (Celery 5.2's own CLI, `python3 -m celery`) against real
 * warren-worker processes, both pool kinds: the reply is Celery's
 * {'ok': 'pool will grow'|'pool will shrink'}, `celery inspect stats` then
 * shows the new max-concurrency and prefetch_count (concurrency x
 * multiplier), and a shrink below one is refused with an error reply.
 *
 * Node names carry the test's pid: the pidbox is a broadcast and Criterion
 * may run suites in parallel against one broker. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#include "../integration/test_worker_support.h"

static void fini(void)
{
	worker_test_fini();
}

TestSuite(interop_control_resize, .fini = fini, .timeout = 120);

static const char *node(const char *tag)
{
	static char name[2][300];
	static int next;
	char h[256] = "";
	gethostname(h, sizeof h - 1);
	char *n = name[next++ & 1];
	snprintf(n, sizeof name[0], "%.16s%d@%.200s", tag, (int)getpid(), h);
	return n;
}

/* `python3 -m celery -A celery_app <args> --json -t 3 -d node` from
 * tests/interop: its stdout parsed as JSON (the test fails otherwise). */
static json_t *celery(const char *args, const char *dest)
{
	char cmd[4096];
	static char out[1 << 16];
	snprintf(cmd, sizeof cmd,
		 "cd %s/tests/interop && WARREN_TEST_BROKER='%s' /usr/bin/python3 -m celery -A "
		 "celery_app %s --json -t 3 -d %s 2>/dev/null",
		 WARREN_SOURCE_DIR, support_service_url("WARREN_TEST_BROKER"), args, dest);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	json_error_t jerr;
	json_t *v = json_loads(out, JSON_DECODE_ANY, &jerr);
	cr_assert_not_null(v, "%s: not JSON: %s", args, out);
	return v;
}

/* `control --json` prints [{node: reply}]: this node's reply. */
static json_t *control_reply(json_t *list, const char *nd)
{
	cr_assert(json_is_array(list), "control reply is not a list");
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item) {
		json_t *r = json_object_get(item, nd);
		if (r)
			return r;
	}
	char *dump = json_dumps(list, 0);
	cr_assert_fail("no reply from %s: %s", nd, dump);
	free(dump);
	return NULL;
}

static void expect_control(const char *action, const char *nd, const char *key,
			   const char *text)
{
	json_t *list = celery(action, nd);
	json_t *r = control_reply(list, nd);
	char *dump = json_dumps(r, 0);
	const char *got = json_string_value(json_object_get(r, key));
	cr_assert(got && strstr(got, text), "%s: expected %s ~ '%s', got %s", action, key, text,
		  dump);
	free(dump);
	json_decref(list);
}

static void expect_stats(const char *nd, int concurrency, int prefetch)
{
	json_t *all = celery("inspect stats", nd);
	json_t *st = json_object_get(all, nd);
	char *dump = json_dumps(all, 0);
	cr_assert_not_null(st, "no stats from %s: %s", nd, dump);
	json_t *mc = json_object_get(json_object_get(st, "pool"), "max-concurrency");
	cr_assert_eq(json_integer_value(mc), concurrency, "max-concurrency: %s", dump);
	cr_assert_eq(json_integer_value(json_object_get(st, "prefetch_count")), prefetch,
		     "prefetch_count: %s", dump);
	free(dump);
	json_decref(all);
}

static void grow_and_shrink(const char *pool_kind, const char *tag)
{
	const char *q = worker_test_queue(0, tag);
	char args[1500];
	snprintf(args, sizeof args,
		 "%s -n %s%d@%%h -Q %s -P %s -c 1 --prefetch-multiplier 2 -l info "
		 "--without-mingle --statedb none --result-backend %s",
		 WORKER_PLUGINS, tag, (int)getpid(), q, pool_kind,
		 support_service_url("WARREN_TEST_REDIS"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, "ready:", 15000), "worker not ready: see %s",
		  worker_test_log(pid));
	const char *nd = node(tag);
	expect_stats(nd, 1, 2);

	expect_control("control pool_grow 2", nd, "ok", "pool will grow");
	expect_stats(nd, 3, 6);
	cr_expect(worker_test_wait_log(pid, "pool_grow: pool", 5000), "no log: %s",
		  worker_test_log(pid));

	expect_control("control pool_shrink 1", nd, "ok", "pool will shrink");
	expect_stats(nd, 2, 4);
	expect_control("control pool_shrink", nd, "ok", "pool will shrink"); /* n=1 */
	expect_stats(nd, 1, 2);

	/* Below one: refused, nothing changes. */
	expect_control("control pool_shrink 1", nd, "error", "below 1");
	expect_stats(nd, 1, 2);

	/* Tasks still flow after the queue was re-consumed with each new prefetch. */
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "math6", q,
					      NULL);
	worker_test_assert_ok(json, "six math.add after the resizes");
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 15000), 0, "worker did not stop: see %s",
		     worker_test_log(pid));
}

Test(interop_control_resize, threads_pool_grow_and_shrink)
{
	grow_and_shrink("threads", "rzt");
}

Test(interop_control_resize, prefork_pool_grow_and_shrink)
{
	grow_and_shrink("prefork", "rzp");
}
