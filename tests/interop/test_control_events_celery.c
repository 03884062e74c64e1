/* tests/interop/test_control_events_celery.c - events and control messages
 * made by schemas/event.c and schemas/control.c, read by Celery 5.2 and
 * kombu 5.2 themselves (tests/interop/control_events_check.py run with
 * /usr/bin/python3): Celery's State must track our worker and tasks, `celery
 * inspect` must print our replies, and a kombu Node with Celery's Panel must
 * answer our requests. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "schemas/schemas.h"

#define HELPER WARREN_SOURCE_DIR "/tests/interop/control_events_check.py"

static const char T_OK[] = "11111111-0000-4000-8000-000000000001";
static const char T_FAIL[] = "11111111-0000-4000-8000-000000000002";
static const char T_RETRY[] = "11111111-0000-4000-8000-000000000003";
static const char T_REJECT[] = "11111111-0000-4000-8000-000000000004";
static const char T_REVOKE[] = "11111111-0000-4000-8000-000000000005";

/* ---- helpers ---- */

static json_t *read_json(FILE *p, char *cmd)
{
	json_error_t jerr;
	json_t *doc = json_loadf(p, 0, &jerr);
	int status = pclose(p);
	free(cmd);
	cr_assert_eq(status, 0, "%s exited with status %d (2: no Celery)", HELPER, status);
	cr_assert_not_null(doc, "helper output is not JSON: %s", jerr.text);
	return doc;
}

static char *hex(const void *data, size_t len)
{
	char *s = malloc(2 * len + 1);
	cr_assert_not_null(s);
	for (size_t i = 0; i < len; i++)
		snprintf(s + 2 * i, 3, "%02x", ((const unsigned char *)data)[i]);
	s[2 * len] = '\0';
	return s;
}

/* Feeds each event (an object, or an array = task.multi) as one message
 * body to Celery's EventReceiver + State. Steals the events. */
static json_t *celery_state(json_t **events, size_t n)
{
	char path[] = "/tmp/warren-events-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	FILE *f = fdopen(fd, "w");
	for (size_t i = 0; i < n; i++) {
		char *body = NULL;
		size_t len = 0;
		warren_error err = {0};
		cr_assert_eq(schema_event_encode(events[i], &body, &len, &err), 0, "%s", err.msg);
		fprintf(f, "%s\n", body);
		free(body);
		json_decref(events[i]);
	}
	fclose(f);
	size_t cap = strlen(HELPER) + strlen(path) + 64;
	char *cmd = malloc(cap);
	snprintf(cmd, cap, "/usr/bin/python3 %s events < %s", HELPER, path);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	json_t *doc = read_json(p, cmd);
	unlink(path);
	return doc;
}

static const schema_event_source SRC = {.hostname = "w1@warren", .pid = 777, .utcoffset = 0};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static json_t *wev(schema_event_type type, uint64_t clock, int64_t processed, int64_t active)
{
	schema_event_worker_info info = {.freq = SCHEMA_EVENT_HEARTBEAT_FREQ, .active = active,
					 .processed = processed,
					 .loadavg = {0.25, 0.5, 0.75}};
	json_t *ev = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_event_worker(&SRC, type, clock, now(), &info, &ev, &err), 0, "%s",
		     err.msg);
	return ev;
}

static json_t *tev(schema_event_type type, uint64_t clock, schema_event_task_info info)
{
	json_t *ev = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_event_task(&SRC, type, clock, now(), &info, &ev, &err), 0, "%s",
		     err.msg);
	return ev;
}

static json_t *received(const char *id, uint64_t clock)
{
	return tev(SCHEMA_EVENT_TASK_RECEIVED, clock,
		   (schema_event_task_info){.uuid = id, .name = "tasks.add", .args = "(2, 3)",
					    .kwargs = "{}", .root_id = id, .retries = 0});
}

static const char *jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

static json_t *task(json_t *doc, const char *id)
{
	json_t *t = json_object_get(json_object_get(doc, "tasks"), id);
	cr_assert_not_null(t, "Celery's State has no task %s", id);
	return t;
}

/* ---- events ---- */

