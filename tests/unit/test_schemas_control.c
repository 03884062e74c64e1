/* tests/unit/test_schemas_control.c - remote control (schemas/control.c):
 * requests and replies made by real Celery/kombu (tests/fixtures/control/,
 * from tests/interop/gen_control_fixtures.py) decoded with every field
 * checked, the same bytes produced by our encoders, the reply shapes, node
 * matching, names, and every decoding error. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/schemas.h"

#define FIXTURE_DIR WARREN_SOURCE_DIR "/tests/fixtures/control/"

static const char TICKET[] = "f0e1d2c3-b4a5-4697-8899-aabbccddeeff";
static const char OID[] = "6c2b1a70-3d4e-3f51-9a6b-7c8d9e0f1a2b";
static const char TASK_ID[] = "d5a8e3c2-1b4f-4a9e-9c3e-00000000000a";
static const double NOW = 1764238748.5;

/* ---- helpers ---- */

typedef struct bytes {
	unsigned char *data;
	size_t len;
} bytes;

typedef struct fixture {
	json_t *doc;
	bytes headers, body;
	const char *content_type;
} fixture;

static bytes unhex(const char *hex)
{
	cr_assert_not_null(hex);
	bytes b = {malloc(strlen(hex) / 2 + 1), strlen(hex) / 2};
	for (size_t i = 0; i < b.len; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		b.data[i] = (unsigned char)v;
	}
	return b;
}

static fixture load(const char *name)
{
	char path[512];
	json_error_t jerr;
	snprintf(path, sizeof path, FIXTURE_DIR "%s.json", name);
	fixture f = {0};
	f.doc = json_load_file(path, 0, &jerr);
	cr_assert_not_null(f.doc, "%s: %s", path, jerr.text);
	f.headers = unhex(json_string_value(json_object_get(f.doc, "headers_msgpack")));
	f.body = unhex(json_string_value(json_object_get(f.doc, "body")));
	f.content_type = json_string_value(json_object_get(f.doc, "content_type"));
	return f;
}

static void unload(fixture *f)
{
	free(f->headers.data);
	free(f->body.data);
	json_decref(f->doc);
}

static const char *fstr(const fixture *f, const char *key)
{
	return json_string_value(json_object_get(f->doc, key));
}

static schema_control_request *decode_request(const char *name)
{
	fixture f = load(name);
	schema_control_request *req = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_control_request_decode(f.content_type, f.headers.data, f.headers.len,
						   f.body.data, f.body.len, NULL, &req, &err),
		     0, "%s: %s", name, err.msg);
	unload(&f);
	return req;
}

static schema_control_reply *decode_reply(const char *name)
{
	fixture f = load(name);
	schema_control_reply *r = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_control_reply_decode(f.content_type, f.headers.data, f.headers.len,
						 f.body.data, f.body.len, NULL, &r, &err),
		     0, "%s: %s", name, err.msg);
	unload(&f);
	return r;
}

