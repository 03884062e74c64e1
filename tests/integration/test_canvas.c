/* tests/integration/test_canvas.c - canvases built and sent with libwarren
 * (producer/canvas.c) and run by real warren-worker children (worker/
 * canvas.c, backends/chord.c) over the test broker and Redis: chains,
 * callbacks and errbacks, groups, chords, map/starmap, the nestings Celery's
 * own msgpack corrupts, failure inside a chain and inside a chord header,
 * and a 1,000-task chord shared by two workers, one of them killed -9. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "warren/warren.h"

TestSuite(integration_canvas, .fini = worker_test_fini, .timeout = 120);

static const char *queue;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t start(int slot, const char *tag, int concurrency)
{
	queue = worker_test_queue(slot, tag);
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c %d -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, concurrency, queue, support_service_url("WARREN_TEST_REDIS"));
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

/* task(args as JSON) on the test queue; immutable when asked. */
static warren_sig *sig_of(const char *task, const char *args_json, bool immutable)
{
	warren_error err = {0};
	warren_args *a = NULL;
	cr_assert_eq(warren_args_from_json(args_json, &a, &err), 0, "%s", err.msg);
	warren_sig *s = NULL;
	cr_assert_eq(warren_sig_new(task, a, NULL, &s, &err), 0, "%s", err.msg);
	cr_assert_eq(warren_sig_set_queue(s, queue, &err), 0, "%s", err.msg);
	if (immutable)
		cr_assert_eq(warren_sig_set_immutable(s, true, &err), 0, "%s", err.msg);
	warren_args_free(a);
	return s;
}

static void free_sigs(warren_sig **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		warren_sig_free(s[i]);
}

/* Sends sig, waits, and returns the result (the caller frees it). */
static warren_result *run(warren_client *c, const warren_sig *sig, warren_canvas **cv_out)
{
	warren_error err = {0};
	warren_canvas *cv = NULL;
	cr_assert_eq(warren_canvas_send(c, sig, &cv, &err), 0, "%s", err.msg);
	warren_result *r = NULL;
	cr_assert_eq(warren_canvas_wait(c, cv, 20000, &r, &err), 0, "%s", err.msg);
	if (cv_out)
		*cv_out = cv;
	else
		warren_canvas_free(cv);
	return r;
}

static void expect_json(warren_client *c, const warren_sig *sig, const char *want)
{
	warren_result *r = run(c, sig, NULL);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "state %s: %s",
		     warren_state_name(warren_result_state(r)), warren_result_json(r));
	cr_expect_str_eq(warren_result_json(r), want);
	warren_result_free(r);
}

static warren_result *wait_id(warren_client *c, const char *id)
{
	warren_error err = {0};
	warren_result *r = NULL;
	cr_assert_eq(warren_result_wait(c, id, 20000, &r, &err), 0, "%s: %s", id, err.msg);
	return r;
}

Test(integration_canvas, chain_of_three_math_steps)
{
	start(0, "chain", 4);
	warren_client *c = client();
	warren_sig *s[3] = {sig_of("math.add", "[2, 3]", false), sig_of("math.mul", "[10]", false),
			    sig_of("math.add", "[1]", false)};
	warren_sig *ch = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_chain((const warren_sig *const *)s, 3, &ch, &err), 0, "%s", err.msg);
	expect_json(c, ch, "51");
	warren_sig_free(ch);
	free_sigs(s, 3);
	warren_client_free(c);
}

