/* tests/unit/test_schemas_result.c - result messages (schemas/result.c):
 * states, decoding Celery's own bytes (tests/fixtures/results/results.json,
 * made by tests/interop/gen_result_fixtures.py), encoding the same bytes from
 * C, and every decoding error with its exact message. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas/schemas.h"

#define FIXTURES WARREN_SOURCE_DIR "/tests/fixtures/results/results.json"

static const char TASK_ID[] = "d5a8e3c2-1b4f-4a9e-9c3e-00000000000a";
static const char GROUP_ID[] = "99999999-0000-4000-8000-000000000001";
static const char PARENT_ID[] = "11111111-0000-4000-8000-000000000002";
static const char CHILD_ID[] = "cccccccc-0000-4000-8000-000000000003";
static const char GCHILD_ID[] = "cccccccc-0000-4000-8000-000000000004";
static const char TRACEBACK[] = "Traceback (most recent call last):\n"
				"  File \"tasks.py\", line 7, in add\n"
				"    raise ValueError('boom', 42)\n"
				"ValueError: ('boom', 42)\n";
static const char RETRY_TRACEBACK[] =
	"Traceback (most recent call last):\n"
	"celery.exceptions.Retry: Retry in 10s: ConnectionError('broker down')\n";
/* 2026-11-27T10:19:08.323802, the generator's frozen utcnow(). */
static const struct timespec FROZEN = {1795774748, 323802123};
static const struct timespec FROZEN_WHOLE = {1795774749, 999};

/* ---- helpers ---- */

typedef struct bytes {
	unsigned char *data;
	size_t len;
} bytes;

/* The bytes of fixture case `name`; freed by the caller with free(). */
static bytes fixture(const char *name)
{
	json_error_t jerr;
	json_t *doc = json_load_file(FIXTURES, 0, &jerr);
	cr_assert_not_null(doc, "%s: %s", FIXTURES, jerr.text);
	json_t *cases = json_object_get(doc, "cases");
	const char *hex = NULL;
	for (size_t i = 0; i < json_array_size(cases); i++) {
		json_t *c = json_array_get(cases, i);
		if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
			hex = json_string_value(json_object_get(c, "hex"));
	}
	cr_assert_not_null(hex, "no fixture case %s", name);
	bytes b = {malloc(strlen(hex) / 2 + 1), strlen(hex) / 2};
	for (size_t i = 0; i < b.len; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		b.data[i] = (unsigned char)v;
	}
	json_decref(doc);
	return b;
}

/* Decodes with msgpack-c's own unpacker and the object-level decoder. */
static int decode_with(bool redis, const void *data, size_t len, schema_result *r,
		       warren_error *err)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(&u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
	int rc = redis ? schema_result_decode_redis_obj(&u.data, r, err)
		       : schema_result_decode_rpc_obj(&u.data, r, err);
	msgpack_unpacked_destroy(&u);
	return rc;
}

static void decode_fixture(const char *name, schema_result *r)
{
	warren_error err = {0};
	bytes b = fixture(name);
	schema_result_init(r);
	int rc = decode_with(strncmp(name, "redis", 5) == 0, b.data, b.len, r, &err);
	free(b.data);
	cr_assert_eq(rc, 0, "%s: %s", name, err.msg);
}

/* A packer writing into a fresh sbuffer the caller destroys. */
typedef struct packed {
	msgpack_sbuffer sb;
	msgpack_packer pk;
} packed;

