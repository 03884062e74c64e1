/* tests/interop/test_control_celery.c - remote control of real warren-worker
 * processes, driven by Celery 5.2 itself (tests/interop/control_celery.py,
 * `python3 -m celery inspect`) and by our own `warren inspect|control`:
 * ping and registered over a mixed fleet, revoke of a queued task that
 * survives a restart (state file) and reaches a worker started later
 * (mingle), terminate in the prefork pool, a live rate limit, and a remote
 * warm shutdown.
 *
 * Criterion may run these tests in parallel against one broker, and the
 * pidbox is a broadcast: every node name carries the test's pid, and
 * checks look for their own nodes only. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#include "../integration/test_worker_support.h"

#define HELPER WARREN_SOURCE_DIR "/tests/interop/control_celery.py"
#define CLI WARREN_BUILD_DIR "/bin/warren"

static pid_t celery_pid = -1;

static void fini(void)
{
	if (celery_pid > 0) {
		kill(celery_pid, SIGKILL);
		waitpid(celery_pid, NULL, 0);
	}
	worker_test_fini();
}

TestSuite(interop_control, .fini = fini, .timeout = 90);

/* ---- helpers ---- */

static const char *host(void)
{
	static char h[256];
	if (!h[0])
		gethostname(h, sizeof h - 1);
	return h;
}

/* "<tag><pid>@<host>": what a worker started with "-n <tag><pid>@%h" is called. */
static const char *node(int slot, const char *tag)
{
	static char names[4][128];
	snprintf(names[slot & 3], sizeof names[0], "%.16s%d@%.60s", tag, (int)getpid(), host());
	return names[slot & 3];
}

static const char *statedb(const char *tag)
{
	static char path[4][200];
	static int next;
	char *p = path[next++ & 3];
	snprintf(p, sizeof path[0], "/tmp/warren-ct-%d-%s.state", (int)getpid(), tag);
	return p;
}

/* Starts a warren worker "<tag><pid>@%h" on queue with extra args; waits
 * until it is ready (mingle done, consuming). */
static pid_t start_worker(const char *tag, const char *queue, const char *extra)
{
	char args[1500];
	snprintf(args, sizeof args,
		 "%s -n %s%d@%%h -Q %s --result-backend %s -l info %s", WORKER_PLUGINS, tag,
		 (int)getpid(), queue, support_service_url("WARREN_TEST_REDIS"), extra);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, "ready:", 15000), "worker %s not ready: see %s",
		  tag, worker_test_log(pid));
	return pid;
}

static json_t *helper(const char *args)
{
	static char out[1 << 16];
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
		 "cd %s/tests/interop && WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' "
		 "/usr/bin/python3 %s %s 2>/dev/null",
		 WARREN_SOURCE_DIR, support_service_url("WARREN_TEST_BROKER"),
		 support_service_url("WARREN_TEST_REDIS"), HELPER, args);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	json_error_t jerr;
	json_t *v = json_loads(out, JSON_DECODE_ANY, &jerr);
	cr_assert_not_null(v, "helper %s: not JSON: %s", args, out);
	return v;
}

/* Runs our CLI; returns its exit status, stdout in out. */
static int cli(const char *args, char *out, size_t cap)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s --broker '%s' %s 2>&1", CLI,
		 support_service_url("WARREN_TEST_BROKER"), args);
	return support_run(cmd, out, cap);
}

static pid_t start_celery(const char *queue)
{
	char name[300], logf[200];
	snprintf(name, sizeof name, "cel%d@%%h", (int)getpid());
	snprintf(logf, sizeof logf, "/tmp/warren-ct-celery.%d.log", (int)getpid());
	/* Before the fork: an assertion in the child would hang Criterion. */
	const char *broker = support_service_url("WARREN_TEST_BROKER");
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		if (chdir(WARREN_SOURCE_DIR "/tests/interop") != 0)
			_exit(127);
		setenv("WARREN_TEST_BROKER", broker, 1);
		execl("/usr/bin/python3", "python3", "-m", "celery", "-A", "celery_app", "worker",
		      "-n", name, "-P", "solo", "-Q", queue, "--without-heartbeat",
		      "--without-gossip", (char *)NULL);
		_exit(127);
	}
	celery_pid = pid;
	return pid;
}

static const char *jstate(json_t *v)
{
	const char *s = json_string_value(json_object_get(v, "state"));
	return s ? s : "(none)";
}