Test(integration_canvas, callbacks_and_errbacks_of_a_task)
{
	start(0, "links", 4);
	warren_client *c = client();
	warren_error err = {0};
	char cb_id[64], eb_id[64];
	snprintf(cb_id, sizeof cb_id, "cb-%d", (int)getpid());
	snprintf(eb_id, sizeof eb_id, "eb-%d", (int)getpid());
	warren_sig *task = sig_of("math.add", "[2, 3]", false);
	warren_sig *cb = sig_of("math.mul", "[10]", false);
	warren_sig_set_task_id(cb, cb_id, &err);
	cr_assert_eq(warren_sig_link(task, cb, &err), 0, "%s", err.msg);
	expect_json(c, task, "5");
	warren_result *r = wait_id(c, cb_id);
	cr_expect_str_eq(warren_result_json(r), "50");
	warren_result_free(r);

	warren_sig *bad = sig_of("test.fail", "[\"boom\"]", false);
	warren_sig *eb = sig_of("test.echo", "[]", false);
	warren_sig_set_task_id(eb, eb_id, &err);
	cr_assert_eq(warren_sig_link_error(bad, eb, &err), 0, "%s", err.msg);
	warren_canvas *cv = NULL;
	r = run(c, bad, &cv);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_FAILURE);
	cr_expect_str_eq(warren_result_exc_message(r), "boom");
	warren_result_free(r);
	r = wait_id(c, eb_id);
	char want[200];
	snprintf(want, sizeof want, "[[\"%s\"], {}]", warren_canvas_id(cv));
	cr_expect_str_eq(warren_result_json(r), want, "old-style errback gets the failed id");
	warren_result_free(r);
	warren_canvas_free(cv);
	warren_sig_free(task), warren_sig_free(cb), warren_sig_free(bad), warren_sig_free(eb);
	warren_client_free(c);
}

Test(integration_canvas, group_of_ten_in_index_order)
{
	start(0, "group", 8);
	warren_client *c = client();
	warren_sig *s[10];
	for (int i = 0; i < 10; i++) {
		char a[32];
		snprintf(a, sizeof a, "[%d, %d]", i, i);
		s[i] = sig_of("math.add", a, false);
	}
	warren_sig *g = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_group((const warren_sig *const *)s, 10, &g, &err), 0, "%s", err.msg);
	expect_json(c, g, "[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]");
	warren_sig_free(g);
	free_sigs(s, 10);
	warren_client_free(c);
}

Test(integration_canvas, chord_of_ten_wordcounts_summed)
{
	start(0, "chord", 8);
	warren_client *c = client();
	warren_sig *s[10];
	char text[64] = "";
	for (int i = 0; i < 10; i++) {
		strcat(text, i ? " w" : "w");
		char a[96];
		snprintf(a, sizeof a, "[\"%s\"]", text);
		s[i] = sig_of("text.wordcount", a, false);
	}
	warren_sig *body = sig_of("math.sum", "[]", false), *ch = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_chord((const warren_sig *const *)s, 10, body, &ch, &err), 0, "%s",
		     err.msg);
	expect_json(c, ch, "55");
	warren_sig_free(ch);
	warren_sig_free(body);
	free_sigs(s, 10);
	warren_client_free(c);
}

static warren_sig *map_of(const char *task, const char *items, bool star)
{
	warren_error err = {0};
	warren_args *a = NULL;
	cr_assert_eq(warren_args_from_json(items, &a, &err), 0, "%s", err.msg);
	warren_sig *m = NULL;
	cr_assert_eq((star ? warren_starmap : warren_map)(task, a, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(warren_sig_set_queue(m, queue, &err), 0, "%s", err.msg);
	warren_args_free(a);
	return m;
}

Test(integration_canvas, map_and_starmap)
{
	start(0, "map", 4);
	warren_client *c = client();
	warren_sig *m = map_of("text.upper", "[\"a\", \"bc\"]", false);
	expect_json(c, m, "[\"A\", \"BC\"]");
	warren_sig_free(m);
	m = map_of("math.add", "[[1, 2], [3, 4]]", true);
	expect_json(c, m, "[3, 7]");
	warren_sig_free(m);
	/* past WARREN_MAP_INLINE_MAX items: one task per item, as a group */
	char items[4096] = "[", want[4096] = "[";
	for (int i = 0; i < WARREN_MAP_INLINE_MAX + 20; i++) {
		char one[32];
		snprintf(one, sizeof one, "%s[%d, 1]", i ? ", " : "", i);
		strcat(items, one);
		snprintf(one, sizeof one, "%s%d", i ? ", " : "", i + 1);
		strcat(want, one);
	}
	strcat(items, "]");
	strcat(want, "]");
	m = map_of("math.add", items, true);
	expect_json(c, m, want);
	warren_sig_free(m);
	warren_client_free(c);
}

static warren_sig *chain_of(warren_sig **steps, size_t n)
{
	warren_sig *ch = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_chain((const warren_sig *const *)steps, n, &ch, &err), 0, "%s", err.msg);
	return ch;
}

static warren_sig *group_of(warren_sig **members, size_t n)
{
	warren_sig *g = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_group((const warren_sig *const *)members, n, &g, &err), 0, "%s",
		     err.msg);
	return g;
}