static bool str_is(const msgpack_object *o, const char *s)
{
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	       memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static void expect_same(const void *got, size_t got_len, const bytes *want, const char *what)
{
	cr_expect_eq(got_len, want->len, "%s: %zu bytes, want %zu", what, got_len, want->len);
	if (got_len == want->len)
		cr_expect_eq(memcmp(got, want->data, got_len), 0, "%s: bytes differ", what);
}

/* The msgpack reply body a fixture holds vs one we build with `pack`. */
typedef int (*pack_fn)(msgpack_packer *pk, warren_error *err);

static void expect_reply_bytes(const char *name, pack_fn pack)
{
	fixture f = load(name);
	msgpack_sbuffer result, body, headers;
	msgpack_sbuffer_init(&result);
	msgpack_sbuffer_init(&body);
	msgpack_sbuffer_init(&headers);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &result, msgpack_sbuffer_write);
	warren_error err = {0};
	cr_assert_eq(pack(&pk, &err), 0, "%s", err.msg);
	schema_control_format fmt;
	cr_assert_eq(schema_control_format_of(f.content_type, &fmt, &err), 0);
	cr_assert_eq(schema_control_reply_encode("w1@host", result.data, result.size, fmt, &body,
						 &err), 0, "%s", err.msg);
	expect_same(body.data, body.size, &f.body, name);
	json_t *h = json_object_get(f.doc, "headers");
	cr_assert_eq(schema_control_reply_headers(
			     TICKET, (uint64_t)json_integer_value(json_object_get(h, "clock")),
			     &headers, &err), 0);
	expect_same(headers.data, headers.size, &f.headers, "reply headers");
	cr_expect_str_eq(fstr(&f, "exchange"), SCHEMA_CONTROL_REPLY_EXCHANGE);
	cr_expect_str_eq(fstr(&f, "routing_key"), OID);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(f.doc, "properties"),
							"delivery_mode")),
		     SCHEMA_CONTROL_REPLY_DELIVERY_MODE);
	msgpack_sbuffer_destroy(&result);
	msgpack_sbuffer_destroy(&body);
	msgpack_sbuffer_destroy(&headers);
	unload(&f);
}

/* ---- names ---- */

Test(schemas_control, names_follow_kombu_mailbox)
{
	char buf[128];
	warren_error err = {0};
	cr_assert_eq(schema_control_queue_name("w1@host", buf, sizeof buf, &err), 0);
	cr_expect_str_eq(buf, "w1@host.celery.pidbox");
	cr_assert_eq(schema_control_reply_queue_name(OID, buf, sizeof buf, &err), 0);
	cr_expect_str_eq(buf, "6c2b1a70-3d4e-3f51-9a6b-7c8d9e0f1a2b.reply.celery.pidbox");
	cr_expect_eq(schema_control_queue_name("", buf, sizeof buf, &err), WARREN_EINVAL);
	warren_error_clear(&err);
	cr_expect_eq(schema_control_queue_name("w1@host", buf, 10, &err), WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "control: name 'w1@host.celery.pidbox' longer than 9");
	cr_expect_str_eq(SCHEMA_CONTROL_EXCHANGE, "celery.pidbox");
	cr_expect_eq(SCHEMA_CONTROL_QUEUE_EXPIRES_MS, 10000);
	cr_expect_eq(SCHEMA_CONTROL_QUEUE_TTL_MS, 300000);
}

