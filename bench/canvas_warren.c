/* bench/canvas_warren.c - warren's side of bench/canvas.sh: times canvases
 * sent with libwarren (warren_chain / warren_chord, warren_canvas_send,
 * warren_canvas_wait) and run by whatever workers consume QUEUE.
 *
 *   canvas_warren BROKER_URL REDIS_URL QUEUE CHAIN_REPS CHORD_REPS CHORD_N
 *
 * First one untimed chain (waited on for up to 120 s: this is also the wait
 * for the worker to be ready, and it opens both connections). Then
 * CHAIN_REPS times a 10-link chain math.add(1, 1) | math.add(1) x 9 (= 11),
 * and CHORD_REPS times a chord of CHORD_N math.add(i, i) headers with a
 * math.sum body (= CHORD_N * (CHORD_N - 1)). Each is timed from before the
 * signatures are built to the final result in hand, and printed as
 * "chain SECONDS SEND" / "chord SECONDS SEND" on stdout, one line per run
 * (SEND: the part until warren_canvas_send returned, every message
 * confirmed by the broker). A wrong
 * result or a timeout exits 1. Same measure as bench/canvas_celery.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "warren/warren.h"

static const char *queue;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const warren_error *err)
{
	fprintf(stderr, "canvas_warren: %s: %s\n", what, err ? err->msg : "");
	exit(1);
}

static warren_sig *sig_of(const char *task, const char *args_json)
{
	warren_error err = {0};
	warren_args *a = NULL;
	warren_sig *s = NULL;
	if (args_json && warren_args_from_json(args_json, &a, &err) != 0)
		die("args", &err);
	if (warren_sig_new(task, a, NULL, &s, &err) != 0 || warren_sig_set_queue(s, queue, &err) != 0)
		die("signature", &err);
	warren_args_free(a);
	return s;
}

static warren_sig *make_chain(void)
{
	warren_sig *steps[10];
	steps[0] = sig_of("math.add", "[1, 1]");
	for (int i = 1; i < 10; i++)
		steps[i] = sig_of("math.add", "[1]");
	warren_error err = {0};
	warren_sig *ch = NULL;
	if (warren_chain((const warren_sig *const *)steps, 10, &ch, &err) != 0)
		die("chain", &err);
	for (int i = 0; i < 10; i++)
		warren_sig_free(steps[i]);
	return ch;
}

static warren_sig *make_chord(int n)
{
	warren_sig **h = calloc((size_t)n, sizeof *h);
	if (!h)
		die("out of memory", NULL);
	for (int i = 0; i < n; i++) {
		char a[48];
		snprintf(a, sizeof a, "[%d, %d]", i, i);
		h[i] = sig_of("math.add", a);
	}
	warren_sig *body = sig_of("math.sum", NULL), *ch = NULL;
	warren_error err = {0};
	if (warren_chord((const warren_sig *const *)h, (size_t)n, body, &ch, &err) != 0)
		die("chord", &err);
	for (int i = 0; i < n; i++)
		warren_sig_free(h[i]);
	free(h);
	warren_sig_free(body);
	return ch;
}

/* Sends sig, waits for its result, checks it is the integer want. Returns
 * the time at which the send returned (every message confirmed). */
static double run(warren_client *c, warren_sig *sig, long long want, int timeout_ms)
{
	warren_error err = {0};
	warren_canvas *cv = NULL;
	if (warren_canvas_send(c, sig, &cv, &err) != 0)
		die("send", &err);
	double sent = now_s();
	warren_result *r = NULL;
	if (warren_canvas_wait(c, cv, timeout_ms, &r, &err) != 0)
		die("wait", &err);
	const char *json = warren_result_json(r);
	if (warren_result_state(r) != WARREN_STATE_SUCCESS || !json || atoll(json) != want) {
		fprintf(stderr, "canvas_warren: %s result %s, want %lld\n",
			warren_state_name(warren_result_state(r)), json ? json : "(none)", want);
		exit(1);
	}
	warren_result_free(r);
	warren_canvas_free(cv);
	return sent;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: canvas_warren BROKER_URL REDIS_URL QUEUE CHAIN_REPS "
				"CHORD_REPS CHORD_N\n");
		return 64;
	}
	queue = argv[3];
	int chain_reps = atoi(argv[4]), chord_reps = atoi(argv[5]), chord_n = atoi(argv[6]);
	warren_error err = {0};
	warren_client *c = NULL;
	if (warren_client_new(argv[1], argv[2], NULL, &c, &err) != 0)
		die("client", &err);

	warren_sig *s = make_chain(); /* warm-up: worker ready, connections open */
	run(c, s, 11, 120000);
	warren_sig_free(s);

	for (int i = 0; i < chain_reps; i++) {
		double t0 = now_s();
		s = make_chain();
		double sent = run(c, s, 11, 60000);
		double took = now_s() - t0;
		warren_sig_free(s);
		printf("chain %.6f %.6f\n", took, sent - t0);
		fflush(stdout);
	}
	for (int i = 0; i < chord_reps; i++) {
		double t0 = now_s();
		s = make_chord(chord_n);
		double sent = run(c, s, (long long)chord_n * (chord_n - 1), 600000);
		double took = now_s() - t0;
		warren_sig_free(s);
		printf("chord %.6f %.6f\n", took, sent - t0);
		fflush(stdout);
	}
	warren_client_free(c);
	return 0;
}