static void packed_init(packed *p)
{
	msgpack_sbuffer_init(&p->sb);
	msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static void expect_bytes(const void *got, size_t got_len, const void *want, size_t want_len,
			 const char *what)
{
	cr_assert_eq(got_len, want_len, "%s: %zu bytes, expected %zu", what, got_len, want_len);
	cr_assert_eq(memcmp(got, want, want_len), 0, "%s: bytes differ", what);
}

static void expect_exc(const schema_result *r, const char *type, const char *module,
		       const char *message)
{
	schema_exc exc;
	warren_error err = {0};
	cr_assert_eq(schema_exc_read(r->result_mp, r->result_len, &exc, &err), 0, "%s", err.msg);
	cr_expect_str_eq(exc.type, type);
	cr_expect_str_eq(exc.module, module);
	cr_expect_str_eq(exc.message, message);
	schema_exc_release(&exc);
}

/* ---- states ---- */

Test(schemas_result, every_state_name_parses_back)
{
	static const char *const names[] = {"PENDING", "RECEIVED", "STARTED",
					    "SUCCESS", "FAILURE",  "RETRY",
					    "REVOKED", "REJECTED", "IGNORED"};
	for (int s = SCHEMA_STATE_PENDING; s <= SCHEMA_STATE_IGNORED; s++) {
		schema_state parsed = SCHEMA_STATE_PENDING;
		cr_expect_str_eq(schema_state_name((schema_state)s), names[s]);
		cr_expect_eq(schema_state_parse(names[s], strlen(names[s]), &parsed), 0);
		cr_expect_eq((int)parsed, s, "%s", names[s]);
	}
	cr_expect_str_eq(schema_state_name((schema_state)99), "?");
}

Test(schemas_result, state_parse_is_exact)
{
	schema_state s;
	cr_expect_eq(schema_state_parse("success", 7, &s), -1);
	cr_expect_eq(schema_state_parse("SUCCES", 6, &s), -1);
	cr_expect_eq(schema_state_parse("SUCCESS", 6, &s), -1);
	cr_expect_eq(schema_state_parse("SUCCESSX", 8, &s), -1);
	cr_expect_eq(schema_state_parse("", 0, &s), -1);
}

Test(schemas_result, state_sets_match_celery_states_py)
{
	/* READY {SUCCESS, FAILURE, REVOKED}; EXCEPTION {RETRY, FAILURE, REVOKED};
	 * PROPAGATE {FAILURE, REVOKED}. */
	static const struct {
		schema_state s;
		bool ready, exception, propagate;
	} want[] = {
		{SCHEMA_STATE_PENDING, false, false, false},
		{SCHEMA_STATE_RECEIVED, false, false, false},
		{SCHEMA_STATE_STARTED, false, false, false},
		{SCHEMA_STATE_SUCCESS, true, false, false},
		{SCHEMA_STATE_FAILURE, true, true, true},
		{SCHEMA_STATE_RETRY, false, true, false},
		{SCHEMA_STATE_REVOKED, true, true, true},
		{SCHEMA_STATE_REJECTED, false, false, false},
		{SCHEMA_STATE_IGNORED, false, false, false},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const char *n = schema_state_name(want[i].s);
		cr_expect_eq(schema_state_is_ready(want[i].s), want[i].ready, "%s", n);
		cr_expect_eq(schema_state_is_exception(want[i].s), want[i].exception, "%s", n);
		cr_expect_eq(schema_state_is_propagate(want[i].s), want[i].propagate, "%s", n);
	}
}

/* ---- decoding Celery's bytes ---- */

Test(schemas_result, decodes_celery_rpc_success_int)
{
	schema_result r;
	decode_fixture("rpc_success_int", &r);
	cr_expect_str_eq(r.task_id, TASK_ID);
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS);
	expect_bytes(r.result_mp, r.result_len, "\x05", 1, "result");
	cr_expect_null(r.traceback);
	expect_bytes(r.children_mp, r.children_len, "\x90", 1, "children");
	cr_expect_null(r.date_done);
	cr_expect_null(r.group_id);
	cr_expect_null(r.parent_id);
	cr_expect_not(r.extended);
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_rpc_success_str)
{
	schema_result r;
	decode_fixture("rpc_success_str", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS);
	expect_bytes(r.result_mp, r.result_len, "\xa5hello", 6, "result");
	schema_result_release(&r);
}

/* {'a': [1, 2.5, None, True], 'b': {'c': b'\x00\x01'}, 'neg': -7} */
static void pack_nested(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 3);
	pack_str(pk, "a");
	msgpack_pack_array(pk, 4);
	msgpack_pack_int(pk, 1);
	msgpack_pack_double(pk, 2.5);
	msgpack_pack_nil(pk);
	msgpack_pack_true(pk);
	pack_str(pk, "b");
	msgpack_pack_map(pk, 1);
	pack_str(pk, "c");
	msgpack_pack_bin(pk, 2);
	msgpack_pack_bin_body(pk, "\x00\x01", 2);
	pack_str(pk, "neg");
	msgpack_pack_int(pk, -7);
}

Test(schemas_result, decodes_celery_rpc_success_nested_value_exactly)
{
	schema_result r;
	packed want;
	decode_fixture("rpc_success_nested", &r);
	packed_init(&want);
	pack_nested(&want.pk);
	expect_bytes(r.result_mp, r.result_len, want.sb.data, want.sb.size, "result");
	msgpack_sbuffer_destroy(&want.sb);
	schema_result_release(&r);
}

/* [AsyncResult(CHILD).as_tuple(), GroupResult(GROUP, [AsyncResult(GCHILD)]).as_tuple()] */
static void pack_children(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	msgpack_pack_array(pk, 2); /* [[id, parent], None] */
	msgpack_pack_array(pk, 2);
	pack_str(pk, CHILD_ID);
	msgpack_pack_nil(pk);
	msgpack_pack_nil(pk);
	msgpack_pack_array(pk, 2); /* [[gid, parent], [tuples]] */
	msgpack_pack_array(pk, 2);
	pack_str(pk, GROUP_ID);
	msgpack_pack_nil(pk);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 2);
	msgpack_pack_array(pk, 2);
	pack_str(pk, GCHILD_ID);
	msgpack_pack_nil(pk);
	msgpack_pack_nil(pk);
}