Test(schemas_control, formats_by_content_type)
{
	schema_control_format fmt = SCHEMA_CONTROL_JSON;
	warren_error err = {0};
	cr_expect_eq(schema_control_format_of("application/x-msgpack", &fmt, &err), 0);
	cr_expect_eq(fmt, SCHEMA_CONTROL_MSGPACK);
	cr_expect_eq(schema_control_format_of("application/json", &fmt, &err), 0);
	cr_expect_eq(fmt, SCHEMA_CONTROL_JSON);
	cr_expect_eq(schema_control_format_of(NULL, &fmt, &err), 0);
	cr_expect_eq(fmt, SCHEMA_CONTROL_MSGPACK);
	cr_expect_eq(schema_control_format_of("application/x-python-serialize", &fmt, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "control: content type 'application/x-python-serialize' is "
			 "not msgpack or json");
	cr_expect_str_eq(schema_control_content_type(SCHEMA_CONTROL_JSON), "application/json");
	cr_expect_str_eq(schema_control_content_encoding(SCHEMA_CONTROL_JSON), "utf-8");
	cr_expect_str_eq(schema_control_content_type(SCHEMA_CONTROL_MSGPACK),
			 "application/x-msgpack");
	cr_expect_str_eq(schema_control_content_encoding(SCHEMA_CONTROL_MSGPACK), "binary");
}

/* ---- Celery's requests decoded ---- */

Test(schemas_control, decodes_celery_inspect_ping)
{
	schema_control_request *req = decode_request("ping_request");
	cr_expect_str_eq(req->method, "ping");
	cr_expect_eq(req->arguments.type, MSGPACK_OBJECT_MAP);
	cr_expect_eq(req->arguments.via.map.size, 0);
	cr_expect_null(req->destination);
	cr_expect_eq(req->n_destination, 0);
	cr_expect_null(req->pattern);
	cr_expect_null(req->matcher);
	cr_expect_str_eq(req->ticket, TICKET);
	cr_expect_str_eq(req->reply_exchange, "reply.celery.pidbox");
	cr_expect_str_eq(req->reply_routing_key, OID);
	cr_expect(req->has_clock);
	cr_expect_eq(req->clock, 1);
	cr_expect_eq(req->expires, NOW + 1.0);
	cr_expect_eq(req->format, SCHEMA_CONTROL_MSGPACK);
	cr_expect(schema_control_request_is_for(req, "anyone@anywhere"));
	cr_expect(!schema_control_request_expired(req, NOW));
	cr_expect(schema_control_request_expired(req, NOW + 2));
	schema_control_request_free(req);
}

Test(schemas_control, decodes_a_destination_list)
{
	schema_control_request *req = decode_request("ping_request_dest");
	cr_assert_eq(req->n_destination, 2);
	cr_expect_str_eq(req->destination[0], "w1@host");
	cr_expect_str_eq(req->destination[1], "w2@host");
	cr_expect_eq(req->expires, NOW + 2.5);
	cr_expect(schema_control_request_is_for(req, "w1@host"));
	cr_expect(schema_control_request_is_for(req, "w2@host"));
	cr_expect(!schema_control_request_is_for(req, "w3@host"));
	schema_control_request_free(req);
}

Test(schemas_control, decodes_celery_revoke_cast_and_terminate_call)
{
	schema_control_request *req = decode_request("revoke_request");
	cr_expect_str_eq(req->method, "revoke");
	cr_expect(str_is(schema_control_arg(req, "task_id"), TASK_ID));
	cr_expect(str_is(schema_control_arg(req, "signal"), "SIGTERM"));
	const msgpack_object *t = schema_control_arg(req, "terminate");
	cr_assert_not_null(t);
	cr_expect(t->type == MSGPACK_OBJECT_BOOLEAN && !t->via.boolean);
	cr_expect_null(req->ticket);
	cr_expect_null(req->reply_exchange, "a cast wants no reply");
	cr_expect_null(req->reply_routing_key);
	cr_expect_eq(req->clock, 3);
	schema_control_request_free(req);

	req = decode_request("terminate_request");
	cr_expect_str_eq(req->method, "revoke");
	cr_expect(str_is(schema_control_arg(req, "signal"), "SIGKILL"));
	cr_expect(schema_control_arg(req, "terminate")->via.boolean);
	cr_expect_str_eq(req->ticket, TICKET);
	cr_expect_str_eq(req->reply_routing_key, OID);
	cr_expect_null(schema_control_arg(req, "nope"));
	schema_control_request_free(req);
}

Test(schemas_control, decodes_json_requests_from_a_default_celery_client)
{
	schema_control_request *req = decode_request("ping_request_json");
	cr_expect_eq(req->format, SCHEMA_CONTROL_JSON);
	cr_expect_str_eq(req->method, "ping");
	cr_expect_str_eq(req->ticket, TICKET);
	cr_expect_str_eq(req->reply_routing_key, OID);
	cr_expect_eq(req->clock, 1);
	schema_control_request_free(req);

	req = decode_request("rate_limit_request_json");
	cr_expect_str_eq(req->method, "rate_limit");
	cr_expect(str_is(schema_control_arg(req, "task_name"), "tasks.add"));
	cr_expect(str_is(schema_control_arg(req, "rate_limit"), "10/m"));
	cr_expect_null(req->reply_exchange);
	schema_control_request_free(req);

	req = decode_request("registered_request");
	cr_expect_str_eq(req->method, "registered");
	schema_control_request_free(req);
}

/* ---- our requests equal kombu's bytes ---- */

static void expect_request_bytes(const char *name, const schema_control_request_spec *spec,
				 schema_control_format fmt)
{
	fixture f = load(name);
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	warren_error err = {0};
	cr_assert_eq(schema_control_request_encode(spec, fmt, &h, &b, &err), 0, "%s", err.msg);
	expect_same(b.data, b.size, &f.body, name);
	expect_same(h.data, h.size, &f.headers, "request headers");
	cr_expect_str_eq(fstr(&f, "content_type"), schema_control_content_type(fmt));
	cr_expect_str_eq(fstr(&f, "content_encoding"), schema_control_content_encoding(fmt));
	cr_expect_str_eq(fstr(&f, "exchange"), SCHEMA_CONTROL_EXCHANGE);
	cr_expect_str_eq(fstr(&f, "routing_key"), "");
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(f.doc, "properties"),
							"delivery_mode")),
		     SCHEMA_CONTROL_REQUEST_DELIVERY_MODE);
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
	unload(&f);
}

