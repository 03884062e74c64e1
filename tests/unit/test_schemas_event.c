/* tests/unit/test_schemas_event.c - Celery events (schemas/event.c): every
 * event type built from C compared byte for byte with what Celery's own
 * EventDispatcher publishes for the same values (tests/fixtures/control/
 * events.json, made by tests/interop/gen_control_fixtures.py), the
 * Python-compatible JSON writer, routing keys, headers, utcoffset, and
 * decoding with every error. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas/schemas.h"

#define FIXTURES WARREN_SOURCE_DIR "/tests/fixtures/control/events.json"

static const char TASK_ID[] = "d5a8e3c2-1b4f-4a9e-9c3e-00000000000a";
static const double TS = 1764238748.123456;
static const char TRACEBACK[] = "Traceback (most recent call last):\n"
				"  File \"tasks.py\", line 7, in add\n"
				"    raise ValueError('boom')\n"
				"ValueError: boom\n";

static const schema_event_source SRC = {.hostname = "w1@host", .pid = 4242, .utcoffset = 0};

/* ---- helpers ---- */

/* Loaded once per test process, released by the suite's fini. */
static json_t *doc;

static void free_fixtures(void)
{
	json_decref(doc);
	doc = NULL;
}

TestSuite(schemas_event, .fini = free_fixtures);

static json_t *fixture_case(const char *name)
{
	json_error_t jerr;
	if (!doc)
		doc = json_load_file(FIXTURES, 0, &jerr);
	cr_assert_not_null(doc, "%s: %s", FIXTURES, jerr.text);
	json_t *c = json_object_get(json_object_get(doc, "cases"), name);
	cr_assert_not_null(c, "no fixture case %s", name);
	return c;
}

static const char *fixture_body(const char *name)
{
	return json_string_value(json_object_get(fixture_case(name), "body"));
}

static void raw_load(double out[3])
{
	json_error_t jerr;
	json_t *doc = json_load_file(FIXTURES, 0, &jerr);
	cr_assert_not_null(doc);
	json_t *l = json_object_get(doc, "raw_loadavg");
	for (size_t i = 0; i < 3; i++)
		out[i] = json_number_value(json_array_get(l, i));
	json_decref(doc);
}

static char *encode(json_t *ev)
{
	warren_error err = {0};
	char *out = NULL;
	size_t len = 0;
	cr_assert_eq(schema_event_encode(ev, &out, &len, &err), 0, "%s", err.msg);
	cr_assert_eq(strlen(out), len);
	return out;
}

static void expect_bytes(json_t *ev, const char *fixture)
{
	char *got = encode(ev);
	cr_expect_str_eq(got, fixture_body(fixture));
	free(got);
}

static json_t *worker_event(schema_event_type type, uint64_t clock)
{
	schema_event_worker_info info = {.freq = 2.0, .active = 1, .processed = 17,
					 .sw_ident = "warren", .sw_ver = "0.1.0",
					 .sw_sys = "Linux"};
	raw_load(info.loadavg);
	json_t *ev = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_event_worker(&SRC, type, clock, TS, &info, &ev, &err), 0, "%s",
		     err.msg);
	return ev;
}

static json_t *task_event(schema_event_type type, uint64_t clock,
			  const schema_event_task_info *info)
{
	json_t *ev = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_event_task(&SRC, type, clock, TS, info, &ev, &err), 0, "%s",
		     err.msg);
	return ev;
}

static void expect_task_bytes(schema_event_type type, uint64_t clock,
			      const schema_event_task_info *info)
{
	json_t *ev = task_event(type, clock, info);
	expect_bytes(ev, schema_event_type_name(type));
	json_decref(ev);
}

static char *real_repr(double d)
{
	json_t *arr = json_pack("[f]", d);
	char *s = encode(arr);
	json_decref(arr);
	return s;
}

/* ---- types, keys, headers ---- */