Test(integration_canvas, group_inside_a_chain)
{
	start(0, "nest1", 4);
	warren_client *c = client();
	/* add(1,1) | group(mul(_,2), mul(_,3)) | sum  ->  the group becomes a chord */
	warren_sig *m[2] = {sig_of("math.mul", "[2]", false), sig_of("math.mul", "[3]", false)};
	warren_sig *g = group_of(m, 2);
	warren_sig *steps[3] = {sig_of("math.add", "[1, 1]", false), g, sig_of("math.sum", "[]", false)};
	warren_sig *ch = chain_of(steps, 3);
	expect_json(c, ch, "10");
	warren_sig_free(ch);
	/* a group as the last step: the chain's result is the group's list */
	warren_sig *ch2 = chain_of(steps, 2);
	expect_json(c, ch2, "[4, 6]");
	warren_sig_free(ch2);
	free_sigs(steps, 3);
	free_sigs(m, 2);
	warren_client_free(c);
}

Test(integration_canvas, chain_inside_a_group)
{
	start(0, "nest2", 4);
	warren_client *c = client();
	warren_sig *a[2] = {sig_of("math.add", "[1, 2]", false), sig_of("math.mul", "[10]", false)};
	warren_sig *b[2] = {sig_of("math.add", "[3, 4]", false), sig_of("math.mul", "[10]", false)};
	warren_sig *members[2] = {chain_of(a, 2), chain_of(b, 2)};
	warren_sig *g = group_of(members, 2);
	expect_json(c, g, "[30, 70]");
	warren_sig_free(g);
	free_sigs(members, 2);
	free_sigs(a, 2);
	free_sigs(b, 2);
	warren_client_free(c);
}

Test(integration_canvas, chord_inside_a_chain)
{
	start(0, "nest3", 4);
	warren_client *c = client();
	warren_error err = {0};
	warren_sig *h[2] = {sig_of("math.mul", "[2]", false), sig_of("math.mul", "[3]", false)};
	warren_sig *body = sig_of("math.sum", "[]", false), *chord = NULL;
	cr_assert_eq(warren_chord((const warren_sig *const *)h, 2, body, &chord, &err), 0, "%s",
		     err.msg);
	warren_sig *steps[3] = {sig_of("math.add", "[1, 1]", false), chord,
				sig_of("math.add", "[100]", false)};
	warren_sig *ch = chain_of(steps, 3);
	expect_json(c, ch, "110");
	warren_sig_free(ch);
	free_sigs(steps, 3);
	free_sigs(h, 2);
	warren_sig_free(body);
	warren_client_free(c);
}