Test(schemas_control, ping_request_equals_kombu_bytes_in_msgpack_and_json)
{
	schema_control_request_spec spec = {.method = "ping", .ticket = TICKET,
					    .reply_routing_key = OID, .clock = 1,
					    .expires = NOW + 1.0};
	expect_request_bytes("ping_request", &spec, SCHEMA_CONTROL_MSGPACK);
	expect_request_bytes("ping_request_json", &spec, SCHEMA_CONTROL_JSON);
	const char *const dest[] = {"w1@host", "w2@host"};
	spec.destination = dest;
	spec.n_destination = 2;
	spec.clock = 2;
	spec.expires = NOW + 2.5;
	expect_request_bytes("ping_request_dest", &spec, SCHEMA_CONTROL_MSGPACK);
}

Test(schemas_control, revoke_cast_equals_kombu_bytes)
{
	msgpack_sbuffer args;
	msgpack_sbuffer_init(&args);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "task_id", 7);
	msgpack_pack_str_with_body(&pk, TASK_ID, strlen(TASK_ID));
	msgpack_pack_str_with_body(&pk, "terminate", 9);
	msgpack_pack_false(&pk);
	msgpack_pack_str_with_body(&pk, "signal", 6);
	msgpack_pack_str_with_body(&pk, "SIGTERM", 7);
	schema_control_request_spec spec = {.method = "revoke", .arguments_mp = args.data,
					    .arguments_len = args.size, .clock = 3,
					    .expires = NOW + 1.0};
	expect_request_bytes("revoke_request", &spec, SCHEMA_CONTROL_MSGPACK);
	msgpack_sbuffer_destroy(&args);
}

Test(schemas_control, request_without_timeout_sends_int_zero_expires)
{
	schema_control_request_spec spec = {.method = "shutdown", .clock = 7};
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	cr_assert_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &h, &b, NULL), 0);
	static const char want[] = "\x82\xa5" "clock\x07\xa7" "expires\x00";
	cr_assert_eq(h.size, sizeof want - 1);
	cr_expect_eq(memcmp(h.data, want, h.size), 0);
	schema_control_request *req = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_control_request_decode(NULL, h.data, h.size, b.data, b.size, NULL,
						   &req, &err), 0, "%s", err.msg);
	cr_expect_eq(req->expires, 0);
	cr_expect(!schema_control_request_expired(req, 1e12));
	schema_control_request_free(req);
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
}