Test(schemas_event, type_names_round_trip_and_routing_keys_swap_dashes)
{
	static const char *const keys[] = {
		NULL, "worker.online", "worker.heartbeat", "worker.offline", "task.sent",
		"task.received", "task.started", "task.succeeded", "task.failed",
		"task.retried", "task.rejected", "task.revoked",
	};
	for (int t = SCHEMA_EVENT_WORKER_ONLINE; t <= SCHEMA_EVENT_TASK_REVOKED; t++) {
		const char *name = schema_event_type_name((schema_event_type)t);
		cr_assert_not_null(name);
		cr_expect_eq(schema_event_type_parse(name), (schema_event_type)t);
		char key[32];
		warren_error err = {0};
		cr_assert_eq(schema_event_routing_key(name, key, sizeof key, &err), 0);
		cr_expect_str_eq(key, keys[t]);
		cr_expect_eq(schema_event_is_task((schema_event_type)t), t >= SCHEMA_EVENT_TASK_SENT);
	}
	cr_expect_null(schema_event_type_name(SCHEMA_EVENT_UNKNOWN));
	cr_expect_null(schema_event_type_name((schema_event_type)99));
	cr_expect_eq(schema_event_type_parse("custom-thing"), SCHEMA_EVENT_UNKNOWN);
	cr_expect_eq(schema_event_type_parse(NULL), SCHEMA_EVENT_UNKNOWN);
	cr_expect_str_eq(schema_event_multi_routing_key(), "task.multi");
	cr_expect_str_eq(json_string_value(json_object_get(fixture_case("task.multi"),
							   "routing_key")), "task.multi");
}

Test(schemas_event, routing_key_rejects_empty_and_too_long)
{
	char key[8];
	warren_error err = {0};
	cr_expect_eq(schema_event_routing_key("", key, sizeof key, &err), WARREN_EINVAL);
	warren_error_clear(&err);
	cr_expect_eq(schema_event_routing_key("task-received", key, sizeof key, &err),
		     WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "event 'task-received': routing key longer than 7 bytes");
}

Test(schemas_event, publish_constants_match_what_celery_sends)
{
	json_t *c = fixture_case("task-succeeded");
	cr_expect_str_eq(json_string_value(json_object_get(c, "exchange")), SCHEMA_EVENT_EXCHANGE);
	cr_expect_str_eq(json_string_value(json_object_get(c, "content_type")),
			 SCHEMA_EVENT_CONTENT_TYPE);
	cr_expect_str_eq(json_string_value(json_object_get(c, "content_encoding")),
			 SCHEMA_EVENT_CONTENT_ENCODING);
	cr_expect_eq(json_integer_value(json_object_get(c, "delivery_mode")),
		     SCHEMA_EVENT_DELIVERY_MODE);
	cr_expect_str_eq(SCHEMA_EVENT_EXCHANGE_TYPE, "topic");
	cr_expect_eq(SCHEMA_EVENT_QUEUE_TTL_MS, 5000);
	cr_expect_eq(SCHEMA_EVENT_QUEUE_EXPIRES_MS, 60000);
}

Test(schemas_event, headers_are_a_hostname_map)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	warren_error err = {0};
	cr_assert_eq(schema_event_headers("w1@host", &sb, &err), 0, "%s", err.msg);
	/* msgpack.packb({'hostname': 'w1@host'}) */
	static const char want[] = "\x81\xa8hostname\xa7w1@host";
	cr_assert_eq(sb.size, sizeof want - 1);
	cr_expect_eq(memcmp(sb.data, want, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
	cr_expect_eq(schema_event_headers(NULL, &sb, &err), WARREN_EINVAL);
}

Test(schemas_event, monitor_queue_is_celeryev_dot_uuid)
{
	char name[64];
	warren_error err = {0};
	cr_assert_eq(schema_event_monitor_queue_name(name, &err), 0, "%s", err.msg);
	cr_expect_eq(strlen(name), strlen("celeryev.") + 36);
	cr_expect_eq(strncmp(name, "celeryev.", 9), 0);
}

Test(schemas_event, utcoffset_is_hours_west_floored_like_python)
{
	const int64_t january = 1767225600; /* 2026-01-01T00:00:00Z */
	const int64_t july = 1782864000;    /* 2026-07-01T00:00:00Z */
	setenv("TZ", "UTC", 1);
	cr_expect_eq(schema_event_utcoffset(january), 0);
	setenv("TZ", "Europe/Paris", 1);
	cr_expect_eq(schema_event_utcoffset(january), -1);
	cr_expect_eq(schema_event_utcoffset(july), -2);
	setenv("TZ", "America/New_York", 1);
	cr_expect_eq(schema_event_utcoffset(january), 5);
	cr_expect_eq(schema_event_utcoffset(july), 4);
	setenv("TZ", "Asia/Kolkata", 1); /* -19800 // 3600 == -6 */
	cr_expect_eq(schema_event_utcoffset(january), -6);
}

/* ---- building: every type against Celery's bytes ---- */

Test(schemas_event, worker_events_equal_celery_bytes)
{
	json_t *ev = worker_event(SCHEMA_EVENT_WORKER_ONLINE, 1);
	expect_bytes(ev, "worker-online");
	json_decref(ev);
	ev = worker_event(SCHEMA_EVENT_WORKER_HEARTBEAT, 2);
	expect_bytes(ev, "worker-heartbeat");
	json_decref(ev);
	ev = worker_event(SCHEMA_EVENT_WORKER_OFFLINE, 3);
	expect_bytes(ev, "worker-offline");
	json_decref(ev);
}

Test(schemas_event, worker_event_defaults_name_warren_and_the_system)
{
	schema_event_worker_info info = {.freq = SCHEMA_EVENT_HEARTBEAT_FREQ};
	json_t *ev = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_event_worker(&SRC, SCHEMA_EVENT_WORKER_HEARTBEAT, 9, TS, &info,
					 &ev, &err), 0);
	cr_expect_str_eq(json_string_value(json_object_get(ev, "sw_ident")), "warren");
	cr_expect_str_eq(json_string_value(json_object_get(ev, "sw_sys")), "Linux");
	cr_expect(json_is_string(json_object_get(ev, "sw_ver")));
	cr_expect_eq(json_array_size(json_object_get(ev, "loadavg")), 3);
	json_decref(ev);
}

