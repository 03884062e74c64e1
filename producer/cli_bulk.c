/* producer/cli_bulk.c - `warren send --from FILE`: many tasks, one JSON object
 * a line, published with pipelined confirms (the broker window), a progress
 * bar on a terminal, and a report at the end.
 *
 * Nothing is lost silently: every line ends up counted as confirmed, failed
 * (nacked, returned, never confirmed, or not sent because the broker stayed
 * away) or bad (not a task). When the broker goes away mid-run the adapter
 * reconnects and republishes what was not confirmed, so those end up
 * confirmed (a worker may see such a task twice). The report's "failed" is
 * what could not be sent; the exit status is non-zero when it is not 0.
 */

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "producer/cli.h"
#include "producer/cmdline.h"
#include "producer/producer.h"

#define BAD_LINES_SHOWN 5
#define DRAW_EVERY_S 0.1

typedef struct bulk {
	size_t total; /* lines in the file; 0 = unknown (stdin) */
	size_t lines, sent, confirmed, failed, bad;
	char first_failure[WARREN_ERROR_MSG_MAX + 32];
	bool tty;
	double t0, last_draw;
} bulk;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_send(void *arg, uint64_t cookie, warren_send_outcome o, const char *reason)
{
	bulk *b = arg;
	if (o == WARREN_SEND_CONFIRMED) {
		b->confirmed++;
		return;
	}
	b->failed++;
	if (!b->first_failure[0])
		snprintf(b->first_failure, sizeof b->first_failure, "line %llu: %s",
			 (unsigned long long)cookie + 1, reason ? reason : "not confirmed");
}

static size_t count_lines(FILE *f)
{
	char buf[65536];
	size_t n = 0, got;
	while ((got = fread(buf, 1, sizeof buf, f)) > 0)
		for (char *p = buf; (p = memchr(p, '\n', (size_t)(buf + got - p))); p++)
			n++;
	rewind(f);
	return n;
}

static void draw(bulk *b, bool force)
{
	double t = now_s();
	if (!b->tty || (!force && t - b->last_draw < DRAW_EVERY_S))
		return;
	b->last_draw = t;
	double rate = t > b->t0 ? (double)b->confirmed / (t - b->t0) : 0;
	if (b->total) {
		enum { WIDTH = 30 };
		size_t done = b->lines > b->total ? b->total : b->lines;
		int fill = (int)(WIDTH * done / b->total);
		char bar[WIDTH + 1];
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '-', (size_t)(WIDTH - fill));
		bar[WIDTH] = '\0';
		fprintf(stderr, "\r[%s] %3d%% %zu/%zu confirmed %zu %.0f/s ", bar,
			(int)(100 * done / b->total), done, b->total, b->confirmed, rate);
	} else {
		fprintf(stderr, "\rsent %zu confirmed %zu %.0f/s ", b->sent, b->confirmed, rate);
	}
}

static void bad_line(bulk *b, size_t lineno, const char *msg)
{
	if (b->bad++ < BAD_LINES_SHOWN)
		fprintf(stderr, "%swarren: line %zu: %s\n", b->tty ? "\n" : "", lineno, msg);
}

/* Line-level options: "queue", "id", "countdown", "expires", "priority". */
static int line_options(json_t *obj, warren_send_opts *o, warren_error *err)
{
	json_t *v;
	if ((v = json_object_get(obj, "queue")) && !(o->queue = json_string_value(v)))
		return warren_error_set(err, WARREN_EDECODE, "\"queue\" is not a string");
	if ((v = json_object_get(obj, "id")) && !(o->task_id = json_string_value(v)))
		return warren_error_set(err, WARREN_EDECODE, "\"id\" is not a string");
	if ((v = json_object_get(obj, "countdown")))
		o->countdown = json_number_value(v);
	if ((v = json_object_get(obj, "expires")))
		o->expires = json_number_value(v);
	if ((v = json_object_get(obj, "priority")))
		o->priority = (int)json_integer_value(v);
	return 0;
}