Test(schemas_control, request_encode_refuses_bad_specs)
{
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	warren_error err = {0};
	schema_control_request_spec spec = {0};
	cr_expect_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &h, &b, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "control request: no method");
	spec.method = "ping";
	spec.ticket = TICKET;
	warren_error_clear(&err);
	cr_expect_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &h, &b, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "control request 'ping': ticket and reply key go together");
	spec.ticket = NULL;
	spec.arguments_mp = "\x91\x01"; /* [1] */
	spec.arguments_len = 2;
	warren_error_clear(&err);
	cr_expect_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &h, &b, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "control request 'ping': arguments are array, expected a map");
	spec.arguments_mp = "\x82\x01"; /* truncated */
	warren_error_clear(&err);
	cr_expect_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &h, &b, &err),
		     WARREN_EINVAL);
	spec.arguments_mp = "\x81\xa1k\xc4\x01x"; /* {"k": b"x"}: not JSON */
	spec.arguments_len = 6;
	warren_error_clear(&err);
	cr_expect_eq(schema_control_request_encode(&spec, SCHEMA_CONTROL_JSON, &h, &b, &err),
		     WARREN_EENCODE);
	cr_expect_str_eq(err.msg, "control request: json cannot hold bytes or an ext value");
	cr_expect_eq(b.size, 0, "nothing is written on failure");
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
}

/* ---- matching ---- */

static schema_control_request *with_pattern(const char *pattern, const char *matcher)
{
	char body[256];
	int n = snprintf(body, sizeof body,
			 "{\"method\": \"ping\", \"pattern\": \"%s\", \"matcher\": \"%s\"}",
			 pattern, matcher);
	schema_control_request *req = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_control_request_decode("application/json", NULL, 0, body, (size_t)n,
						   NULL, &req, &err), 0, "%s", err.msg);
	return req;
}

Test(schemas_control, pattern_and_matcher_select_nodes_like_kombu)
{
	schema_control_request *req = with_pattern("w*@host", "glob");
	cr_expect(schema_control_request_is_for(req, "w1@host"));
	cr_expect(!schema_control_request_is_for(req, "x1@host"));
	schema_control_request_free(req);
	req = with_pattern("w[12]@", "pcre"); /* re.match: anchored at the start only */
	cr_expect(schema_control_request_is_for(req, "w2@host"));
	cr_expect(!schema_control_request_is_for(req, "xw2@host"));
	schema_control_request_free(req);
	req = with_pattern("(", "pcre");
	cr_expect(!schema_control_request_is_for(req, "w1@host"));
	schema_control_request_free(req);
	req = with_pattern("*", "regex-of-my-own");
	cr_expect(!schema_control_request_is_for(req, "w1@host"));
	schema_control_request_free(req);
}

/* ---- request decode errors ---- */

static int decode_text(const char *ct, const char *body, const schema_limits *lim,
		       warren_error *err)
{
	schema_control_request *req = NULL;
	int rc = schema_control_request_decode(ct, NULL, 0, body, strlen(body), lim, &req, err);
	schema_control_request_free(req);
	return rc;
}