Test(schemas_result, decodes_celery_rpc_children_as_raw_tuples)
{
	schema_result r;
	packed want;
	decode_fixture("rpc_success_children", &r);
	packed_init(&want);
	pack_children(&want.pk);
	expect_bytes(r.children_mp, r.children_len, want.sb.data, want.sb.size, "children");
	msgpack_sbuffer_destroy(&want.sb);
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_rpc_failure_as_value_error)
{
	schema_result r;
	decode_fixture("rpc_failure", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE);
	cr_expect_str_eq(r.traceback, TRACEBACK);
	expect_exc(&r, "ValueError", "builtins", "('boom', 42)");

	schema_exc exc;
	warren_error err = {0};
	cr_assert_eq(schema_exc_read(r.result_mp, r.result_len, &exc, &err), 0, "%s", err.msg);
	expect_bytes(exc.args_mp, exc.args_len, "\x92\xa4" "boom" "\x2a", 7, "exc args");
	schema_exc_release(&exc);
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_rpc_retry)
{
	schema_result r;
	decode_fixture("rpc_retry", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_RETRY);
	cr_expect_str_eq(r.traceback, RETRY_TRACEBACK);
	expect_exc(&r, "ConnectionError", "builtins", "broker down");
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_rpc_revoked_for_each_reason)
{
	static const char *const reasons[] = {"revoked", "expired", "terminated"};
	for (size_t i = 0; i < 3; i++) {
		char name[64];
		schema_result r;
		snprintf(name, sizeof name, "rpc_revoked_%s", reasons[i]);
		decode_fixture(name, &r);
		cr_expect_eq(r.state, SCHEMA_STATE_REVOKED, "%s", name);
		cr_expect_null(r.traceback);
		expect_exc(&r, "TaskRevokedError", "celery.exceptions", reasons[i]);
		schema_result_release(&r);
	}
}

Test(schemas_result, decodes_celery_rpc_started)
{
	schema_result r;
	packed want;
	decode_fixture("rpc_started", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_STARTED);
	packed_init(&want);
	msgpack_pack_map(&want.pk, 2);
	pack_str(&want.pk, "pid");
	msgpack_pack_int(&want.pk, 4242);
	pack_str(&want.pk, "hostname");
	pack_str(&want.pk, "w1@host");
	expect_bytes(r.result_mp, r.result_len, want.sb.data, want.sb.size, "result");
	msgpack_sbuffer_destroy(&want.sb);
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_redis_meta_with_ids)
{
	schema_result r;
	decode_fixture("redis_success_ids", &r);
	cr_expect_str_eq(r.task_id, TASK_ID);
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS);
	expect_bytes(r.result_mp, r.result_len, "\x05", 1, "result");
	cr_expect_null(r.traceback);
	expect_bytes(r.children_mp, r.children_len, "\x90", 1, "children");
	cr_expect_str_eq(r.date_done, "2026-11-27T10:19:08.323802");
	cr_expect_str_eq(r.group_id, GROUP_ID);
	cr_expect_str_eq(r.parent_id, PARENT_ID);
	cr_expect_not(r.extended);
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_redis_failure_and_not_ready_states)
{
	schema_result r;
	decode_fixture("redis_failure", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE);
	cr_expect_str_eq(r.traceback, TRACEBACK);
	cr_expect_str_eq(r.parent_id, PARENT_ID);
	cr_expect_null(r.group_id);
	expect_exc(&r, "ValueError", "builtins", "('boom', 42)");
	schema_result_release(&r);

	decode_fixture("redis_retry", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_RETRY);
	cr_expect_null(r.date_done, "RETRY is not ready: date_done is None");
	expect_exc(&r, "ConnectionError", "builtins", "broker down");
	schema_result_release(&r);

	decode_fixture("redis_started", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_STARTED);
	cr_expect_null(r.date_done);
	schema_result_release(&r);

	decode_fixture("redis_revoked", &r);
	cr_expect_eq(r.state, SCHEMA_STATE_REVOKED);
	cr_expect_str_eq(r.date_done, "2026-11-27T10:19:08.323802");
	expect_exc(&r, "TaskRevokedError", "celery.exceptions", "terminated");
	schema_result_release(&r);
}

Test(schemas_result, decodes_celery_redis_extended_meta)
{
	schema_result r;
	decode_fixture("redis_extended", &r);
	cr_expect(r.extended);
	cr_expect_str_eq(r.name, "math.add");
	expect_bytes(r.args_mp, r.args_len, "\x92\x02\x03", 3, "args");
	expect_bytes(r.kwargs_mp, r.kwargs_len, "\x81\xa1z\x01", 4, "kwargs");
	cr_expect_str_eq(r.worker, "w1@host");
	cr_expect_eq(r.retries, 2);
	cr_expect_str_eq(r.queue, "celery");
	cr_expect_str_eq(r.group_id, GROUP_ID);
	schema_result_release(&r);
}