Test(schemas_event, task_received_equals_celery_bytes)
{
	schema_event_task_info t = {
		.uuid = TASK_ID, .name = "tasks.add", .args = "(2, 3)",
		.kwargs = "{'z': 'caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80'}",
		.root_id = TASK_ID, .retries = 0,
		.expires = "2026-11-27T10:19:08.323802+00:00",
	};
	expect_task_bytes(SCHEMA_EVENT_TASK_RECEIVED, 4, &t);
}

Test(schemas_event, task_started_and_succeeded_equal_celery_bytes)
{
	schema_event_task_info t = {.uuid = TASK_ID};
	expect_task_bytes(SCHEMA_EVENT_TASK_STARTED, 5, &t);
	t.result = "5";
	t.runtime = 0.012345;
	expect_task_bytes(SCHEMA_EVENT_TASK_SUCCEEDED, 6, &t);
}

Test(schemas_event, task_failed_and_retried_equal_celery_bytes)
{
	schema_event_task_info t = {.uuid = TASK_ID, .exception = "ValueError('boom')",
				    .traceback = TRACEBACK};
	expect_task_bytes(SCHEMA_EVENT_TASK_FAILED, 7, &t);
	t.exception = "Retry('Retry in 10s')";
	expect_task_bytes(SCHEMA_EVENT_TASK_RETRIED, 8, &t);
}

Test(schemas_event, task_rejected_revoked_and_sent_equal_celery_bytes)
{
	schema_event_task_info t = {.uuid = TASK_ID, .requeue = false};
	expect_task_bytes(SCHEMA_EVENT_TASK_REJECTED, 9, &t);
	t = (schema_event_task_info){.uuid = TASK_ID, .terminated = true, .has_signum = true,
				     .signum = 15, .expired = false};
	expect_task_bytes(SCHEMA_EVENT_TASK_REVOKED, 10, &t);
	t = (schema_event_task_info){
		.uuid = TASK_ID, .root_id = TASK_ID, .name = "tasks.add", .args = "(2, 3)",
		.kwargs = "{}", .retries = 1, .eta = "2026-11-27T10:19:18.323802+00:00",
		.queue = "celery", .exchange = "", .routing_key = "celery",
	};
	expect_task_bytes(SCHEMA_EVENT_TASK_SENT, 11, &t);
}

Test(schemas_event, revoked_without_signum_sends_null)
{
	schema_event_task_info t = {.uuid = TASK_ID, .expired = true};
	json_t *ev = task_event(SCHEMA_EVENT_TASK_REVOKED, 1, &t);
	cr_expect(json_is_null(json_object_get(ev, "signum")));
	cr_expect(json_is_true(json_object_get(ev, "expired")));
	cr_expect(json_is_false(json_object_get(ev, "terminated")));
	json_decref(ev);
}

Test(schemas_event, buffered_task_events_make_the_task_multi_list)
{
	json_t *list = json_array();
	schema_event_task_info t = {.uuid = TASK_ID};
	json_array_append_new(list, task_event(SCHEMA_EVENT_TASK_STARTED, 101, &t));
	t.result = "{'a': [1, 2.5, None, True]}";
	t.runtime = 1e-05;
	json_array_append_new(list, task_event(SCHEMA_EVENT_TASK_SUCCEEDED, 102, &t));
	expect_bytes(list, "task.multi");
	json_decref(list);
}