/* ---- inspect: ping, registered, stats ---- */

Test(interop_control, celery_and_warren_inspect_a_mixed_fleet)
{
	const char *q = worker_test_queue(0, "ctl");
	start_celery(worker_test_queue(1, "ctlcel"));
	start_worker("wa", q, "-P threads -c 2 --without-mingle");
	start_worker("wb", q, "-P threads -c 2 --without-mingle");
	const char *wa = node(0, "wa"), *wb = node(1, "wb"), *cel = node(2, "cel");

	/* Celery's own ping sees all three (its worker needs a few seconds). */
	json_t *ping = NULL;
	for (int i = 0; i < 15; i++) {
		json_decref(ping);
		ping = helper("ping 1");
		if (json_object_get(ping, cel))
			break;
	}
	char *dump = json_dumps(ping, 0);
	cr_assert_not_null(json_object_get(ping, wa), "%s", dump);
	cr_assert_not_null(json_object_get(ping, wb), "%s", dump);
	cr_assert_not_null(json_object_get(ping, cel), "%s", dump);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(ping, wa), "ok")),
			 "pong");
	free(dump);
	json_decref(ping);

	char args[2048];
	snprintf(args, sizeof args, "registered %s %s", wa, wb);
	json_t *reg = helper(args);
	for (int i = 0; i < 2; i++) {
		json_t *names = json_object_get(reg, i ? wb : wa);
		cr_assert(json_is_array(names), "no registered from %s", i ? wb : wa);
		bool add = false, sleep = false;
		size_t k;
		json_t *n;
		json_array_foreach(names, k, n) {
			add |= !strcmp(json_string_value(n), "math.add");
			sleep |= !strcmp(json_string_value(n), "test.sleep");
		}
		cr_expect(add && sleep, "registered of %s lacks math.add/test.sleep", i ? wb : wa);
	}
	json_decref(reg);

	/* `celery inspect` itself, as a user would type it. */
	char cmd[4096], out[1 << 15];
	snprintf(cmd, sizeof cmd,
		 "cd %s/tests/interop && WARREN_TEST_BROKER='%s' /usr/bin/python3 -m celery -A "
		 "celery_app inspect stats -d %s -t 3 2>&1",
		 WARREN_SOURCE_DIR, support_service_url("WARREN_TEST_BROKER"), wa);
	cr_expect_eq(support_run(cmd, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "max-concurrency") && strstr(out, "1 node online"), "%s", out);

	/* Ours: table and JSON. */
	snprintf(args, sizeof args, "inspect ping --destination %s,%s", wa, wb);
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "NODE") && strstr(out, wa) && strstr(out, wb) &&
		  strstr(out, "pong"), "%s", out);
	snprintf(args, sizeof args, "inspect registered --json -d %s", wa);
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	json_t *j = json_loads(out, 0, NULL);
	cr_assert(json_is_array(json_object_get(j, wa)), "%s", out);
	json_decref(j);
	snprintf(args, sizeof args, "inspect stats -d %s", wb);
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "CONCURRENCY") && strstr(out, wb), "%s", out);
	snprintf(args, sizeof args, "control revoke 00000000-dead-4000-8000-%012d -d %s,%s",
		 (int)getpid(), wa, wb);
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "flagged as revoked") && strstr(out, wb), "%s", out);
	snprintf(args, sizeof args, "control revoke x-%d --json -d %s", (int)getpid(), wa);
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	j = json_loads(out, 0, NULL);
	cr_expect(json_is_string(json_object_get(json_object_get(j, wa), "ok")), "%s", out);
	json_decref(j);
	/* Nobody by that name: exit 2 after the timeout. */
	cr_expect_eq(cli("inspect ping -d nobody@nowhere -t 0.3", out, sizeof out), 2);
}

/* ---- revoke: a queued task, a restart, a later worker ---- */