/* ---- encoding the same bytes from C ---- */

typedef void (*build_fn)(schema_result *r);

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "%s", err->msg);
}

static void build_success_int(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_success(r, "\x05", 1, &err), &err);
}

static void build_success_str(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_success(r, "\xa5hello", 6, &err), &err);
}

static void build_success_nested(schema_result *r)
{
	warren_error err = {0};
	packed v;
	packed_init(&v);
	pack_nested(&v.pk);
	ok(schema_result_set_success(r, v.sb.data, v.sb.size, &err), &err);
	msgpack_sbuffer_destroy(&v.sb);
}

static void build_success_children(schema_result *r)
{
	warren_error err = {0};
	packed v;
	packed_init(&v);
	pack_children(&v.pk);
	build_success_int(r);
	ok(schema_result_set_children(r, v.sb.data, v.sb.size, &err), &err);
	msgpack_sbuffer_destroy(&v.sb);
}

static void build_failure(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_exception_args(r, SCHEMA_STATE_FAILURE, "ValueError", "builtins",
					    "\x92\xa4" "boom" "\x2a", 7, &err),
	   &err);
	ok(schema_result_set_traceback(r, TRACEBACK, &err), &err);
}

static void build_retry(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_exception(r, SCHEMA_STATE_RETRY, "ConnectionError", "builtins",
				       "broker down", &err),
	   &err);
	ok(schema_result_set_traceback(r, RETRY_TRACEBACK, &err), &err);
}

static void build_revoked(schema_result *r, schema_revoke_reason reason)
{
	warren_error err = {0};
	ok(schema_result_set_revoked(r, reason, &err), &err);
}

static void build_revoked_revoked(schema_result *r)
{
	build_revoked(r, SCHEMA_REVOKED_REVOKED);
}

static void build_revoked_expired(schema_result *r)
{
	build_revoked(r, SCHEMA_REVOKED_EXPIRED);
}

static void build_revoked_terminated(schema_result *r)
{
	build_revoked(r, SCHEMA_REVOKED_TERMINATED);
}

static void build_started(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_started(r, 4242, "w1@host", &err), &err);
}

static void build_ids(schema_result *r)
{
	warren_error err = {0};
	build_success_int(r);
	ok(schema_result_set_group_id(r, GROUP_ID, &err), &err);
	ok(schema_result_set_parent_id(r, PARENT_ID, &err), &err);
}

static void build_redis_failure(schema_result *r)
{
	warren_error err = {0};
	build_failure(r);
	ok(schema_result_set_parent_id(r, PARENT_ID, &err), &err);
}

static void build_extended(schema_result *r)
{
	warren_error err = {0};
	build_success_int(r);
	ok(schema_result_set_group_id(r, GROUP_ID, &err), &err);
	ok(schema_result_set_extended(r, "math.add", "\x92\x02\x03", 3, "\x81\xa1z\x01", 4,
				      "w1@host", 2, "celery", &err),
	   &err);
}

static void build_whole_second(schema_result *r)
{
	warren_error err = {0};
	ok(schema_result_set_success(r, "\xa2ok", 3, &err), &err);
}

static const struct {
	const char *name;
	build_fn build;
	const struct timespec *now; /* Redis cases: the frozen clock */
} encode_cases[] = {
	{"rpc_success_int", build_success_int, NULL},
	{"rpc_success_str", build_success_str, NULL},
	{"rpc_success_nested", build_success_nested, NULL},
	{"rpc_success_children", build_success_children, NULL},
	{"rpc_failure", build_failure, NULL},
	{"rpc_retry", build_retry, NULL},
	{"rpc_revoked_revoked", build_revoked_revoked, NULL},
	{"rpc_revoked_expired", build_revoked_expired, NULL},
	{"rpc_revoked_terminated", build_revoked_terminated, NULL},
	{"rpc_started", build_started, NULL},
	{"redis_success_int", build_success_int, &FROZEN},
	{"redis_success_ids", build_ids, &FROZEN},
	{"redis_failure", build_redis_failure, &FROZEN},
	{"redis_retry", build_retry, &FROZEN},
	{"redis_revoked", build_revoked_terminated, &FROZEN},
	{"redis_started", build_started, &FROZEN},
	{"redis_extended", build_extended, &FROZEN},
	{"redis_success_whole_second", build_whole_second, &FROZEN_WHOLE},
};

Test(schemas_result, c_encoding_matches_celery_bytes_for_every_fixture)
{
	for (size_t i = 0; i < sizeof encode_cases / sizeof encode_cases[0]; i++) {
		const char *name = encode_cases[i].name;
		bool redis = encode_cases[i].now != NULL;
		warren_error err = {0};
		schema_result r;
		char *out = NULL;
		size_t out_len = 0;
		schema_result_init(&r);
		ok(schema_result_set_task_id(&r, TASK_ID, &err), &err);
		encode_cases[i].build(&r);
		if (redis) {
			ok(schema_result_stamp_date_done(&r, encode_cases[i].now, &err), &err);
			ok(schema_result_encode_redis(&r, &out, &out_len, &err), &err);
		} else {
			ok(schema_result_encode_rpc(&r, &out, &out_len, &err), &err);
		}
		bytes want = fixture(name);
		expect_bytes(out, out_len, want.data, want.len, name);
		free(want.data);
		free(out);
		schema_result_release(&r);
	}
}