Test(schemas_event, builders_refuse_wrong_types_and_missing_fields)
{
	json_t *ev = NULL;
	warren_error err = {0};
	schema_event_worker_info w = {0};
	schema_event_task_info t = {.uuid = TASK_ID};
	cr_expect_eq(schema_event_worker(&SRC, SCHEMA_EVENT_TASK_STARTED, 1, TS, &w, &ev, &err),
		     WARREN_EINVAL);
	warren_error_clear(&err);
	cr_expect_eq(schema_event_task(&SRC, SCHEMA_EVENT_WORKER_ONLINE, 1, TS, &t, &ev, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "event 'worker-online': not a task event, or no hostname or uuid");
	warren_error_clear(&err);
	t.uuid = NULL;
	cr_expect_eq(schema_event_task(&SRC, SCHEMA_EVENT_TASK_STARTED, 1, TS, &t, &ev, &err),
		     WARREN_EINVAL);
	schema_event_source nohost = {.pid = 1};
	t.uuid = TASK_ID;
	cr_expect_eq(schema_event_task(&nohost, SCHEMA_EVENT_TASK_STARTED, 1, TS, &t, &ev, NULL),
		     WARREN_EINVAL);
	cr_expect_null(ev);
}

/* ---- the JSON writer ---- */

Test(schemas_event, reals_print_as_python_repr)
{
	static const struct { double d; const char *want; } cases[] = {
		{0.0, "[0.0]"}, {-0.0, "[-0.0]"}, {1.0, "[1.0]"}, {0.1, "[0.1]"},
		{0.57, "[0.57]"}, {2.5, "[2.5]"}, {1e-05, "[1e-05]"}, {0.0001, "[0.0001]"},
		{1.5e-07, "[1.5e-07]"}, {1e16, "[1e+16]"}, {1234567890123456.0, "[1234567890123456.0]"},
		{1.2345e22, "[1.2345e+22]"}, {5e-324, "[5e-324]"},
		{1.7976931348623157e308, "[1.7976931348623157e+308]"},
		{1764238748.123456, "[1764238748.123456]"}, {-12.5, "[-12.5]"},
		{0.30000000000000004, "[0.30000000000000004]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = real_repr(cases[i].d);
		cr_expect_str_eq(s, cases[i].want, "%.17g", cases[i].d);
		free(s);
	}
}

Test(schemas_event, strings_escape_as_python_ensure_ascii)
{
	json_t *obj = json_pack("{s:s, s:s, s:s}", "a", "q\"b\\s/\n\r\t\b\f",
				"c\x01", "\x01\x1f\x7f", "u", "\xc3\xa9\xf0\x9f\x98\x80");
	char *s = encode(obj);
	cr_expect_str_eq(s, "{\"a\": \"q\\\"b\\\\s/\\n\\r\\t\\b\\f\", "
			 "\"c\\u0001\": \"\\u0001\\u001f\\u007f\", "
			 "\"u\": \"\\u00e9\\ud83d\\ude00\"}");
	free(s);
	json_decref(obj);
}

Test(schemas_event, invalid_utf8_in_a_field_becomes_a_replacement_char)
{
	schema_event_task_info t = {.uuid = TASK_ID, .exception = "caf\xe9 \xff!",
				    .traceback = "ok"};
	json_t *ev = task_event(SCHEMA_EVENT_TASK_FAILED, 1, &t);
	cr_expect_str_eq(json_string_value(json_object_get(ev, "exception")),
			 "caf\xef\xbf\xbd \xef\xbf\xbd!");
	json_decref(ev);
}

Test(schemas_event, encode_writes_nested_values_and_rejects_scalars)
{
	json_t *v = json_pack("{s:[i,n,b,b,{}], s:{}, s:[]}", "x", -3, 1, 0, "y", "z");
	char *s = encode(v);
	cr_expect_str_eq(s, "{\"x\": [-3, null, true, false, {}], \"y\": {}, \"z\": []}");
	free(s);
	json_decref(v);
	json_t *num = json_integer(1);
	char *out = NULL;
	size_t len = 0;
	warren_error err = {0};
	cr_expect_eq(schema_event_encode(num, &out, &len, &err), WARREN_EINVAL);
	cr_expect_eq(schema_event_encode(NULL, &out, &len, &err), WARREN_EINVAL);
	json_decref(num);
}

/* ---- decoding ---- */

static int decode(const char *ct, const char *body, const schema_limits *lim,
		  schema_event_list *out, warren_error *err)
{
	return schema_event_decode(ct, body, strlen(body), lim, out, err);
}

Test(schemas_event, decodes_a_celery_event_with_every_common_field)
{
	schema_event_list l;
	warren_error err = {0};
	cr_assert_eq(decode(SCHEMA_EVENT_CONTENT_TYPE, fixture_body("task-received"), NULL, &l,
			    &err), 0, "%s", err.msg);
	cr_assert_eq(l.n, 1);
	const schema_event *ev = &l.events[0];
	cr_expect_eq(ev->type, SCHEMA_EVENT_TASK_RECEIVED);
	cr_expect_str_eq(ev->type_name, "task-received");
	cr_expect_str_eq(ev->hostname, "w1@host");
	cr_expect_str_eq(ev->uuid, TASK_ID);
	cr_expect(ev->has_timestamp);
	cr_expect_eq(ev->timestamp, TS);
	cr_expect(ev->has_clock);
	cr_expect_eq(ev->clock, 4);
	cr_expect(ev->has_pid);
	cr_expect_eq(ev->pid, 4242);
	cr_expect_str_eq(schema_event_get_str(ev, "name"), "tasks.add");
	cr_expect_str_eq(schema_event_get_str(ev, "kwargs"),
			 "{'z': 'caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80'}");
	cr_expect_null(schema_event_get_str(ev, "parent_id"));
	cr_expect_eq(schema_event_get_num(ev, "retries", -1), 0);
	cr_expect_eq(schema_event_get_num(ev, "nope", -1), -1);
	schema_event_list_release(&l);
	schema_event_list_release(&l); /* twice is fine */
}

Test(schemas_event, decodes_a_task_multi_list_in_order)
{
	schema_event_list l;
	warren_error err = {0};
	cr_assert_eq(decode(NULL, fixture_body("task.multi"), NULL, &l, &err), 0, "%s", err.msg);
	cr_assert_eq(l.n, 2);
	cr_expect_eq(l.events[0].type, SCHEMA_EVENT_TASK_STARTED);
	cr_expect_eq(l.events[1].type, SCHEMA_EVENT_TASK_SUCCEEDED);
	cr_expect_eq(l.events[1].clock, 102);
	cr_expect_eq(schema_event_get_num(&l.events[1], "runtime", 0), 1e-05);
	schema_event_list_release(&l);
}

Test(schemas_event, keeps_unknown_types_and_fields)
{
	schema_event_list l;
	warren_error err = {0};
	cr_assert_eq(decode(NULL, "{\"type\": \"custom-ping\", \"extra\": [1], \"clock\": 2.0}",
			    NULL, &l, &err), 0, "%s", err.msg);
	cr_expect_eq(l.events[0].type, SCHEMA_EVENT_UNKNOWN);
	cr_expect_str_eq(l.events[0].type_name, "custom-ping");
	cr_expect_null(l.events[0].hostname);
	cr_expect(!l.events[0].has_timestamp);
	cr_expect(l.events[0].has_clock);
	cr_expect_eq(l.events[0].clock, 2);
	cr_expect(json_is_array(json_object_get(l.events[0].object, "extra")));
	schema_event_list_release(&l);
}

Test(schemas_event, decode_errors_say_what_is_wrong)
{
	schema_event_list l;
	warren_error err = {0};
	cr_expect_eq(decode("application/x-msgpack", "{}", NULL, &l, &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "event: content type 'application/x-msgpack', expected "
			 "'application/json'");
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "{\"type\": ", NULL, &l, &err), WARREN_EDECODE);
	cr_expect(strncmp(err.msg, "event: not JSON: ", 17) == 0, "%s", err.msg);
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "[{\"type\": \"task-started\"}, 3]", NULL, &l, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "event [1]: not an object with a string \"type\"");
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "{\"type\": 1}", NULL, &l, &err), WARREN_EDECODE);
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "\"task-started\"", NULL, &l, &err), WARREN_EDECODE);
	cr_expect_null(l.events);
}

Test(schemas_event, decode_enforces_limits)
{
	schema_limits lim;
	schema_limits_default(&lim);
	schema_event_list l;
	warren_error err = {0};
	lim.max_body = 10;
	cr_expect_eq(decode(NULL, "{\"type\": \"task-started\"}", &lim, &l, &err), WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "event: body of 24 bytes, limit 10");
	schema_limits_default(&lim);
	lim.max_elems = 2;
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "[{\"type\": \"a\"}, {\"type\": \"b\"}, {\"type\": \"c\"}]",
			    &lim, &l, &err), WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "event: 3 elements, limit 2");
	schema_limits_default(&lim);
	lim.max_depth = 2;
	warren_error_clear(&err);
	cr_expect_eq(decode(NULL, "{\"type\": \"a\", \"x\": [[[1]]]}", &lim, &l, &err),
		     WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "event: nesting deeper than 2");
}
