/* producer/cli_events.c - `warren events`: Celery's monitoring events, live,
 * one line each (or the JSON), and the monitor both it and `warren status`
 * listen through.
 *
 * The monitor is what Celery's EventReceiver declares (events/receiver.py):
 * a queue celeryev.<uuid4>, not durable, auto_delete, x-message-ttl 5 s and
 * x-expires 60 s, bound to the celeryev topic exchange, consumed with
 * no_ack. A *.multi message (the task events a worker buffered) is a list;
 * each of its events is handed out on its own.
 *
 * SIGINT and SIGTERM set a flag (no SA_RESTART) that the receive loop checks
 * between waits of at most CLI_MONITOR_TICK_MS, so Ctrl-C ends cleanly: the
 * connection is closed and the auto_delete queue goes with it.
 */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "producer/cli.h"
#include "producer/producer.h"
#include "schemas/schemas.h"

#define CLI_MONITOR_TICK_MS 200
#define NAME_CACHE 4096 /* uuid -> task name, for events that carry no name */

/* ---- the monitor -------------------------------------------------------------- */

struct cli_monitor {
	warren_client *client;
	broker_conn *conn;     /* the client's */
	char queue[64];
	schema_event_list list; /* the message being handed out */
	size_t next;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

void cli_catch_interrupt(void)
{
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool cli_interrupted(void)
{
	return interrupted != 0;
}

static int declare_monitor(cli_monitor *m, const char *binding, warren_error *err)
{
	int rc = schema_event_monitor_queue_name(m->queue, err);
	if (rc)
		return rc;
	broker_exchange x = {.name = SCHEMA_EVENT_EXCHANGE, .type = BROKER_EXCHANGE_TOPIC,
			     .durable = true};
	broker_queue q;
	broker_queue_init(&q, m->queue);
	q.durable = false;
	q.auto_delete = true;
	q.message_ttl_ms = SCHEMA_EVENT_QUEUE_TTL_MS;
	q.expires_ms = SCHEMA_EVENT_QUEUE_EXPIRES_MS;
	broker_binding b = {.queue = m->queue, .exchange = SCHEMA_EVENT_EXCHANGE,
			    .routing_key = binding};
	broker_topology t = {&x, 1, &q, 1, &b, 1};
	rc = broker_declare(m->conn, &t, err);
	if (rc == 0)
		rc = broker_consume(m->conn, m->queue, 0, true, NULL, 0, err);
	return rc;
}

int cli_monitor_open(const cli_globals *g, const char *binding, cli_monitor **out)
{
	cli_monitor *m = calloc(1, sizeof *m);
	if (!m) {
		fprintf(stderr, "warren: out of memory\n");
		return CLI_SOFTWARE;
	}
	int code = cli_client(g, &m->client);
	if (code) {
		free(m);
		return code;
	}
	warren_error err = {0};
	int rc = producer_broker(m->client, &err);
	if (rc == 0) {
		m->conn = m->client->conn;
		rc = declare_monitor(m, binding, &err);
	}
	if (rc) {
		cli_monitor_free(m);
		return cli_fail(rc, &err);
	}
	*out = m;
	return 0;
}

void cli_monitor_free(cli_monitor *m)
{
	if (!m)
		return;
	schema_event_list_release(&m->list);
	warren_client_free(m->client);
	free(m);
}

/* Decodes one delivery into m->list; a message that is not an event is
 * reported on stderr and skipped. */
static void take_message(cli_monitor *m, broker_message *msg)
{
	warren_error err = {0};
	schema_event_list_release(&m->list);
	m->next = 0;
	if (schema_event_decode(msg->content_type, msg->body, msg->body_len, NULL, &m->list,
				&err) != 0)
		fprintf(stderr, "warren: skipped a message on %s: %s\n", SCHEMA_EVENT_EXCHANGE,
			err.msg);
}

int cli_monitor_next(cli_monitor *m, int timeout_ms, const schema_event **out, warren_error *err)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (m->next < m->list.n) {
			*out = &m->list.events[m->next++];
			return 0;
		}
		if (interrupted)
			return warren_error_set(err, WARREN_ETIMEOUT, "interrupted");
		struct timespec t1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		long left = timeout_ms < 0 ? CLI_MONITOR_TICK_MS : timeout_ms - spent;
		if (left <= 0)
			return warren_error_set(err, WARREN_ETIMEOUT, "no event in time");
		broker_event ev = {0};
		int rc = broker_receive(m->conn, left < CLI_MONITOR_TICK_MS ? (int)left
									   : CLI_MONITOR_TICK_MS,
					&ev, err);
		if (rc == WARREN_ETIMEOUT)
			continue;
		if (rc)
			return rc;
		if (ev.type == BROKER_EVENT_MESSAGE)
			take_message(m, ev.msg);
		broker_event_release(&ev);
	}
}