Test(integration_canvas, failure_in_a_chain_stops_it_and_runs_errbacks)
{
	start(0, "chainfail", 4);
	warren_client *c = client();
	warren_error err = {0};
	char eb_id[64], mid_id[64];
	snprintf(eb_id, sizeof eb_id, "eb-%d", (int)getpid());
	snprintf(mid_id, sizeof mid_id, "mid-%d", (int)getpid());
	warren_sig *steps[4] = {sig_of("math.add", "[1, 1]", false),
				sig_of("test.fail", "[\"boom\"]", true),
				sig_of("math.add", "[5]", false), sig_of("math.add", "[6]", false)};
	warren_sig_set_task_id(steps[2], mid_id, &err);
	warren_sig *ch = chain_of(steps, 4);
	warren_sig *eb = sig_of("test.echo", "[]", false);
	warren_sig_set_task_id(eb, eb_id, &err);
	cr_assert_eq(warren_sig_link_error(ch, eb, &err), 0, "%s", err.msg);
	warren_result *r = run(c, ch, NULL);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_FAILURE, "%s", warren_result_json(r));
	cr_expect_str_eq(warren_result_exc_type(r), "ValueError");
	warren_result_free(r);
	r = wait_id(c, mid_id); /* every remaining step holds the failure */
	cr_expect_eq(warren_result_state(r), WARREN_STATE_FAILURE);
	warren_result_free(r);
	r = wait_id(c, eb_id);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s", warren_result_json(r));
	cr_expect(strstr(warren_result_json(r), "[[\"") != NULL, "%s", warren_result_json(r));
	warren_result_free(r);
	warren_sig_free(ch);
	warren_sig_free(eb);
	free_sigs(steps, 4);
	warren_client_free(c);
}

Test(integration_canvas, chord_header_failure_fails_the_body_with_chord_error)
{
	start(0, "chordfail", 4);
	warren_client *c = client();
	warren_error err = {0};
	char bad_id[64];
	snprintf(bad_id, sizeof bad_id, "bad-%d", (int)getpid());
	warren_sig *h[3] = {sig_of("math.add", "[1, 1]", false), sig_of("test.fail", "[\"bad\"]", false),
			    sig_of("math.add", "[2, 2]", false)};
	warren_sig_set_task_id(h[1], bad_id, &err);
	warren_sig *body = sig_of("test.echo", "[]", false), *ch = NULL;
	cr_assert_eq(warren_chord((const warren_sig *const *)h, 3, body, &ch, &err), 0, "%s",
		     err.msg);
	warren_result *r = run(c, ch, NULL);
	cr_expect_eq(warren_result_state(r), WARREN_STATE_FAILURE, "%s", warren_result_json(r));
	cr_expect_str_eq(warren_result_exc_type(r), "ChordError");
	char want[200];
	snprintf(want, sizeof want, "Dependency %s raised ValueError('bad')", bad_id);
	cr_expect_str_eq(warren_result_exc_message(r), want);
	warren_result_free(r);
	warren_sig_free(ch);
	warren_sig_free(body);
	free_sigs(h, 3);
	warren_client_free(c);
}

Test(integration_canvas, chord_over_rpc_is_refused_before_sending)
{
	queue = worker_test_queue(0, "rpc");
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), "rpc://", NULL, &c,
				       &err), 0, "%s", err.msg);
	warren_sig *h[1] = {sig_of("math.add", "[1, 1]", false)};
	warren_sig *body = sig_of("math.sum", "[]", false), *ch = NULL;
	cr_assert_eq(warren_chord((const warren_sig *const *)h, 1, body, &ch, &err), 0, "%s",
		     err.msg);
	warren_canvas *cv = NULL;
	cr_expect_eq(warren_canvas_send(c, ch, &cv, &err), WARREN_EINVAL);
	cr_expect(strstr(err.msg, "cannot join a chord") != NULL, "%s", err.msg);
	warren_sig_free(ch);
	warren_sig_free(body);
	warren_sig_free(h[0]);
	warren_client_free(c);
}

/* A chord of n header tasks (task(i, 0), or test.sleep) and a test.echo
 * body with a known id. */
static warren_sig *big_chord(int n, bool sleepy, const char *body_id)
{
	warren_sig **h = calloc((size_t)n, sizeof *h);
	for (int i = 0; i < n; i++) {
		char a[32];
		snprintf(a, sizeof a, sleepy ? "[0.01]" : "[%d, 0]", i);
		h[i] = sig_of(sleepy ? "test.sleep" : "math.add", a, false);
	}
	warren_error err = {0};
	warren_sig *body = sig_of("test.echo", "[]", false), *ch = NULL;
	warren_sig_set_task_id(body, body_id, &err);
	cr_assert_eq(warren_chord((const warren_sig *const *)h, (size_t)n, body, &ch, &err), 0,
		     "%s", err.msg);
	free_sigs(h, (size_t)n);
	free(h);
	warren_sig_free(body);
	return ch;
}