/* Publishes one line's task; 0, or an error (bad line, or sending failed). */
static int send_line(warren_client *c, const producer_task_cmd *cmd, json_t *obj,
		     uint64_t cookie, warren_error *err)
{
	if (!json_is_object(obj))
		return warren_error_set(err, WARREN_EDECODE, "expected a JSON object");
	const char *task = json_string_value(json_object_get(obj, "task"));
	if (!task)
		return warren_error_set(err, WARREN_EDECODE, "\"task\" is missing or not a string");
	warren_send_opts o = cmd->opts;
	warren_args *args = NULL, *kwargs = NULL;
	json_t *ja = json_object_get(obj, "args"), *jk = json_object_get(obj, "kwargs");
	int rc = line_options(obj, &o, err);
	if (!rc && ja && !json_is_null(ja))
		rc = producer_args_from_jansson(ja, false, &args, err);
	if (!rc && jk && !json_is_null(jk))
		rc = producer_args_from_jansson(jk, true, &kwargs, err);
	if (!rc)
		rc = warren_send_async(c, task, args ? args : cmd->args, kwargs ? kwargs : cmd->kwargs,
				       &o, cookie, NULL, err);
	warren_args_free(args);
	warren_args_free(kwargs);
	return rc;
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] == '\0';
}

/* Reads and sends every line; returns 0 or the error that stopped the run. */
static int send_all(warren_client *c, const producer_task_cmd *cmd, FILE *in, bulk *b,
		    warren_error *err)
{
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	while (getline(&line, &cap, in) >= 0) {
		b->lines++;
		if (blank(line))
			continue;
		json_error_t jerr;
		json_t *obj = json_loads(line, 0, &jerr);
		warren_error e = {0};
		int lrc = obj ? send_line(c, cmd, obj, b->lines - 1, &e)
			      : warren_error_set(&e, WARREN_EDECODE, "bad JSON at column %d: %s",
						 jerr.column, jerr.text);
		json_decref(obj);
		if (!lrc) {
			b->sent++;
		} else if (lrc == WARREN_EBROKER || lrc == WARREN_ETIMEOUT || lrc == WARREN_ENOMEM) {
			b->failed++; /* this one and, as we stop, the rest of the input */
			rc = warren_error_set(err, lrc, "line %zu: %s", b->lines, e.msg);
			break;
		} else {
			bad_line(b, b->lines, e.msg);
		}
		draw(b, false);
	}
	free(line);
	return rc;
}

static int finish(warren_client *c, bulk *b, warren_error *err)
{
	/* Long enough for the adapter to reconnect and republish. */
	int rc = warren_client_flush(c, 120000, err);
	size_t stuck = warren_client_unconfirmed(c);
	b->failed += stuck;
	draw(b, true);
	double secs = now_s() - b->t0;
	fprintf(stderr, "%swarren: sent %zu, confirmed %zu, failed %zu, bad lines %zu in %.2f s (%.0f tasks/s)\n",
		b->tty ? "\n" : "", b->sent, b->confirmed, b->failed, b->bad, secs,
		secs > 0 ? (double)b->confirmed / secs : 0.0);
	if (b->first_failure[0])
		fprintf(stderr, "warren: first failure: %s\n", b->first_failure);
	return stuck ? rc : 0;
}

int cli_bulk_send(warren_client *c, const producer_task_cmd *cmd)
{
	bool use_stdin = !strcmp(cmd->from, "-");
	FILE *in = use_stdin ? stdin : fopen(cmd->from, "r");
	if (!in) {
		fprintf(stderr, "warren: send --from '%s': %s\n", cmd->from, strerror(errno));
		return CLI_NOINPUT;
	}
	bulk b = {.tty = isatty(STDERR_FILENO) == 1, .t0 = now_s()};
	if (b.tty && !use_stdin)
		b.total = count_lines(in);
	warren_client_on_send(c, on_send, &b);
	warren_error err = {0};
	int code = CLI_OK;
	int rc = warren_client_connect(c, false, &err);
	if (!rc)
		rc = send_all(c, cmd, in, &b, &err);
	if (rc)
		code = cli_fail(rc, &err);
	warren_error ferr = {0};
	finish(c, &b, &ferr);
	warren_client_on_send(c, NULL, NULL);
	if (!use_stdin)
		fclose(in);
	if (code == CLI_OK && b.failed)
		code = CLI_TASK_FAILED;
	if (code == CLI_OK && b.bad)
		code = CLI_DATAERR;
	return code;
}