Test(schemas_control, request_decode_errors_name_the_key)
{
	static const struct { const char *body; int rc; const char *msg; } cases[] = {
		{"[1]", WARREN_EDECODE, "control request: body is array, expected a map"},
		{"{}", WARREN_EDECODE, "control request: \"method\" is missing"},
		{"{\"method\": 3}", WARREN_EDECODE,
		 "control request: \"method\" is int, expected a string"},
		{"{\"method\": \"ping\", \"arguments\": [1]}", WARREN_EDECODE,
		 "control request: \"arguments\" is array, expected a map"},
		{"{\"method\": \"ping\", \"destination\": \"w1@host\"}", WARREN_EDECODE,
		 "control request: \"destination\" is str, expected a list"},
		{"{\"method\": \"ping\", \"destination\": [\"a\", 2]}", WARREN_EDECODE,
		 "control request: \"destination\"[1] is int, expected a string"},
		{"{\"method\": \"ping\", \"reply_to\": {\"exchange\": \"x\"}}", WARREN_EDECODE,
		 "control request: reply_to needs both \"exchange\" and \"routing_key\""},
		{"{\"method\": \"ping\", \"reply_to\": \"q\"}", WARREN_EDECODE,
		 "control request: reply_to is str, expected a map"},
		{"{\"method\": \"ping\"", WARREN_EDECODE, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		warren_error err = {0};
		cr_expect_eq(decode_text("application/json", cases[i].body, NULL, &err), cases[i].rc,
			     "%s", cases[i].body);
		if (cases[i].msg)
			cr_expect_str_eq(err.msg, cases[i].msg);
	}
	warren_error err = {0};
	cr_expect_eq(decode_text("text/plain", "{}", NULL, &err), WARREN_EDECODE);
	warren_error_clear(&err);
	cr_expect_eq(decode_text(NULL, "\xc1", NULL, &err), WARREN_EDECODE); /* bad msgpack */
}

Test(schemas_control, request_decode_enforces_limits)
{
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_elems = 2;
	warren_error err = {0};
	cr_expect_eq(decode_text("application/json",
				 "{\"method\": \"ping\", \"destination\": [\"a\", \"b\", \"c\"]}", &lim,
				 &err), WARREN_ELIMIT);
	schema_limits_default(&lim);
	lim.max_body = 8;
	warren_error_clear(&err);
	cr_expect_eq(decode_text("application/json", "{\"method\": \"ping\"}", &lim, &err),
		     WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "control request: 18 bytes, limit 8");
	schema_limits_default(&lim);
	lim.max_depth = 3;
	warren_error_clear(&err);
	cr_expect_eq(decode_text("application/json",
				 "{\"method\": \"ping\", \"arguments\": {\"a\": [[[1]]]}}", &lim, &err),
		     WARREN_ELIMIT);
	/* Headers that are not a map are refused; odd clock values are ignored. */
	schema_control_request *req = NULL;
	warren_error_clear(&err);
	cr_expect_eq(schema_control_request_decode("application/json", "\x91\x01", 2,
						   "{\"method\": \"ping\"}", 18, NULL, &req, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "control headers: array, expected a map");
	warren_error_clear(&err);
	cr_assert_eq(schema_control_request_decode("application/json", "\x81\xa5" "clock\xa1x", 9,
						   "{\"method\": \"ping\"}", 18, NULL, &req, &err),
		     0, "%s", err.msg);
	cr_expect(!req->has_clock);
	schema_control_request_free(req);
}

/* ---- replies: Celery's decoded, ours equal Celery's ---- */

Test(schemas_control, decodes_celery_replies_with_ticket_and_clock)
{
	schema_control_reply *r = decode_reply("ping_reply");
	cr_expect_str_eq(r->ticket, TICKET);
	cr_expect(r->has_clock);
	cr_expect_eq(r->clock, 1);
	cr_assert_eq(r->n_nodes, 1);
	cr_expect_str_eq(r->nodes[0].nodename, "w1@host");
	cr_expect(r->nodes[0].is_ok);
	cr_expect(!r->nodes[0].is_error);
	cr_expect(str_is(schema_map_get(&r->nodes[0].value, "ok"), "pong"));
	schema_control_reply_free(r);

	r = decode_reply("ping_reply_json");
	cr_expect(r->nodes[0].is_ok);
	cr_expect(str_is(schema_map_get(&r->nodes[0].value, "ok"), "pong"));
	schema_control_reply_free(r);

	r = decode_reply("rate_limit_error_reply");
	cr_expect(r->nodes[0].is_error);
	cr_expect_str_eq(r->nodes[0].error, "unknown task");
	schema_control_reply_free(r);

	r = decode_reply("registered_reply");
	cr_expect(!r->nodes[0].is_ok && !r->nodes[0].is_error);
	cr_assert_eq(r->nodes[0].value.type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(r->nodes[0].value.via.array.size, 2);
	cr_expect(str_is(&r->nodes[0].value.via.array.ptr[1], "tasks.mul"));
	schema_control_reply_free(r);
}

Test(schemas_control, decodes_celery_active_and_active_queues)
{
	schema_control_reply *r = decode_reply("active_reply");
	const msgpack_object *list = &r->nodes[0].value;
	cr_assert_eq(list->type, MSGPACK_OBJECT_ARRAY);
	const msgpack_object *info = &list->via.array.ptr[0];
	cr_expect(str_is(schema_map_get(info, "id"), TASK_ID));
	cr_expect(str_is(schema_map_get(info, "type"), "tasks.add"));
	cr_expect_eq(schema_map_get(info, "worker_pid")->via.u64, 4242);
	cr_expect(str_is(schema_map_get(schema_map_get(info, "delivery_info"), "routing_key"),
			 "celery"));
	schema_control_reply_free(r);

	r = decode_reply("active_queues_reply");
	list = &r->nodes[0].value;
	cr_assert_eq(list->via.array.size, 2);
	cr_expect(str_is(schema_map_get(&list->via.array.ptr[1], "name"), "hipri"));
	schema_control_reply_free(r);
}

static int pack_pong(msgpack_packer *pk, warren_error *err)
{
	return schema_control_pack_ok(pk, "pong", err);
}

static int pack_revoke_one(msgpack_packer *pk, warren_error *err)
{
	const char *const ids[] = {TASK_ID};
	return schema_control_pack_revoke(pk, ids, 1, false, NULL, 0, err);
}

static int pack_registered(msgpack_packer *pk, warren_error *err)
{
	const char *const names[] = {"tasks.add", "tasks.mul"};
	return schema_control_pack_strings(pk, names, 2, err);
}

static int pack_revoked(msgpack_packer *pk, warren_error *err)
{
	const char *const ids[] = {TASK_ID};
	return schema_control_pack_strings(pk, ids, 1, err);
}

static int pack_unknown_task(msgpack_packer *pk, warren_error *err)
{
	return schema_control_pack_error(pk, "unknown task", err);
}

static int pack_two_queues(msgpack_packer *pk, warren_error *err)
{
	const schema_control_queue_info q[] = {
		{.name = "celery", .exchange = "celery", .exchange_type = "direct",
		 .exchange_durable = true, .routing_key = "celery", .durable = true},
		{.name = "hipri", .exchange = "hipri", .exchange_type = "direct",
		 .exchange_durable = true, .routing_key = "hipri", .durable = true,
		 .has_max_priority = true, .max_priority = 10},
	};
	return schema_control_pack_queues(pk, q, 2, err);
}

static int pack_active(msgpack_packer *pk, warren_error *err)
{
	const schema_control_task_info t = {
		.id = TASK_ID, .name = "tasks.add", .args_mp = "\x92\x02\x03", .args_len = 3,
		.hostname = "w1@host", .has_time_start = true, .time_start = NOW,
		.acknowledged = true, .exchange = "", .routing_key = "celery",
		.has_priority = true, .priority = 0, .has_worker_pid = true, .worker_pid = 4242,
	};
	return schema_control_pack_tasks(pk, &t, 1, err);
}

Test(schemas_control, replies_equal_celery_bytes)
{
	expect_reply_bytes("ping_reply", pack_pong);
	expect_reply_bytes("ping_reply_json", pack_pong);
	expect_reply_bytes("revoke_reply", pack_revoke_one);
	expect_reply_bytes("registered_reply", pack_registered);
	expect_reply_bytes("revoked_reply", pack_revoked);
	expect_reply_bytes("rate_limit_error_reply", pack_unknown_task);
	expect_reply_bytes("active_queues_reply", pack_two_queues);
	expect_reply_bytes("active_reply", pack_active);
}

static void expect_ok_text(const msgpack_sbuffer *sb, const char *want)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, sb->data, sb->size, NULL), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *ok = schema_map_get(&u.data, "ok");
	cr_assert_not_null(ok);
	cr_expect_eq(ok->via.str.size, strlen(want));
	cr_expect_eq(memcmp(ok->via.str.ptr, want, strlen(want)), 0, "%.*s",
		     (int)ok->via.str.size, ok->via.str.ptr);
	msgpack_unpacked_destroy(&u);
}

Test(schemas_control, revoke_texts_match_worker_control_py)
{
	const char *const ids[] = {"a", "b"};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	cr_assert_eq(schema_control_pack_revoke(&pk, ids, 2, false, NULL, 0, NULL), 0);
	expect_ok_text(&sb, "tasks a, b flagged as revoked");
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(schema_control_pack_revoke(&pk, ids, 2, true, ids + 1, 1, NULL), 0);
	expect_ok_text(&sb, "terminate: b");
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(schema_control_pack_revoke(&pk, ids, 2, true, NULL, 0, NULL), 0);
	expect_ok_text(&sb, "terminate: tasks unknown");
	msgpack_sbuffer_destroy(&sb);
}

Test(schemas_control, stats_have_celerys_keys_in_order)
{
	const schema_control_task_count total[] = {{"tasks.add", 3}};
	const int64_t procs[] = {101, 102};
	schema_control_stats st = {
		.total = total, .n_total = 1, .pid = 100, .clock = 42, .uptime = 7,
		.max_concurrency = 2, .processes = procs, .n_processes = 2,
		.put_guarded_by_semaphore = true, .broker_hostname = "127.0.0.1",
		.broker_userid = "guest", .broker_vhost = "/", .broker_port = 5672,
		.broker_connect_timeout = 4, .broker_heartbeat = 120.0, .prefetch_count = 8,
		.has_rusage = true, .utime = 0.5, .maxrss = 1234,
	};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	cr_assert_eq(schema_control_pack_stats(&pk, &st, NULL), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	static const char *const keys[] = {"total", "pid", "clock", "uptime", "pool", "broker",
					   "prefetch_count", "rusage"};
	cr_assert_eq(u.data.via.map.size, 8);
	for (size_t i = 0; i < 8; i++)
		cr_expect(str_is(&u.data.via.map.ptr[i].key, keys[i]), "key %zu", i);
	cr_expect(str_is(schema_map_get(&u.data, "clock"), "42"));
	const msgpack_object *pool = schema_map_get(&u.data, "pool");
	cr_expect_eq(schema_map_get(pool, "max-concurrency")->via.u64, 2);
	cr_expect(str_is(schema_map_get(pool, "max-tasks-per-child"), "N/A"));
	const msgpack_object *broker = schema_map_get(&u.data, "broker");
	cr_expect_eq(schema_map_get(broker, "connect_timeout")->type,
		     MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_expect_null(schema_map_get(broker, "password"));
	cr_expect_eq(schema_map_get(schema_map_get(&u.data, "rusage"), "maxrss")->via.u64, 1234);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

Test(schemas_control, reply_encode_and_decode_refuse_bad_input)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	warren_error err = {0};
	cr_expect_eq(schema_control_reply_encode(NULL, "\xc0", 1, SCHEMA_CONTROL_MSGPACK, &sb, &err),
		     WARREN_EINVAL);
	warren_error_clear(&err);
	cr_expect_eq(schema_control_reply_encode("n", "\x92\x01", 2, SCHEMA_CONTROL_MSGPACK, &sb,
						 &err), WARREN_EINVAL);
	warren_error_clear(&err);
	cr_expect_eq(schema_control_reply_encode("n", "\xcb\x7f\xf8\0\0\0\0\0\0", 9,
						 SCHEMA_CONTROL_JSON, &sb, &err), WARREN_EENCODE);
	cr_expect_str_eq(err.msg, "control reply: json cannot hold a NaN or infinite float");
	msgpack_sbuffer_destroy(&sb);

	schema_control_reply *r = NULL;
	warren_error_clear(&err);
	cr_expect_eq(schema_control_reply_decode("application/json", NULL, 0, "[]", 2, NULL, &r,
						 &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "control reply: body is array, expected a map");
	warren_error_clear(&err);
	cr_expect_eq(schema_control_reply_decode(NULL, NULL, 0, "\x81\x01\xc0", 3, NULL, &r, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "control reply: node name [0] is int, expected a string");
	cr_expect_null(r);
}