Test(integration_canvas, chord_of_1000_joins_once_in_order_on_two_workers)
{
	pid_t a = start(0, "big", 8), b = start(0, "big", 8);
	warren_client *c = client();
	char body_id[64];
	snprintf(body_id, sizeof body_id, "body-%d", (int)getpid());
	warren_sig *ch = big_chord(1000, false, body_id);
	double t0 = now_s();
	warren_result *r = run(c, ch, NULL);
	double took = now_s() - t0;
	cr_log_info("chord of 1000 on two warren workers: %.3f s from send to body result", took);
	fprintf(stderr, "canvas: chord of 1000 header tasks joined in %.3f s\n", took);
	cr_assert_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s", warren_result_json(r));
	const msgpack_object *o = warren_result_object(r);
	cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY);
	const msgpack_object *list = &o->via.array.ptr[0].via.array.ptr[0];
	cr_assert_eq(list->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(list->via.array.size, 1000);
	for (uint32_t i = 0; i < 1000; i++)
		cr_assert_eq(list->via.array.ptr[i].via.u64, i, "result %u out of order", i);
	warren_result_free(r);
	/* both workers did part of it, and the body ran once */
	cr_expect_gt(worker_test_count_log(a, "math.add"), 0);
	cr_expect_gt(worker_test_count_log(b, "math.add"), 0);
	char needle[128];
	snprintf(needle, sizeof needle, "test.echo[%s] succeeded", body_id);
	cr_expect_eq(worker_test_count_log(a, needle) + worker_test_count_log(b, needle), 1);
	/* the join is logged after the body is confirmed: give the line a moment */
	for (int i = 0; i < 100 && worker_test_count_log(a, "joined:") +
					   worker_test_count_log(b, "joined:") == 0; i++) {
		struct timespec d = {0, 20 * 1000000};
		nanosleep(&d, NULL);
	}
	cr_expect_eq(worker_test_count_log(a, "joined:") + worker_test_count_log(b, "joined:"), 1);
	warren_sig_free(ch);
	warren_client_free(c);
}

Test(integration_canvas, worker_killed_mid_chord_neither_loses_nor_doubles_the_join)
{
	pid_t a = start(0, "kill", 4), b = start(0, "kill", 4);
	warren_client *c = client();
	char body_id[64];
	snprintf(body_id, sizeof body_id, "kbody-%d", (int)getpid());
	warren_sig *ch = big_chord(1000, true, body_id);
	warren_error err = {0};
	warren_canvas *cv = NULL;
	cr_assert_eq(warren_canvas_send(c, ch, &cv, &err), 0, "%s", err.msg);
	for (int i = 0; i < 1000 && worker_test_count_log(a, "succeeded in") < 150; i++) {
		struct timespec d = {0, 10 * 1000000};
		nanosleep(&d, NULL);
	}
	cr_assert_eq(worker_test_stop(a, SIGKILL, 5000), 128 + SIGKILL);
	pid_t a2 = start(0, "kill", 4);
	warren_result *r = NULL;
	cr_assert_eq(warren_canvas_wait(c, cv, 60000, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(warren_result_state(r), WARREN_STATE_SUCCESS, "%s", warren_result_json(r));
	const msgpack_object *list = &warren_result_object(r)->via.array.ptr[0].via.array.ptr[0];
	cr_expect_eq(list->via.array.size, 1000, "a header result is missing or doubled");
	warren_result_free(r);
	char needle[128];
	snprintf(needle, sizeof needle, "test.echo[%s] succeeded", body_id);
	struct timespec d = {0, 300 * 1000000};
	nanosleep(&d, NULL); /* a second body, if any, would run by now */
	int bodies = worker_test_count_log(a, needle) + worker_test_count_log(b, needle) +
		     worker_test_count_log(a2, needle);
	cr_expect_eq(bodies, 1, "the body ran %d times", bodies);
	warren_canvas_free(cv);
	warren_sig_free(ch);
	warren_client_free(c);
}