/* ---- printing ------------------------------------------------------------------- */

typedef struct name_cache {
	char uuid[NAME_CACHE][40];
	char *name[NAME_CACHE];
	size_t next;
} name_cache;

static void cache_put(name_cache *c, const char *uuid, const char *name)
{
	size_t i = c->next++ % NAME_CACHE;
	free(c->name[i]);
	snprintf(c->uuid[i], sizeof c->uuid[i], "%s", uuid);
	c->name[i] = strdup(name);
}

static const char *cache_get(const name_cache *c, const char *uuid)
{
	for (size_t i = 0; i < NAME_CACHE; i++)
		if (c->name[i] && strcmp(c->uuid[i], uuid) == 0)
			return c->name[i];
	return "?";
}

static void cache_free(name_cache *c)
{
	for (size_t i = 0; i < NAME_CACHE; i++)
		free(c->name[i]);
}

/* "2026-05-01 10:00:00.123" in local time. */
void cli_format_time(double epoch, char buf[32])
{
	time_t s = (time_t)floor(epoch);
	struct tm tm;
	localtime_r(&s, &tm);
	size_t n = strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03d", (int)((epoch - floor(epoch)) * 1000));
}

static void print_field(const schema_event *ev, const char *key)
{
	json_t *v = json_object_get(ev->object, key);
	if (!v || json_is_null(v))
		return;
	if (json_is_real(v)) {
		printf(" %s=%.6g", key, json_real_value(v));
		return;
	}
	if (json_is_string(v)) {
		printf(" %s=%s", key, json_string_value(v));
		return;
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
	printf(" %s=%s", key, s ? s : "?");
	free(s);
}

/* The fields worth a glance for each type (state-specific, as `celery
 * events --dump` prints them, minus the bookkeeping). */
static const char *const *fields_of(schema_event_type t)
{
	static const char *const received[] = {"args", "kwargs", "retries", "eta", NULL};
	static const char *const succeeded[] = {"result", "runtime", NULL};
	static const char *const failed[] = {"exception", NULL};
	static const char *const rejected[] = {"requeue", NULL};
	static const char *const revoked[] = {"terminated", "signum", "expired", NULL};
	static const char *const worker[] = {"active", "processed", "loadavg", "freq", NULL};
	static const char *const none[] = {NULL};
	switch (t) {
	case SCHEMA_EVENT_TASK_RECEIVED: return received;
	case SCHEMA_EVENT_TASK_SUCCEEDED: return succeeded;
	case SCHEMA_EVENT_TASK_FAILED:
	case SCHEMA_EVENT_TASK_RETRIED: return failed;
	case SCHEMA_EVENT_TASK_REJECTED: return rejected;
	case SCHEMA_EVENT_TASK_REVOKED: return revoked;
	case SCHEMA_EVENT_WORKER_ONLINE:
	case SCHEMA_EVENT_WORKER_HEARTBEAT:
	case SCHEMA_EVENT_WORKER_OFFLINE: return worker;
	default: return none;
	}
}

static void print_line(const schema_event *ev, name_cache *names)
{
	char when[32];
	cli_format_time(ev->has_timestamp ? ev->timestamp : (double)time(NULL), when);
	printf("%s %-16s %s", when, ev->type_name, ev->hostname ? ev->hostname : "?");
	if (ev->uuid) {
		const char *name = schema_event_get_str(ev, "name");
		if (name)
			cache_put(names, ev->uuid, name);
		printf(" %s[%s]", name ? name : cache_get(names, ev->uuid), ev->uuid);
	}
	for (const char *const *k = fields_of(ev->type); *k; k++)
		print_field(ev, *k);
	putchar('\n');
}

static void print_json(const schema_event *ev)
{
	char *s = json_dumps(ev->object, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s)
		puts(s);
	free(s);
}

/* ---- the command ------------------------------------------------------------------ */

typedef struct events_opts {
	bool json;
	long count;      /* 0: no limit */
	double timeout;  /* seconds, 0: none */
} events_opts;

static void events_help(void)
{
	printf("usage: warren events [--json] [--count N] [--timeout S]\n\n"
	       "Prints Celery's monitoring events (exchange %s) as they come: one line\n"
	       "each (time, type, worker, task, fields), or each event's JSON with --json.\n"
	       "Workers send task events with -E; worker heartbeats always.\n\n"
	       "  --json        one JSON object per line\n"
	       "  --count N     stop after N events (exit 2 if the timeout comes first)\n"
	       "  --timeout S   stop after S seconds\n"
	       "Ctrl-C stops.\n", SCHEMA_EVENT_EXCHANGE);
}

static int parse_events_opts(int argc, char **argv, events_opts *o, bool *help)
{
	warren_error err = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			*help = true;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--count") || !strcmp(a, "--timeout")) {
			if (i + 1 >= argc)
				return cli_usage_error("events: option '%s' needs a value", a);
			double v;
			if (producer_parse_seconds(argv[++i], a, &v, &err))
				return cli_usage_error("events: %s", err.msg);
			if (a[2] == 'c')
				o->count = (long)v;
			else
				o->timeout = v;
		} else {
			return cli_usage_error("events: unknown argument '%s'", a);
		}
	}
	return 0;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_events(cli_monitor *m, const events_opts *o)
{
	name_cache *names = calloc(1, sizeof *names);
	if (!names)
		return CLI_SOFTWARE;
	double deadline = o->timeout > 0 ? mono_now() + o->timeout : 0;
	long seen = 0;
	int code = CLI_OK;
	while ((!o->count || seen < o->count) && !cli_interrupted()) {
		int wait = deadline ? (int)((deadline - mono_now()) * 1000) : -1;
		if (deadline && wait <= 0) {
			code = o->count ? CLI_TIMEOUT : CLI_OK;
			break;
		}
		const schema_event *ev;
		warren_error err = {0};
		int rc = cli_monitor_next(m, wait, &ev, &err);
		if (rc == WARREN_ETIMEOUT && (cli_interrupted() || deadline))
			continue; /* the loop's checks end it */
		if (rc) {
			code = cli_fail(rc, &err);
			break;
		}
		if (o->json)
			print_json(ev);
		else
			print_line(ev, names);
		fflush(stdout);
		seen++;
	}
	if (cli_interrupted())
		code = CLI_OK;
	cache_free(names);
	free(names);
	return code;
}

int cli_events_main(const cli_globals *g, int argc, char **argv)
{
	events_opts o = {0};
	bool help = false;
	int code = parse_events_opts(argc, argv, &o, &help);
	if (code)
		return code;
	if (help) {
		events_help();
		return CLI_OK;
	}
	cli_catch_interrupt();
	cli_monitor *m = NULL;
	if ((code = cli_monitor_open(g, SCHEMA_EVENT_MONITOR_BINDING, &m)))
		return code;
	code = run_events(m, &o);
	cli_monitor_free(m);
	return code;
}
