/* producer/cli_status.c - `warren status`: the fleet as one table, built
 * from the workers' worker-* events (heartbeats every 2 s, Celery's and
 * ours alike).
 *
 * One shot: listen on worker.# for --timeout seconds (2.5 by default: every
 * live worker sends a heartbeat within 2), then print the workers heard.
 * --watch: keep listening and redraw every second (clearing the screen on a
 * terminal) until Ctrl-C; a worker is "online" until its heartbeat is older
 * than twice its freq (Celery's HEARTBEAT_EXPIRE_WINDOW of 200 %), "offline"
 * after its worker-offline, "lost" in between.
 *
 * Pool, concurrency and uptime come from warren's extra heartbeat fields
 * (warren_pool, warren_concurrency, warren_uptime); a Celery worker has none
 * and shows "-" there.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "producer/cli.h"
#include "producer/producer.h"
#include "schemas/schemas.h"

#define STATUS_DEFAULT_WAIT_S 2.5
#define STATUS_REFRESH_MS 1000
#define STATUS_MAX_WORKERS 4096

typedef struct worker_row {
	char *hostname;
	json_t *last;       /* the last worker-* event, owned */
	double heard;       /* local wall clock when it came */
	bool offline;
} worker_row;

typedef struct fleet {
	worker_row *rows;
	size_t n, cap;
} fleet;

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static worker_row *row_for(fleet *f, const char *hostname)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].hostname, hostname) == 0)
			return &f->rows[i];
	if (f->n >= STATUS_MAX_WORKERS)
		return NULL;
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;
		worker_row *r = realloc(f->rows, cap * sizeof *r);
		if (!r)
			return NULL;
		f->rows = r;
		f->cap = cap;
	}
	worker_row *r = &f->rows[f->n];
	*r = (worker_row){.hostname = strdup(hostname)};
	if (!r->hostname)
		return NULL;
	f->n++;
	return r;
}

static void fleet_release(fleet *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->rows[i].hostname);
		json_decref(f->rows[i].last);
	}
	free(f->rows);
}

static void fleet_take(fleet *f, const schema_event *ev)
{
	if (!ev->hostname || strncmp(ev->type_name, "worker-", 7) != 0)
		return;
	worker_row *r = row_for(f, ev->hostname);
	if (!r)
		return;
	json_decref(r->last);
	r->last = json_incref(ev->object);
	r->heard = wall_now();
	r->offline = ev->type == SCHEMA_EVENT_WORKER_OFFLINE;
}

static int by_hostname(const void *a, const void *b)
{
	return strcmp(((const worker_row *)a)->hostname, ((const worker_row *)b)->hostname);
}

/* ---- one row ----------------------------------------------------------------- */

static double num(const json_t *o, const char *key, double fallback)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : fallback;
}

static const char *status_of(const worker_row *r, double now)
{
	if (r->offline)
		return "offline";
	double freq = num(r->last, "freq", 2.0);
	return now - r->heard <= freq * 2 ? "online" : "lost";
}

static void format_duration(double s, char *buf, size_t cap)
{
	if (s < 0) {
		snprintf(buf, cap, "-");
		return;
	}
	long t = (long)s;
	if (t < 60)
		snprintf(buf, cap, "%lds", t);
	else if (t < 3600)
		snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
	else
		snprintf(buf, cap, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

static void print_row(const worker_row *r, double now)
{
	const json_t *o = r->last;
	json_t *load = json_object_get(o, "loadavg");
	char loads[48] = "-", uptime[24], pool[24] = "-", conc[16] = "-";
	if (json_array_size(load) == 3)
		snprintf(loads, sizeof loads, "%.2f %.2f %.2f",
			 json_number_value(json_array_get(load, 0)),
			 json_number_value(json_array_get(load, 1)),
			 json_number_value(json_array_get(load, 2)));
	double up = num(o, "warren_uptime", -1);
	format_duration(up < 0 ? -1 : up + (now - r->heard), uptime, sizeof uptime);
	json_t *p = json_object_get(o, "warren_pool");
	if (json_is_string(p))
		snprintf(pool, sizeof pool, "%s", json_string_value(p));
	if (json_is_integer(json_object_get(o, "warren_concurrency")))
		snprintf(conc, sizeof conc, "%lld",
			 (long long)json_integer_value(json_object_get(o, "warren_concurrency")));
	printf("%-32s %-8s %7.0f %-8s %4s %10.0f %6.0f  %-16s %8s %6.1fs\n", r->hostname,
	       status_of(r, now), num(o, "pid", 0), pool, conc, num(o, "processed", 0),
	       num(o, "active", 0), loads, uptime, now - r->heard);
}

static void print_table(fleet *f)
{
	double now = wall_now();
	qsort(f->rows, f->n, sizeof *f->rows, by_hostname);
	printf("%-32s %-8s %7s %-8s %4s %10s %6s  %-16s %8s %7s\n", "HOSTNAME", "STATUS", "PID",
	       "POOL", "CONC", "PROCESSED", "ACTIVE", "LOAD", "UPTIME", "LAST HB");
	for (size_t i = 0; i < f->n; i++)
		print_row(&f->rows[i], now);
}

static int print_json(fleet *f)
{
	double now = wall_now();
	qsort(f->rows, f->n, sizeof *f->rows, by_hostname);
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < f->n; i++) {
		const worker_row *r = &f->rows[i];
		const json_t *o = r->last;
		json_t *up = json_object_get(o, "warren_uptime");
		json_t *row = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:f}",
			"hostname", r->hostname, "status", status_of(r, now),
			"pid", json_object_get(o, "pid"),
			"pool", json_object_get(o, "warren_pool"),
			"concurrency", json_object_get(o, "warren_concurrency"),
			"processed", json_object_get(o, "processed"),
			"active", json_object_get(o, "active"),
			"loadavg", json_object_get(o, "loadavg"),
			"sw_ident", json_object_get(o, "sw_ident"),
			"sw_ver", json_object_get(o, "sw_ver"),
			"heartbeat_age", now - r->heard);
		if (row && json_is_number(up))
			json_object_set_new(row, "uptime", json_real(json_number_value(up) + now - r->heard));
		json_array_append_new(arr, row);
	}
	char *s = arr ? json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	json_decref(arr);
	if (!s)
		return CLI_SOFTWARE;
	puts(s);
	free(s);
	return CLI_OK;
}