Test(interop_control_events, celery_state_tracks_our_worker_and_tasks)
{
	json_t *multi = json_array();
	json_array_append_new(multi, tev(SCHEMA_EVENT_TASK_STARTED, 6,
					 (schema_event_task_info){.uuid = T_OK}));
	json_array_append_new(multi, tev(SCHEMA_EVENT_TASK_SUCCEEDED, 7,
					 (schema_event_task_info){.uuid = T_OK, .result = "5",
								  .runtime = 0.25}));
	json_t *events[] = {
		wev(SCHEMA_EVENT_WORKER_ONLINE, 1, 0, 0),
		received(T_OK, 2),
		received(T_FAIL, 3),
		received(T_RETRY, 4),
		received(T_REJECT, 5),
		multi,
		tev(SCHEMA_EVENT_TASK_FAILED, 8,
		    (schema_event_task_info){.uuid = T_FAIL, .exception = "ValueError('boom')",
					     .traceback = "Traceback...\nValueError: boom\n"}),
		tev(SCHEMA_EVENT_TASK_RETRIED, 9,
		    (schema_event_task_info){.uuid = T_RETRY, .exception = "Retry()",
					     .traceback = "tb"}),
		tev(SCHEMA_EVENT_TASK_REJECTED, 10,
		    (schema_event_task_info){.uuid = T_REJECT, .requeue = false}),
		tev(SCHEMA_EVENT_TASK_REVOKED, 11,
		    (schema_event_task_info){.uuid = T_REVOKE, .terminated = true,
					     .has_signum = true, .signum = 15}),
		wev(SCHEMA_EVENT_WORKER_HEARTBEAT, 12, 3, 1),
	};
	json_t *doc = celery_state(events, sizeof events / sizeof events[0]);

	json_t *w = json_object_get(json_object_get(doc, "workers"), "w1@warren");
	cr_assert_not_null(w, "no worker w1@warren in State");
	cr_expect(json_is_true(json_object_get(w, "alive")));
	cr_expect_str_eq(jstr(w, "status"), "ONLINE");
	cr_expect_eq(json_integer_value(json_object_get(w, "processed")), 3);
	cr_expect_eq(json_integer_value(json_object_get(w, "active")), 1);
	cr_expect_eq(json_integer_value(json_object_get(w, "pid")), 777);
	cr_expect_eq(json_real_value(json_object_get(w, "freq")), 2.0);
	cr_expect_str_eq(jstr(w, "sw_ident"), "warren");
	cr_expect_eq(json_array_size(json_object_get(doc, "alive_workers")), 1);
	cr_expect_eq(json_integer_value(json_object_get(doc, "task_count")), 4);
	cr_expect_eq(json_integer_value(json_object_get(doc, "event_count")), 12);

	json_t *t = task(doc, T_OK);
	cr_expect_str_eq(jstr(t, "state"), "SUCCESS");
	cr_expect_str_eq(jstr(t, "name"), "tasks.add");
	cr_expect_str_eq(jstr(t, "args"), "(2, 3)");
	cr_expect_str_eq(jstr(t, "result"), "5");
	cr_expect_eq(json_real_value(json_object_get(t, "runtime")), 0.25);
	cr_expect_str_eq(jstr(t, "worker"), "w1@warren");
	cr_expect_str_eq(jstr(t, "root_id"), T_OK);
	cr_expect(json_is_true(json_object_get(t, "ready")));
	cr_expect(json_is_number(json_object_get(t, "started")));

	t = task(doc, T_FAIL);
	cr_expect_str_eq(jstr(t, "state"), "FAILURE");
	cr_expect_str_eq(jstr(t, "exception"), "ValueError('boom')");
	cr_expect_str_eq(jstr(t, "traceback"), "Traceback...\nValueError: boom\n");
	cr_expect_str_eq(jstr(task(doc, T_RETRY), "state"), "RETRY");
	/* celery.states ranks REJECTED before RECEIVED, so State keeps
	 * RECEIVED after a rejection (as it does for a Celery worker) and
	 * records only the time. */
	t = task(doc, T_REJECT);
	cr_expect_str_eq(jstr(t, "state"), "RECEIVED");
	cr_expect(json_is_number(json_object_get(t, "rejected")));
	t = task(doc, T_REVOKE);
	cr_expect_str_eq(jstr(t, "state"), "REVOKED");
	cr_expect(json_is_true(json_object_get(t, "terminated")));
	cr_expect_eq(json_integer_value(json_object_get(t, "signum")), 15);
	json_t *types = json_object_get(doc, "task_types");
	cr_expect_eq(json_array_size(types), 1);
	json_decref(doc);
}