Test(schemas_result, every_fixture_decodes_and_reencodes_to_the_same_bytes)
{
	for (size_t i = 0; i < sizeof encode_cases / sizeof encode_cases[0]; i++) {
		const char *name = encode_cases[i].name;
		warren_error err = {0};
		schema_result r;
		char *out = NULL;
		size_t out_len = 0;
		decode_fixture(name, &r);
		if (strncmp(name, "redis", 5) == 0)
			ok(schema_result_encode_redis(&r, &out, &out_len, &err), &err);
		else
			ok(schema_result_encode_rpc(&r, &out, &out_len, &err), &err);
		bytes want = fixture(name);
		expect_bytes(out, out_len, want.data, want.len, name);
		free(want.data);
		free(out);
		schema_result_release(&r);
	}
}

Test(schemas_result, redis_meta_round_trips_every_field)
{
	warren_error err = {0};
	schema_result r, back;
	char *out = NULL;
	size_t out_len = 0;
	schema_result_init(&r);
	schema_result_init(&back);
	ok(schema_result_set_task_id(&r, "t-1", &err), &err);
	build_extended(&r);
	ok(schema_result_set_parent_id(&r, "p-1", &err), &err);
	ok(schema_result_set_traceback(&r, "tb", &err), &err);
	ok(schema_result_set_children(&r, "\x91\x92\x92\xa1" "c\xc0\xc0", 7, &err), &err);
	ok(schema_result_stamp_date_done(&r, &FROZEN, &err), &err);
	ok(schema_result_encode_redis(&r, &out, &out_len, &err), &err);
	ok(decode_with(true, out, out_len, &back, &err), &err);
	cr_expect_str_eq(back.task_id, "t-1");
	cr_expect_eq(back.state, SCHEMA_STATE_SUCCESS);
	expect_bytes(back.result_mp, back.result_len, "\x05", 1, "result");
	cr_expect_str_eq(back.traceback, "tb");
	expect_bytes(back.children_mp, back.children_len, r.children_mp, r.children_len,
		     "children");
	cr_expect_str_eq(back.date_done, "2026-11-27T10:19:08.323802");
	cr_expect_str_eq(back.group_id, GROUP_ID);
	cr_expect_str_eq(back.parent_id, "p-1");
	cr_expect(back.extended);
	cr_expect_str_eq(back.name, "math.add");
	cr_expect_eq(back.retries, 2);
	cr_expect_str_eq(back.worker, "w1@host");
	cr_expect_str_eq(back.queue, "celery");
	free(out);
	schema_result_release(&r);
	schema_result_release(&back);
}

Test(schemas_result, rpc_round_trips_every_state)
{
	for (int s = SCHEMA_STATE_PENDING; s <= SCHEMA_STATE_IGNORED; s++) {
		warren_error err = {0};
		schema_result r, back;
		char *out = NULL;
		size_t out_len = 0;
		schema_result_init(&r);
		schema_result_init(&back);
		ok(schema_result_set_task_id(&r, "t", &err), &err);
		r.state = (schema_state)s;
		ok(schema_result_encode_rpc(&r, &out, &out_len, &err), &err);
		ok(decode_with(false, out, out_len, &back, &err), &err);
		cr_expect_eq((int)back.state, s, "%s", schema_state_name((schema_state)s));
		cr_expect_null(back.result_mp, "nil result decodes as NULL");
		free(out);
		schema_result_release(&r);
		schema_result_release(&back);
	}
}

Test(schemas_result, nil_children_encode_as_an_empty_list)
{
	warren_error err = {0};
	schema_result r;
	char *out = NULL;
	size_t out_len = 0;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t", &err), &err);
	ok(schema_result_encode_rpc(&r, &out, &out_len, &err), &err);
	cr_assert_geq(out_len, 10);
	expect_bytes(out + out_len - 10, 10, "\xa8" "children" "\x90", 10, "tail");
	free(out);
	schema_result_release(&r);
}

/* ---- setters and date_done ---- */