/* ---- the command ------------------------------------------------------------------ */

typedef struct status_opts {
	bool json, watch;
	double timeout;
} status_opts;

static void status_help(void)
{
	printf("usage: warren status [--watch] [--json] [--timeout S]\n\n"
	       "The fleet, from the workers' heartbeats: hostname, status, pid, pool and\n"
	       "concurrency, tasks processed, active now, load average, uptime, and the\n"
	       "age of the last heartbeat.\n\n"
	       "  --timeout S   listen this long before printing (default %.1f)\n"
	       "  --watch       keep listening and redraw every second until Ctrl-C\n"
	       "  --json        a JSON array (with --watch: one array per redraw)\n"
	       "Exit status 2 when no worker was heard.\n", STATUS_DEFAULT_WAIT_S);
}

static int parse_status_opts(int argc, char **argv, status_opts *o, bool *help)
{
	warren_error err = {0};
	o->timeout = STATUS_DEFAULT_WAIT_S;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			*help = true;
		else if (!strcmp(a, "--json"))
			o->json = true;
		else if (!strcmp(a, "--watch"))
			o->watch = true;
		else if (!strcmp(a, "--timeout")) {
			if (i + 1 >= argc)
				return cli_usage_error("status: option '--timeout' needs a value");
			if (producer_parse_seconds(argv[++i], a, &o->timeout, &err))
				return cli_usage_error("status: %s", err.msg);
		} else {
			return cli_usage_error("status: unknown argument '%s'", a);
		}
	}
	return 0;
}

/* Takes events for up to ms milliseconds; 0, or an exit code. */
static int listen_for(cli_monitor *m, fleet *f, long ms)
{
	double until = wall_now() + ms / 1000.0;
	for (;;) {
		long left = (long)((until - wall_now()) * 1000);
		if (left <= 0 || cli_interrupted())
			return 0;
		const schema_event *ev;
		warren_error err = {0};
		int rc = cli_monitor_next(m, (int)left, &ev, &err);
		if (rc == WARREN_ETIMEOUT)
			continue;
		if (rc)
			return cli_fail(rc, &err);
		fleet_take(f, ev);
	}
}

static int show(fleet *f, const status_opts *o)
{
	if (o->json)
		return print_json(f);
	print_table(f);
	return CLI_OK;
}

static int watch(cli_monitor *m, fleet *f, const status_opts *o)
{
	bool tty = isatty(STDOUT_FILENO);
	int code = CLI_OK;
	while (!cli_interrupted() && code == CLI_OK) {
		code = listen_for(m, f, STATUS_REFRESH_MS);
		if (code || cli_interrupted())
			break;
		char when[32];
		cli_format_time(wall_now(), when);
		if (tty)
			fputs("\033[H\033[2J", stdout);
		if (!o->json)
			printf("warren status - %s - %zu worker(s) - Ctrl-C to stop\n\n", when, f->n);
		code = show(f, o);
		fflush(stdout);
	}
	return code;
}

int cli_status_main(const cli_globals *g, int argc, char **argv)
{
	status_opts o = {0};
	bool help = false;
	int code = parse_status_opts(argc, argv, &o, &help);
	if (code)
		return code;
	if (help) {
		status_help();
		return CLI_OK;
	}
	cli_catch_interrupt();
	cli_monitor *m = NULL;
	if ((code = cli_monitor_open(g, "worker.#", &m)))
		return code;
	fleet f = {0};
	if (o.watch) {
		code = watch(m, &f, &o);
	} else {
		code = listen_for(m, &f, (long)(o.timeout * 1000));
		if (!code && f.n == 0) {
			fprintf(stderr, "warren: no worker heartbeat in %.1f s\n", o.timeout);
			code = CLI_TIMEOUT;
		} else if (!code) {
			code = show(&f, &o);
		}
	}
	fleet_release(&f);
	cli_monitor_free(m);
	return code;
}