Test(interop_control_events, worker_offline_makes_our_worker_leave)
{
	json_t *events[] = {
		wev(SCHEMA_EVENT_WORKER_ONLINE, 1, 0, 0),
		wev(SCHEMA_EVENT_WORKER_OFFLINE, 2, 0, 0),
	};
	json_t *doc = celery_state(events, 2);
	cr_expect_eq(json_array_size(json_object_get(doc, "alive_workers")), 0);
	json_decref(doc);
}

/* ---- replies, as `celery inspect` sees them ---- */

typedef int (*pack_fn)(msgpack_packer *pk, warren_error *err);

static json_t *celery_reply(pack_fn pack, schema_control_format fmt)
{
	msgpack_sbuffer result, body;
	msgpack_sbuffer_init(&result);
	msgpack_sbuffer_init(&body);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &result, msgpack_sbuffer_write);
	warren_error err = {0};
	cr_assert_eq(pack(&pk, &err), 0, "%s", err.msg);
	cr_assert_eq(schema_control_reply_encode("w1@warren", result.data, result.size, fmt, &body,
						 &err), 0, "%s", err.msg);
	char *h = hex(body.data, body.size);
	size_t cap = strlen(HELPER) + strlen(h) + 128;
	char *cmd = malloc(cap);
	snprintf(cmd, cap, "/usr/bin/python3 %s reply %s %s", HELPER,
		 schema_control_content_type(fmt), h);
	free(h);
	msgpack_sbuffer_destroy(&result);
	msgpack_sbuffer_destroy(&body);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	return read_json(p, cmd);
}

static json_t *pretty(json_t *doc)
{
	json_t *n = json_object_get(json_object_get(doc, "pretty"), "w1@warren");
	cr_assert_not_null(n, "no reply from w1@warren");
	return n;
}

static int pack_pong(msgpack_packer *pk, warren_error *err)
{
	return schema_control_pack_ok(pk, "pong", err);
}

static int pack_registered(msgpack_packer *pk, warren_error *err)
{
	const char *const names[] = {"tasks.add", "tasks.mul"};
	return schema_control_pack_strings(pk, names, 2, err);
}

static int pack_revoke(msgpack_packer *pk, warren_error *err)
{
	const char *const ids[] = {T_OK};
	return schema_control_pack_revoke(pk, ids, 1, false, NULL, 0, err);
}

static int pack_error(msgpack_packer *pk, warren_error *err)
{
	return schema_control_pack_error(pk, "unknown task", err);
}

Test(interop_control_events, celery_inspect_prints_our_ping_registered_and_revoke)
{
	for (int fmt = SCHEMA_CONTROL_MSGPACK; fmt <= SCHEMA_CONTROL_JSON; fmt++) {
		json_t *doc = celery_reply(pack_pong, (schema_control_format)fmt);
		json_t *flat = json_object_get(json_object_get(doc, "flat"), "w1@warren");
		cr_expect_str_eq(jstr(flat, "ok"), "pong");
		cr_expect_str_eq(jstr(pretty(doc), "status"), "OK");
		cr_expect_str_eq(jstr(pretty(doc), "text"), "    pong");
		json_decref(doc);
	}
	json_t *doc = celery_reply(pack_registered, SCHEMA_CONTROL_MSGPACK);
	cr_expect_str_eq(jstr(pretty(doc), "text"), "* tasks.add\n* tasks.mul");
	json_decref(doc);
	doc = celery_reply(pack_revoke, SCHEMA_CONTROL_MSGPACK);
	cr_expect_str_eq(jstr(pretty(doc), "text"),
			 "    tasks 11111111-0000-4000-8000-000000000001 flagged as revoked");
	json_decref(doc);
	doc = celery_reply(pack_error, SCHEMA_CONTROL_JSON);
	cr_expect_str_eq(jstr(pretty(doc), "status"), "ERROR");
	cr_expect_str_eq(jstr(pretty(doc), "text"), "    unknown task");
	json_decref(doc);
}