Test(schemas_result, date_done_is_naive_isoformat_only_when_ready)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	build_success_int(&r);
	ok(schema_result_stamp_date_done(&r, &FROZEN, &err), &err);
	cr_expect_str_eq(r.date_done, "2026-11-27T10:19:08.323802");
	struct timespec sub_usec = {0, 999};
	ok(schema_result_stamp_date_done(&r, &sub_usec, &err), &err);
	cr_expect_str_eq(r.date_done, "1970-01-01T00:00:00", "no fraction when usec is 0");
	struct timespec one_usec = {0, 1000};
	ok(schema_result_stamp_date_done(&r, &one_usec, &err), &err);
	cr_expect_str_eq(r.date_done, "1970-01-01T00:00:00.000001");
	ok(schema_result_stamp_date_done(&r, NULL, &err), &err);
	cr_expect_eq(strlen(r.date_done) == 19 || strlen(r.date_done) == 26, 1, "%s",
		     r.date_done);
	build_started(&r);
	ok(schema_result_stamp_date_done(&r, &FROZEN, &err), &err);
	cr_expect_null(r.date_done, "STARTED is not ready");
	schema_result_release(&r);
}

Test(schemas_result, setters_replace_and_clear)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "a", &err), &err);
	ok(schema_result_set_task_id(&r, "b", &err), &err);
	cr_expect_str_eq(r.task_id, "b");
	ok(schema_result_set_task_id(&r, NULL, &err), &err);
	cr_expect_null(r.task_id);
	ok(schema_result_set_value(&r, "\x01", 1, &err), &err);
	ok(schema_result_set_value(&r, NULL, 0, &err), &err);
	cr_expect_null(r.result_mp);
	cr_expect_eq(r.result_len, 0);
	build_failure(&r);
	build_success_int(&r);
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS);
	schema_result_release(&r);
	schema_result_release(&r); /* twice is fine */
	cr_expect_null(r.traceback);
}

Test(schemas_result, exception_without_message_has_empty_args)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "KeyError", NULL, NULL, &err),
	   &err);
	/* {"exc_type": "KeyError", "exc_message": [], "exc_module": nil} */
	static const char want[] = "\x83\xa8" "exc_type" "\xa8" "KeyError"
				   "\xab" "exc_message" "\x90"
				   "\xaa" "exc_module" "\xc0";
	expect_bytes(r.result_mp, r.result_len, want, sizeof want - 1, "result");
	schema_exc exc;
	ok(schema_exc_read(r.result_mp, r.result_len, &exc, &err), &err);
	cr_expect_str_eq(exc.message, "");
	cr_expect_null(exc.module);
	schema_exc_release(&exc);
	schema_result_release(&r);
}