Test(interop_control, revoked_queued_task_stays_revoked_across_restart_and_fleet)
{
	const char *q = worker_test_queue(0, "rev");
	char extra[400];
	const char *db = statedb("wr");
	unlink(db);
	snprintf(extra, sizeof extra, "-P threads -c 2 --without-mingle --statedb %s", db);
	pid_t w = start_worker("wr", q, extra);

	char args[2048];
	snprintf(args, sizeof args, "countdown-revoke %s", q);
	json_t *r = helper(args);
	cr_assert_str_eq(jstate(r), "REVOKED", "%s", json_dumps(r, 0));
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r, "id")));
	json_decref(r);
	cr_expect_eq(worker_test_count_log(w, "succeeded"), 0, "it ran: %s", worker_test_log(w));

	/* Restart from the state file alone (no mingle): the same id is refused. */
	cr_assert_eq(worker_test_stop(w, SIGTERM, 10000), 0);
	w = start_worker("wr", q, extra);
	cr_expect(worker_test_wait_log(w, "1 revoked id(s)", 100), "%s", worker_test_log(w));
	snprintf(args, sizeof args, "send-id %s %s", q, id);
	json_decref(helper(args));
	char needle[200];
	snprintf(needle, sizeof needle, "Discarding revoked task: test.echo[%s]", id);
	cr_expect(worker_test_wait_log(w, needle, 10000), "not refused after restart: %s",
		  worker_test_log(w));

	/* A worker started later, with an empty state file, learns it by mingle
	 * from the living one; then the old one stops and the new one refuses it. */
	const char *db2 = statedb("wl");
	unlink(db2);
	snprintf(extra, sizeof extra, "-P threads -c 2 --statedb %s", db2);
	pid_t late = start_worker("wl", q, extra);
	cr_expect(worker_test_wait_log(late, "mingle: sync with", 100), "%s",
		  worker_test_log(late));
	cr_assert_eq(worker_test_stop(w, SIGTERM, 10000), 0);
	snprintf(args, sizeof args, "send-id %s %s", q, id);
	json_decref(helper(args));
	cr_expect(worker_test_wait_log(late, needle, 10000), "the later worker ran it: %s",
		  worker_test_log(late));
	cr_expect_eq(worker_test_count_log(late, "succeeded"), 0);
	unlink(db);
	unlink(db2);
}

/* ---- terminate, rate_limit, shutdown ---- */

Test(interop_control, terminate_kills_a_running_task_in_prefork)
{
	const char *q = worker_test_queue(0, "term");
	start_worker("wt", q, "-P prefork -c 1 --without-mingle --statedb none");
	char args[2048];
	snprintf(args, sizeof args, "terminate %s %s", q, node(0, "wt"));
	json_t *r = helper(args);
	char *dump = json_dumps(r, 0);
	cr_expect(json_is_true(json_object_get(r, "seen_active")), "%s", dump);
	cr_expect_str_eq(jstate(r), "REVOKED", "%s", dump);
	cr_expect(strstr(dump, "terminated") != NULL, "%s", dump);
	free(dump);
	json_decref(r);
}

Test(interop_control, rate_limit_changes_live_and_shutdown_is_warm)
{
	const char *q = worker_test_queue(0, "rate");
	pid_t w = start_worker("wq", q, "-P threads -c 4 --without-mingle --statedb none");
	char args[2048];
	snprintf(args, sizeof args, "rate-limit %s test.noop 2/s", node(0, "wq"));
	json_t *r = helper(args);
	char *dump = json_dumps(r, 0);
	cr_expect(strstr(dump, "new rate limit set successfully") != NULL, "%s", dump);
	free(dump);
	json_decref(r);
	/* One token up front, then one every 0.5 s: 4 tasks take >= 1.5 s. */
	snprintf(args, sizeof args, "timed %s 4", q);
	r = helper(args);
	cr_expect_geq(json_number_value(r), 1.4, "took %.2fs", json_number_value(r));
	json_decref(r);

	char out[4096];
	snprintf(args, sizeof args, "control rate-limit test.noop 0 -d %s", node(0, "wq"));
	cr_assert_eq(cli(args, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "rate limit disabled successfully") != NULL, "%s", out);
	snprintf(args, sizeof args, "timed %s 4", q);
	r = helper(args);
	cr_expect_lt(json_number_value(r), 1.4, "took %.2fs", json_number_value(r));
	json_decref(r);

	snprintf(args, sizeof args, "shutdown %s", node(0, "wq"));
	json_decref(helper(args));
	cr_expect(worker_test_wait_log(w, "Got shutdown from remote", 10000), "no shutdown: %s",
		  worker_test_log(w));
	int status = worker_test_stop(w, 0, 10000);
	cr_expect_eq(status, 0, "exit %d, not a clean one: %s", status, worker_test_log(w));
	cr_expect_eq(worker_test_count_log(w, "warm shutdown"), 1, "%s", worker_test_log(w));
}