static int pack_stats(msgpack_packer *pk, warren_error *err)
{
	const schema_control_task_count total[] = {{"tasks.add", 3}, {"tasks.mul", 1}};
	const int64_t procs[] = {101, 102};
	schema_control_stats st = {
		.total = total, .n_total = 2, .pid = 100, .clock = 42, .uptime = 7,
		.max_concurrency = 2, .processes = procs, .n_processes = 2,
		.put_guarded_by_semaphore = true, .soft_timeout = 0, .hard_timeout = 30,
		.broker_hostname = "127.0.0.1", .broker_userid = "guest", .broker_vhost = "/",
		.broker_port = 5672, .broker_transport = "amqp", .broker_connect_timeout = 4,
		.broker_heartbeat = 120.0, .prefetch_count = 8, .has_rusage = true,
		.utime = 0.5, .stime = 0.25, .maxrss = 1234, .nvcsw = 9,
	};
	return schema_control_pack_stats(pk, &st, err);
}

static int pack_active(msgpack_packer *pk, warren_error *err)
{
	const schema_control_task_info t = {
		.id = T_OK, .name = "tasks.add", .args_mp = "\x92\x02\x03", .args_len = 3,
		.hostname = "w1@warren", .has_time_start = true, .time_start = 1764238748.5,
		.acknowledged = true, .exchange = "", .routing_key = "celery",
		.has_priority = true, .priority = 0, .has_worker_pid = true, .worker_pid = 101,
	};
	return schema_control_pack_tasks(pk, &t, 1, err);
}

static int pack_queues(msgpack_packer *pk, warren_error *err)
{
	const schema_control_queue_info q = {
		.name = "celery", .exchange = "celery", .exchange_type = "direct",
		.exchange_durable = true, .routing_key = "celery", .durable = true,
		.queue_type = "quorum",
	};
	return schema_control_pack_queues(pk, &q, 1, err);
}

Test(interop_control_events, kombu_decodes_our_stats_active_and_queues)
{
	json_t *doc = celery_reply(pack_stats, SCHEMA_CONTROL_MSGPACK);
	json_t *st = json_object_get(json_object_get(doc, "flat"), "w1@warren");
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(st, "total"), "tasks.add")), 3);
	cr_expect_str_eq(jstr(st, "clock"), "42");
	json_t *pool = json_object_get(st, "pool");
	cr_expect_eq(json_integer_value(json_object_get(pool, "max-concurrency")), 2);
	cr_expect_eq(json_array_size(json_object_get(pool, "processes")), 2);
	cr_expect_eq(json_integer_value(json_array_get(json_object_get(pool, "timeouts"), 1)), 30);
	cr_expect_str_eq(jstr(json_object_get(st, "broker"), "transport"), "amqp");
	cr_expect_eq(json_integer_value(json_object_get(st, "prefetch_count")), 8);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(st, "rusage"), "maxrss")),
		     1234);
	/* `celery inspect stats` prints a dict without ok/error as sorted JSON */
	cr_expect(strstr(jstr(pretty(doc), "text"), "\"prefetch_count\": 8") != NULL);
	json_decref(doc);

	doc = celery_reply(pack_active, SCHEMA_CONTROL_JSON);
	json_t *list = json_object_get(json_object_get(doc, "flat"), "w1@warren");
	json_t *t = json_array_get(list, 0);
	cr_expect_str_eq(jstr(t, "id"), T_OK);
	cr_expect_str_eq(jstr(t, "type"), "tasks.add");
	cr_expect_eq(json_integer_value(json_array_get(json_object_get(t, "args"), 1)), 3);
	cr_expect_eq(json_integer_value(json_object_get(t, "worker_pid")), 101);
	cr_expect_str_eq(jstr(json_object_get(t, "delivery_info"), "routing_key"), "celery");
	json_decref(doc);

	doc = celery_reply(pack_queues, SCHEMA_CONTROL_MSGPACK);
	json_t *q = json_array_get(json_object_get(json_object_get(doc, "flat"), "w1@warren"), 0);
	cr_expect_str_eq(jstr(q, "name"), "celery");
	cr_expect_str_eq(jstr(json_object_get(q, "exchange"), "type"), "direct");
	cr_expect_str_eq(jstr(json_object_get(q, "queue_arguments"), "x-queue-type"), "quorum");
	json_decref(doc);
}