Test(schemas_result, setter_errors)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	cr_expect_eq(schema_result_set_revoked(&r, (schema_revoke_reason)7, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result: revoke reason 7 unknown");
	warren_error_clear(&err);
	cr_expect_eq(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, NULL, "m", "x", &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result: exception without a type");
	warren_error_clear(&err);
	char *out = NULL;
	size_t out_len = 0;
	cr_expect_eq(schema_result_encode_rpc(&r, &out, &out_len, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result: no task_id to encode");
	warren_error_clear(&err);
	cr_expect_eq(schema_result_encode_redis(&r, &out, &out_len, &err), WARREN_EINVAL);
	cr_expect_null(out);
	schema_result_release(&r);
}

/* ---- decoding errors ---- */

/* Packs a map of n string-keyed pairs; the caller then packs the values. */
static void decode_error_case(bool redis, const packed *in, int want_rc, const char *want_msg)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	schema_result_set_task_id(&r, "stale", NULL); /* must be released, not leaked */
	int rc = decode_with(redis, in->sb.data, in->sb.size, &r, &err);
	cr_expect_eq(rc, want_rc, "rc %d: %s", rc, err.msg);
	cr_expect_str_eq(err.msg, want_msg);
	cr_expect_null(r.task_id, "a failed decode leaves the result released");
	schema_result_release(&r);
}

/* {task_id: "t", status: "SUCCESS", <key>: <value packed by fn>} */
static void with_bad_field(bool redis, const char *key, void (*value)(msgpack_packer *),
			   const char *want_msg)
{
	packed in;
	packed_init(&in);
	msgpack_pack_map(&in.pk, 3);
	pack_str(&in.pk, "task_id");
	pack_str(&in.pk, "t");
	pack_str(&in.pk, "status");
	pack_str(&in.pk, "SUCCESS");
	pack_str(&in.pk, key);
	value(&in.pk);
	decode_error_case(redis, &in, WARREN_EDECODE, want_msg);
	msgpack_sbuffer_destroy(&in.sb);
}

static void v_int(msgpack_packer *pk) { msgpack_pack_int(pk, 5); }
static void v_list(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void v_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void v_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void v_float(msgpack_packer *pk) { msgpack_pack_double(pk, 1.5); }
static void v_str(msgpack_packer *pk) { pack_str(pk, "x"); }
static void v_bin(msgpack_packer *pk) { msgpack_pack_bin(pk, 1); msgpack_pack_bin_body(pk, "x", 1); }
static void v_nul_str(msgpack_packer *pk) { msgpack_pack_str(pk, 3); msgpack_pack_str_body(pk, "a\0b", 3); }
static void v_bogus_state(msgpack_packer *pk) { pack_str(pk, "BOGUS"); }
static void v_big_uint(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }

Test(schemas_result, field_type_errors_name_the_key)
{
	with_bad_field(false, "status", v_int, "result: \"status\" is an int, expected a string");
	with_bad_field(false, "status", v_bogus_state, "result: unknown state \"BOGUS\"");
	with_bad_field(false, "task_id", v_list,
		       "result: \"task_id\" is a list, expected a string or nil");
	with_bad_field(false, "task_id", v_nul_str, "result: \"task_id\" contains a NUL byte");
	with_bad_field(false, "traceback", v_map,
		       "result: \"traceback\" is a map, expected a string or nil");
	with_bad_field(false, "children", v_map,
		       "result: \"children\" is a map, expected a list or nil");
	with_bad_field(true, "date_done", v_float,
		       "result: \"date_done\" is a float, expected a string or nil");
	with_bad_field(true, "group_id", v_true,
		       "result: \"group_id\" is a bool, expected a string or nil");
	with_bad_field(true, "parent_id", v_bin,
		       "result: \"parent_id\" is bytes, expected a string or nil");
	with_bad_field(true, "name", v_int, "result: \"name\" is an int, expected a string or nil");
	with_bad_field(true, "args", v_map, "result: \"args\" is a map, expected a list or nil");
	with_bad_field(true, "kwargs", v_list,
		       "result: \"kwargs\" is a list, expected a map or nil");
	with_bad_field(true, "worker", v_list,
		       "result: \"worker\" is a list, expected a string or nil");
	with_bad_field(true, "retries", v_str,
		       "result: \"retries\" is a string, expected an int or nil");
	with_bad_field(true, "retries", v_big_uint,
		       "result: \"retries\" is out of range");
	with_bad_field(true, "queue", v_int, "result: \"queue\" is an int, expected a string or nil");
}

Test(schemas_result, not_a_map_and_missing_keys)
{
	packed in;
	packed_init(&in);
	msgpack_pack_array(&in.pk, 0);
	decode_error_case(false, &in, WARREN_EDECODE, "result: is a list, expected a map");
	msgpack_sbuffer_destroy(&in.sb);

	packed_init(&in);
	msgpack_pack_map(&in.pk, 1);
	pack_str(&in.pk, "task_id");
	pack_str(&in.pk, "t");
	decode_error_case(true, &in, WARREN_EDECODE, "result: \"status\" is missing");
	msgpack_sbuffer_destroy(&in.sb);

	packed_init(&in);
	msgpack_pack_map(&in.pk, 1);
	pack_str(&in.pk, "status");
	pack_str(&in.pk, "SUCCESS");
	decode_error_case(false, &in, WARREN_EDECODE, "result: \"task_id\" is missing");
	/* The Redis meta does not need task_id (the key names the task). */
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(decode_with(true, in.sb.data, in.sb.size, &r, &err), &err);
	cr_expect_null(r.task_id);
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&in.sb);
}

Test(schemas_result, unknown_keys_and_non_string_keys_are_ignored)
{
	packed in;
	packed_init(&in);
	msgpack_pack_map(&in.pk, 4);
	pack_str(&in.pk, "status");
	pack_str(&in.pk, "FAILURE");
	pack_str(&in.pk, "stamped_headers"); /* a Celery 5.3 addition */
	msgpack_pack_array(&in.pk, 1);
	pack_str(&in.pk, "x");
	msgpack_pack_int(&in.pk, 7);
	pack_str(&in.pk, "ignored");
	pack_str(&in.pk, "task_id");
	pack_str(&in.pk, "t");
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(decode_with(false, in.sb.data, in.sb.size, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE);
	cr_expect_str_eq(r.task_id, "t");
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&in.sb);
}

Test(schemas_result, traceback_with_nul_is_cut_not_refused)
{
	packed in;
	packed_init(&in);
	msgpack_pack_map(&in.pk, 3);
	pack_str(&in.pk, "task_id");
	pack_str(&in.pk, "t");
	pack_str(&in.pk, "status");
	pack_str(&in.pk, "FAILURE");
	pack_str(&in.pk, "traceback");
	v_nul_str(&in.pk);
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(decode_with(false, in.sb.data, in.sb.size, &r, &err), &err);
	cr_expect_str_eq(r.traceback, "a");
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&in.sb);
}

/* ---- bytes-level decoding through schema_unpack ---- */

Test(schemas_result, decodes_bytes_through_the_limited_unpacker)
{
	warren_error err = {0};
	schema_result r;
	bytes b = fixture("rpc_failure");
	schema_result_init(&r);
	ok(schema_result_decode_rpc(b.data, b.len, NULL, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE);
	cr_expect_str_eq(r.traceback, TRACEBACK);
	schema_result_release(&r);

	bytes m = fixture("redis_success_ids");
	ok(schema_result_decode_redis(m.data, m.len, NULL, &r, &err), &err);
	cr_expect_str_eq(r.group_id, GROUP_ID);
	schema_result_release(&r);
	free(m.data);

	/* Truncated: the unpacker's error, named after the input. */
	int rc = schema_result_decode_rpc(b.data, b.len - 3, NULL, &r, &err);
	cr_expect_eq(rc, WARREN_EDECODE, "%s", err.msg);
	cr_expect_eq(strncmp(err.msg, "result: ", 8), 0, "%s", err.msg);
	cr_expect_null(r.task_id);

	/* A traceback longer than max_str is over a hard limit. */
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_str = 16;
	warren_error_clear(&err);
	rc = schema_result_decode_rpc(b.data, b.len, &lim, &r, &err);
	cr_expect_eq(rc, WARREN_ELIMIT, "%s", err.msg);
	schema_result_release(&r);
	free(b.data);
}

/* ---- reading exceptions ---- */

/* Reads an exc map built from `exc_message` packed by fn. */
static void expect_message(void (*fn)(msgpack_packer *), const char *want)
{
	packed in;
	packed_init(&in);
	msgpack_pack_map(&in.pk, 3);
	pack_str(&in.pk, "exc_type");
	pack_str(&in.pk, "E");
	pack_str(&in.pk, "exc_module");
	pack_str(&in.pk, "m");
	pack_str(&in.pk, "exc_message");
	fn(&in.pk);
	warren_error err = {0};
	schema_exc exc;
	ok(schema_exc_read(in.sb.data, in.sb.size, &exc, &err), &err);
	cr_expect_str_eq(exc.message, want);
	cr_expect_str_eq(exc.type, "E");
	cr_expect_str_eq(exc.module, "m");
	schema_exc_release(&exc);
	msgpack_sbuffer_destroy(&in.sb);
}

static void m_plain_str(msgpack_packer *pk) { pack_str(pk, "old style"); }
static void m_empty(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void m_one_int(msgpack_packer *pk) { msgpack_pack_array(pk, 1); msgpack_pack_int(pk, 42); }
static void m_one_nil(msgpack_packer *pk) { msgpack_pack_array(pk, 1); msgpack_pack_nil(pk); }

static void m_mixed(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 8);
	msgpack_pack_double(pk, 1.5);
	msgpack_pack_nil(pk);
	msgpack_pack_true(pk);
	pack_str(pk, "it's");
	msgpack_pack_bin(pk, 2);
	msgpack_pack_bin_body(pk, "\x00" "a", 2);
	msgpack_pack_double(pk, 3.0);
	msgpack_pack_array(pk, 2);
	msgpack_pack_int(pk, -1);
	pack_str(pk, "a\nb");
	msgpack_pack_map(pk, 1);
	pack_str(pk, "k");
	msgpack_pack_double(pk, 0.1);
}

Test(schemas_result, exc_message_renders_as_python_str_of_the_exception)
{
	expect_message(m_plain_str, "old style");
	expect_message(m_empty, "");
	expect_message(m_one_int, "42");
	expect_message(m_one_nil, "None");
	/* str(E(1.5, None, True, "it's", b'\x00a', 3.0, [-1, 'a\nb'], {'k': 0.1})) */
	expect_message(m_mixed, "(1.5, None, True, \"it's\", b'\\x00a', 3.0, [-1, 'a\\nb'], "
				"{'k': 0.1})");
}

Test(schemas_result, exc_read_errors)
{
	warren_error err = {0};
	schema_exc exc;
	cr_expect_eq(schema_exc_read(NULL, 0, &exc, &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "exception: is nil, expected a map");

	warren_error_clear(&err);
	cr_expect_eq(schema_exc_read("\x05", 1, &exc, &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "exception: is an int, expected a map");

	warren_error_clear(&err);
	cr_expect_eq(schema_exc_read("\x81\xa8" "exc_type" "\x07", 11, &exc, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "exception: \"exc_type\" is an int, expected a string");

	warren_error_clear(&err);
	cr_expect_eq(schema_exc_read("\x81\xaa" "exc_module" "\xa1m", 14, &exc, &err),
		     WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "exception: \"exc_type\" is missing");
	cr_expect_null(exc.module, "released after the error");

	warren_error_clear(&err);
	cr_expect_eq(schema_exc_read("\x81\xa8" "exc_type", 10, &exc, &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "exception: not one msgpack value");
}

Test(schemas_result, exc_without_message_or_module)
{
	warren_error err = {0};
	schema_exc exc;
	ok(schema_exc_read("\x81\xa8" "exc_type" "\xa1" "E", 12, &exc, &err), &err);
	cr_expect_str_eq(exc.type, "E");
	cr_expect_null(exc.module);
	cr_expect_str_eq(exc.message, "");
	cr_expect_null(exc.args_mp);
	schema_exc_release(&exc);
}