/* ---- our requests, answered by kombu's Node with Celery's Panel ---- */

static json_t *celery_node(const schema_control_request_spec *spec, schema_control_format fmt)
{
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	warren_error err = {0};
	cr_assert_eq(schema_control_request_encode(spec, fmt, &h, &b, &err), 0, "%s", err.msg);
	char *hh = hex(h.data, h.size), *bh = hex(b.data, b.size);
	size_t cap = strlen(HELPER) + strlen(hh) + strlen(bh) + 128;
	char *cmd = malloc(cap);
	snprintf(cmd, cap, "/usr/bin/python3 %s request %s %s %s", HELPER,
		 schema_control_content_type(fmt), hh, bh);
	free(hh);
	free(bh);
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	return read_json(p, cmd);
}

Test(interop_control_events, kombu_node_answers_our_ping_and_revoke)
{
	static const char ticket[] = "aaaaaaaa-0000-4000-8000-000000000001";
	static const char oid[] = "bbbbbbbb-0000-4000-8000-000000000002";
	const char *const dest[] = {"w1@host"};
	schema_control_request_spec spec = {.method = "ping", .destination = dest,
					    .n_destination = 1, .ticket = ticket,
					    .reply_routing_key = oid, .clock = 41,
					    .expires = now() + 1};
	json_t *doc = celery_node(&spec, SCHEMA_CONTROL_MSGPACK);
	json_t *r = json_array_get(json_object_get(doc, "replies"), 0);
	cr_assert_not_null(r, "the node did not reply");
	cr_expect_str_eq(jstr(r, "ticket"), ticket);
	cr_expect_str_eq(jstr(r, "routing_key"), oid);
	cr_expect_str_eq(jstr(r, "exchange"), SCHEMA_CONTROL_REPLY_EXCHANGE);
	cr_expect_str_eq(jstr(json_object_get(json_object_get(r, "data"), "w1@host"), "ok"),
			 "pong");
	cr_expect_eq(json_integer_value(json_object_get(doc, "clock")), 42, "adjusted to our clock");
	json_decref(doc);

	msgpack_sbuffer args;
	msgpack_sbuffer_init(&args);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "task_id", 7);
	msgpack_pack_str_with_body(&pk, T_OK, strlen(T_OK));
	spec = (schema_control_request_spec){.method = "revoke", .arguments_mp = args.data,
					     .arguments_len = args.size, .ticket = ticket,
					     .reply_routing_key = oid, .clock = 1};
	doc = celery_node(&spec, SCHEMA_CONTROL_JSON);
	r = json_array_get(json_object_get(doc, "replies"), 0);
	cr_assert_not_null(r);
	cr_expect_str_eq(jstr(json_object_get(json_object_get(r, "data"), "w1@host"), "ok"),
			 "tasks 11111111-0000-4000-8000-000000000001 flagged as revoked");
	json_decref(doc);
	msgpack_sbuffer_destroy(&args);

	/* Not addressed to this node: no reply. */
	const char *const other[] = {"w9@elsewhere"};
	spec = (schema_control_request_spec){.method = "ping", .destination = other,
					     .n_destination = 1, .ticket = ticket,
					     .reply_routing_key = oid};
	doc = celery_node(&spec, SCHEMA_CONTROL_MSGPACK);
	cr_expect_eq(json_array_size(json_object_get(doc, "replies")), 0);
	json_decref(doc);
}
