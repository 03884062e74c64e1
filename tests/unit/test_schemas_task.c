/* tests/unit/test_schemas_task.c - Celery v2 task messages: decoding the
 * golden messages real Celery 5.2 produced (tests/fixtures/celery/, made by
 * tests/interop/gen_celery_fixtures.py), byte-exact re-encoding, the builder,
 * repr, and every decode error with its message. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/schemas.h"

#define FIXTURE_DIR WARREN_SOURCE_DIR "/tests/fixtures/celery/"

typedef struct fixture {
	json_t *root;
	schema_task_props props;
	uint8_t *headers, *body;
	size_t headers_len, body_len;
} fixture;

static uint8_t *from_hex(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	uint8_t *out = malloc(n ? n : 1);
	cr_assert_not_null(out);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	*len = n;
	return out;
}

static const char *opt_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void fixture_load(fixture *f, const char *name)
{
	char path[512];
	snprintf(path, sizeof path, FIXTURE_DIR "%s.json", name);
	json_error_t jerr;
	f->root = json_load_file(path, 0, &jerr);
	cr_assert_not_null(f->root, "%s: %s", path, jerr.text);
	json_t *p = json_object_get(f->root, "properties");
	memset(&f->props, 0, sizeof f->props);
	f->props.content_type = opt_str(p, "content_type");
	f->props.content_encoding = opt_str(p, "content_encoding");
	f->props.correlation_id = opt_str(p, "correlation_id");
	f->props.reply_to = opt_str(p, "reply_to");
	f->props.expiration = opt_str(p, "expiration");
	if (json_is_integer(json_object_get(p, "priority"))) {
		f->props.has_priority = true;
		f->props.priority = (uint8_t)json_integer_value(json_object_get(p, "priority"));
	}
	if (json_is_integer(json_object_get(p, "delivery_mode"))) {
		f->props.has_delivery_mode = true;
		f->props.delivery_mode = (uint8_t)json_integer_value(json_object_get(p, "delivery_mode"));
	}
	f->headers = from_hex(opt_str(f->root, "headers_msgpack"), &f->headers_len);
	f->body = from_hex(opt_str(f->root, "body"), &f->body_len);
}

static void fixture_release(fixture *f)
{
	json_decref(f->root);
	free(f->headers);
	free(f->body);
}

static int fixture_decode(const fixture *f, schema_task_msg **out, warren_error *err)
{
	schema_limits lim;
	schema_limits_default(&lim);
	return schema_task_decode(&f->props, f->headers, f->headers_len, f->body,
				  f->body_len, &lim, out, err);
}

/* Compares a msgpack value with the generator's tagged JSON: {"$bytes": hex},
 * {"$int": "decimal"} beyond int64, {"$map": [[k, v]...]}. */
static bool matches(const msgpack_object *o, json_t *j)
{
	json_t *tag;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_is_null(j);
	case MSGPACK_OBJECT_BOOLEAN:
		return json_is_boolean(j) && json_is_true(j) == o->via.boolean;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if ((tag = json_object_get(j, "$int"))) {
			char buf[32];
			snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->via.u64);
			return strcmp(buf, json_string_value(tag)) == 0;
		}
		return json_is_integer(j) && (uint64_t)json_integer_value(j) == o->via.u64 &&
		       json_integer_value(j) >= 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_is_integer(j) && json_integer_value(j) == o->via.i64;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_is_real(j) && json_real_value(j) == o->via.f64;
	case MSGPACK_OBJECT_STR:
		return json_is_string(j) && json_string_length(j) == o->via.str.size &&
		       memcmp(json_string_value(j), o->via.str.ptr, o->via.str.size) == 0;
	case MSGPACK_OBJECT_BIN: {
		tag = json_object_get(j, "$bytes");
		if (!json_is_string(tag) || json_string_length(tag) != 2 * o->via.bin.size)
			return false;
		for (uint32_t i = 0; i < o->via.bin.size; i++) {
			unsigned v;
			sscanf(json_string_value(tag) + 2 * i, "%2x", &v);
			if (v != (uint8_t)o->via.bin.ptr[i])
				return false;
		}
		return true;
	}
	case MSGPACK_OBJECT_ARRAY:
		if (!json_is_array(j) || json_array_size(j) != o->via.array.size)
			return false;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if (!matches(&o->via.array.ptr[i], json_array_get(j, i)))
				return false;
		return true;
	case MSGPACK_OBJECT_MAP:
		if (!json_is_object(j) || json_object_size(j) != o->via.map.size)
			return false;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR)
				return false;
			char key[256];
			snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
			if (!matches(&kv->val, json_object_get(j, key)))
				return false;
		}
		return true;
	default:
		return false;
	}
}

static void expect_str(const char *got, json_t *want, const char *what)
{
	if (json_is_null(want) || !want)
		cr_expect_null(got, "%s: expected absent, got '%s'", what, got ? got : "");
	else
		cr_expect(got && strcmp(got, json_string_value(want)) == 0, "%s: '%s' != '%s'",
			  what, got ? got : "(null)", json_string_value(want));
}

static void expect_signature(const schema_signature *sig, json_t *want, const char *where);

static void expect_sig_list(const schema_signature *sigs, size_t n, json_t *want, const char *where)
{
	if (json_is_null(want)) {
		cr_expect_eq(n, 0, "%s: expected none", where);
		return;
	}
	cr_assert_eq(n, json_array_size(want), "%s: %zu signatures", where, n);
	for (size_t i = 0; i < n; i++)
		expect_signature(&sigs[i], json_array_get(want, i), where);
}

static void expect_signature(const schema_signature *sig, json_t *want, const char *where)
{
	expect_str(sig->task, json_object_get(want, "task"), where);
	cr_expect(matches(&sig->args, json_object_get(want, "args")), "%s: args", where);
	cr_expect(matches(&sig->kwargs, json_object_get(want, "kwargs")), "%s: kwargs", where);
	cr_expect(matches(&sig->options, json_object_get(want, "options")), "%s: options", where);
	expect_str(sig->subtask_type, json_object_get(want, "subtask_type"), where);
	cr_expect_eq(sig->immutable, json_is_true(json_object_get(want, "immutable")), "%s", where);
	json_t *tasks = json_object_get(json_object_get(want, "kwargs"), "tasks");
	if (tasks)
		expect_sig_list(sig->tasks, sig->n_tasks, tasks, where);
	else
		cr_expect_eq(sig->n_tasks, 0, "%s", where);
}

static void expect_limit(bool has, double v, json_t *want, const char *what)
{
	if (json_is_null(want))
		cr_expect_not(has, "%s: expected none", what);
	else
		cr_expect(has && v == json_number_value(want), "%s: %g", what, v);
}

/* Checks every field of the decoded message against the fixture. */
static void expect_matches_fixture(const schema_task_msg *m, const fixture *f)
{
	json_t *props = json_object_get(f->root, "properties");
	json_t *exp = json_object_get(f->root, "expected");
	json_t *h = json_object_get(exp, "headers");
	expect_str(m->props.content_type, json_object_get(props, "content_type"), "content_type");
	expect_str(m->props.content_encoding, json_object_get(props, "content_encoding"), "content_encoding");
	expect_str(m->props.correlation_id, json_object_get(props, "correlation_id"), "correlation_id");
	expect_str(m->props.reply_to, json_object_get(props, "reply_to"), "reply_to");
	expect_str(m->props.expiration, json_object_get(props, "expiration"), "expiration");
	cr_expect_eq(m->props.priority, f->props.priority);
	cr_expect_eq(m->props.delivery_mode, 2);

	const struct { const char *name; const char *got; } strs[] = {
		{ "lang", m->lang }, { "task", m->task }, { "id", m->id }, { "shadow", m->shadow },
		{ "eta", m->eta }, { "expires", m->expires }, { "group", m->group },
		{ "root_id", m->root_id }, { "parent_id", m->parent_id }, { "argsrepr", m->argsrepr },
		{ "kwargsrepr", m->kwargsrepr }, { "origin", m->origin },
	};
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		expect_str(strs[i].got, json_object_get(h, strs[i].name), strs[i].name);
	json_t *gi = json_object_get(h, "group_index");
	cr_expect_eq(m->has_group_index, !json_is_null(gi));
	if (!json_is_null(gi))
		cr_expect_eq(m->group_index, json_integer_value(gi));
	cr_expect_eq(m->retries, json_integer_value(json_object_get(h, "retries")));
	json_t *tl = json_object_get(h, "timelimit");
	expect_limit(m->has_time_limit, m->time_limit, json_array_get(tl, 0), "hard limit");
	expect_limit(m->has_soft_time_limit, m->soft_time_limit, json_array_get(tl, 1), "soft limit");
	cr_expect_eq(m->ignore_result, json_is_true(json_object_get(h, "ignore_result")));

	cr_expect(matches(&m->args, json_object_get(exp, "args")), "args");
	cr_expect(matches(&m->kwargs, json_object_get(exp, "kwargs")), "kwargs");
	json_t *embed = json_object_get(exp, "embed");
	expect_sig_list(m->callbacks, m->n_callbacks, json_object_get(embed, "callbacks"), "callbacks");
	expect_sig_list(m->errbacks, m->n_errbacks, json_object_get(embed, "errbacks"), "errbacks");
	expect_sig_list(m->chain, m->n_chain, json_object_get(embed, "chain"), "chain");
	json_t *chord = json_object_get(embed, "chord");
	if (json_is_null(chord))
		cr_expect_null(m->chord);
	else
		expect_signature(m->chord, chord, "chord");
}

/* args_span and kwargs_span are where args and kwargs lie in the body: the
 * bytes there unpack to the same values (the worker hands them on as is). */
static void expect_spans_hold(const schema_task_msg *m, const fixture *f)
{
	const msgpack_object *parts[2] = {&m->args, &m->kwargs};
	const schema_span spans[2] = {m->args_span, m->kwargs_span};
	for (int i = 0; i < 2; i++) {
		cr_assert(spans[i].len > 0 && spans[i].off + spans[i].len <= f->body_len,
			  "span %d: %zu+%zu of %zu", i, spans[i].off, spans[i].len, f->body_len);
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		size_t used = 0;
		cr_assert_eq(msgpack_unpack_next(&u, (const char *)f->body + spans[i].off,
						 spans[i].len, &used), MSGPACK_UNPACK_SUCCESS);
		cr_expect_eq(used, spans[i].len, "span %d holds one value exactly", i);
		cr_expect(msgpack_object_equal(u.data, *parts[i]), "span %d: another value", i);
		msgpack_unpacked_destroy(&u);
	}
	cr_expect_eq(m->args_span.off, 1, "args follow the body's array header");
	cr_expect_eq(m->kwargs_span.off, m->args_span.off + m->args_span.len);
}

/* Decodes a fixture, checks every field, then re-encodes it and expects
 * Celery's exact bytes back: same key order, same int widths. */
static void check_fixture(const char *name, bool same_bytes)
{
	fixture f;
	fixture_load(&f, name);
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(fixture_decode(&f, &m, &err), 0, "%s: %s", name, err.msg);
	expect_matches_fixture(m, &f);
	expect_spans_hold(m, &f);

	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_task_props props;
	cr_assert_eq(schema_task_encode(m, &headers, &body, &props, &err), 0, "%s", err.msg);
	if (same_bytes) {
		cr_expect_eq(body.size, f.body_len);
		cr_expect(body.size == f.body_len && memcmp(body.data, f.body, f.body_len) == 0,
			  "%s: body differs from Celery's", name);
		cr_expect(headers.size == f.headers_len &&
			  memcmp(headers.data, f.headers, f.headers_len) == 0,
			  "%s: headers differ from Celery's", name);
	}
	cr_expect_str_eq(props.correlation_id, m->id);
	cr_expect_str_eq(props.content_type, "application/x-msgpack");
	cr_expect_eq(props.delivery_mode, 2);

	/* and what we wrote decodes to the same message */
	fixture again = f;
	again.headers = (uint8_t *)headers.data;
	again.headers_len = headers.size;
	again.body = (uint8_t *)body.data;
	again.body_len = body.size;
	schema_task_msg *m2 = NULL;
	cr_assert_eq(fixture_decode(&again, &m2, &err), 0, "%s", err.msg);
	expect_matches_fixture(m2, &f);
	schema_task_msg_free(m2);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	schema_task_msg_free(m);
	fixture_release(&f);
}

Test(schemas_task, decodes_celery_plain_add_fixture) { check_fixture("plain_add", true); }
Test(schemas_task, decodes_celery_all_options_fixture) { check_fixture("all_options", true); }
Test(schemas_task, decodes_celery_link_fixture) { check_fixture("link_and_link_error", true); }
Test(schemas_task, decodes_celery_chain_fixture) { check_fixture("chain_of_three", true); }
Test(schemas_task, decodes_celery_chord_header_fixture) { check_fixture("chord_header_member", true); }
Test(schemas_task, decodes_celery_rich_kwargs_fixture) { check_fixture("rich_kwargs", true); }
Test(schemas_task, decodes_celery_retried_fixture) { check_fixture("retried", true); }
Test(schemas_task, decodes_group_link_packed_correctly) { check_fixture("link_group_repacked", true); }

Test(schemas_task, chain_fixture_holds_remaining_steps_reversed)
{
	fixture f;
	fixture_load(&f, "chain_of_three");
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(fixture_decode(&f, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m->n_chain, 2);
	cr_expect_str_eq(m->chain[0].task, "tasks.add", "the last step comes first");
	cr_expect_str_eq(m->chain[1].task, "tasks.mul", "chain.pop() runs next");
	cr_expect_str_eq(schema_map_get(&m->chain[1].options, "task_id")->via.str.ptr,
			 "d5a8e3c2-1b4f-4a9e-9c3e-000000000003");
	schema_task_msg_free(m);
	fixture_release(&f);
}

Test(schemas_task, group_link_decodes_its_members)
{
	fixture f;
	fixture_load(&f, "link_group_repacked");
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(fixture_decode(&f, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m->n_callbacks, 1);
	const schema_signature *g = &m->callbacks[0];
	cr_expect_str_eq(g->task, "celery.group");
	cr_expect_str_eq(g->subtask_type, "group");
	cr_assert_eq(g->n_tasks, 2);
	cr_expect_str_eq(g->tasks[1].task, "tasks.mul");
	cr_expect_eq(g->tasks[1].args.via.array.ptr[0].via.u64, 3);
	schema_task_msg_free(m);
	fixture_release(&f);
}

/* celery#4710: Celery writes a group as a map of len(tasks) entries holding
 * six; the bytes cannot be decoded and must be refused, not guessed at. */
Test(schemas_task, celery_corrupt_group_body_is_refused)
{
	fixture f;
	fixture_load(&f, "link_group_celery4710");
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_expect_eq(fixture_decode(&f, &m, &err), WARREN_EDECODE, "%s", err.msg);
	cr_expect_null(m);
	cr_expect(strncmp(err.msg, "body", 4) == 0, "%s", err.msg);
	fixture_release(&f);
}

/* A group built in C inside a chain packs as a correct 6-key map whose
 * kwargs.tasks holds the members. */
Test(schemas_task, encodes_group_in_chain_as_a_correct_map)
{
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_msg_new("tasks.add", &m, &err), 0, "%s", err.msg);
	schema_signature members[2] = { 0 }, steps[2] = { 0 };
	members[0].task = members[1].task = "tasks.mul";
	steps[0].task = "tasks.tsum";
	steps[1].task = "celery.group";
	steps[1].subtask_type = "group";
	steps[1].tasks = members;
	steps[1].n_tasks = 2;
	m->chain = steps;
	m->n_chain = 2;

	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_task_props props;
	cr_assert_eq(schema_task_encode(m, &headers, &body, &props, &err), 0, "%s", err.msg);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 1024);
	msgpack_object obj;
	schema_limits lim;
	schema_limits_default(&lim);
	cr_assert_eq(schema_unpack(body.data, body.size, &lim, "body", &zone, &obj, &err), 0, "%s", err.msg);
	const msgpack_object *group = &schema_map_get(&obj.via.array.ptr[2], "chain")->via.array.ptr[1];
	cr_expect_eq(group->via.map.size, 6);
	const msgpack_object *tasks = schema_map_get(schema_map_get(group, "kwargs"), "tasks");
	cr_assert_not_null(tasks);
	cr_expect_eq(tasks->via.array.size, 2);
	msgpack_zone_destroy(&zone);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	schema_task_msg_free(m);
}

Test(schemas_task, new_message_has_uuid4_id_and_defaults)
{
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_msg_new("math.add", &m, &err), 0, "%s", err.msg);
	cr_expect_str_eq(m->task, "math.add");
	cr_assert_eq(strlen(m->id), 36);
	cr_expect_eq(m->id[14], '4', "version nibble: %s", m->id);
	cr_expect(strchr("89ab", m->id[19]) != NULL, "variant: %s", m->id);
	cr_expect_eq(m->root_id, m->id);
	cr_expect(strncmp(m->origin, "gen", 3) == 0 && strchr(m->origin, '@'), "%s", m->origin);
	schema_task_msg *other = NULL;
	cr_assert_eq(schema_task_msg_new("math.add", &other, &err), 0);
	cr_expect_str_neq(m->id, other->id);
	schema_task_msg_free(other);
	schema_task_msg_free(m);
}

Test(schemas_task, built_message_round_trips)
{
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_msg_new("math.add", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(schema_task_msg_set_args(m, "\x92\x02\x03", 3, &err), 0, "%s", err.msg);
	cr_assert_eq(schema_task_msg_set_kwargs(m, "\x81\xa1z\xc3", 4, &err), 0, "%s", err.msg);
	cr_expect_str_eq(m->argsrepr, "(2, 3)");
	cr_expect_str_eq(m->kwargsrepr, "{'z': True}");
	m->has_time_limit = true;
	m->time_limit = 30;
	m->has_soft_time_limit = true;
	m->soft_time_limit = 2.5;
	m->retries = 4;
	m->eta = schema_task_msg_strdup(m, "2026-01-01T00:00:00+00:00");
	m->props.reply_to = schema_task_msg_strdup(m, "reply-q");
	m->props.priority = 7;

	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_task_props props;
	cr_assert_eq(schema_task_encode(m, &headers, &body, &props, &err), 0, "%s", err.msg);
	cr_expect_str_eq(props.correlation_id, m->id);
	cr_expect_str_eq(props.reply_to, "reply-q");
	cr_expect_eq(props.priority, 7);
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *d = NULL;
	cr_assert_eq(schema_task_decode(&props, headers.data, headers.size, body.data, body.size,
					&lim, &d, &err), 0, "%s", err.msg);
	cr_expect_str_eq(d->task, "math.add");
	cr_expect_str_eq(d->id, m->id);
	cr_expect_str_eq(d->root_id, m->id);
	cr_expect_str_eq(d->lang, "c");
	cr_expect_str_eq(d->eta, "2026-01-01T00:00:00+00:00");
	cr_expect_eq(d->retries, 4);
	cr_expect(d->has_time_limit && d->time_limit == 30);
	cr_expect(d->has_soft_time_limit && d->soft_time_limit == 2.5);
	cr_expect(msgpack_object_equal(d->args, m->args));
	cr_expect(msgpack_object_equal(d->kwargs, m->kwargs));
	cr_expect_null(d->chord);
	cr_expect_eq(d->n_callbacks + d->n_errbacks + d->n_chain, 0);
	schema_task_msg_free(d);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	schema_task_msg_free(m);
}

Test(schemas_task, free_of_null_is_a_no_op)
{
	schema_task_msg_free(NULL);
}

/* ---- decode errors ---- */

static schema_task_props msgpack_props(void)
{
	schema_task_props p = { .content_type = "application/x-msgpack", .content_encoding = "binary" };
	return p;
}

static const char good_headers[] = "\x82\xa4task\xa9tasks.add\xa2id\xa3" "abc";
static const char good_body[] = "\x93\x90\x80\xc0";

static void expect_decode_error(const schema_task_props *props, const char *headers, size_t hlen,
				const char *body, size_t blen, int code, const char *msg)
{
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_expect_eq(schema_task_decode(props, headers, hlen, body, blen, &lim, &m, &err), code,
		     "%s", err.msg);
	cr_expect_null(m);
	cr_expect_str_eq(err.msg, msg);
}

Test(schemas_task, minimal_message_with_nil_embed_decodes)
{
	schema_task_props p = msgpack_props();
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_decode(&p, good_headers, sizeof good_headers - 1, good_body,
					sizeof good_body - 1, &lim, &m, &err), 0, "%s", err.msg);
	cr_expect_str_eq(m->id, "abc");
	cr_expect_null(m->root_id, "absent root_id stays absent on decode");
	cr_expect_not(m->has_time_limit);
	schema_task_msg_free(m);
	/* {} embed too, and unknown headers are ignored */
	const char headers[] = "\x83\xa4task\xa1t\xa2id\xa1i\xa5stamp\x01";
	const char body[] = "\x93\x90\x80\x80";
	cr_assert_eq(schema_task_decode(&p, headers, sizeof headers - 1, body, sizeof body - 1,
					&lim, &m, &err), 0, "%s", err.msg);
	schema_task_msg_free(m);
}

Test(schemas_task, refuses_other_content_types)
{
	schema_task_props p = msgpack_props();
	p.content_type = "application/x-python-serialize";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE,
			    "content type 'application/x-python-serialize' is not 'application/x-msgpack'");
	p.content_type = NULL;
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "content type '' is not 'application/x-msgpack'");
}

Test(schemas_task, missing_task_header_is_named)
{
	schema_task_props p = msgpack_props();
	const char headers[] = "\x81\xa2id\xa1i";
	expect_decode_error(&p, headers, sizeof headers - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'task' is missing");
}

Test(schemas_task, missing_id_header_is_named)
{
	schema_task_props p = msgpack_props();
	const char headers[] = "\x82\xa4task\xa1t\xa2id\xc0";
	expect_decode_error(&p, headers, sizeof headers - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'id' is missing");
}

Test(schemas_task, mistyped_headers_are_named)
{
	schema_task_props p = msgpack_props();
	const char retries[] = "\x83\xa4task\xa1t\xa2id\xa1i\xa7retries\xa1x";
	expect_decode_error(&p, retries, sizeof retries - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'retries' is str, not a non-negative int");
	const char task[] = "\x82\xa4task\x05\xa2id\xa1i";
	expect_decode_error(&p, task, sizeof task - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'task' is int, not str");
	const char tl[] = "\x83\xa4task\xa1t\xa2id\xa1i\xa9timelimit\x91\x01";
	expect_decode_error(&p, tl, sizeof tl - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'timelimit' is array, not an array [hard, soft]");
	const char nul[] = "\x82\xa4task\xa3" "a\0b\xa2id\xa1i";
	expect_decode_error(&p, nul, sizeof nul - 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "header 'task' holds a NUL byte");
	const char notmap[] = "\x90";
	expect_decode_error(&p, notmap, 1, good_body, sizeof good_body - 1,
			    WARREN_EDECODE, "headers: array, not a map");
}

Test(schemas_task, two_element_body_is_refused)
{
	schema_task_props p = msgpack_props();
	const char body[] = "\x92\x90\x80";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, body, sizeof body - 1,
			    WARREN_EDECODE, "body: array of 2, not [args, kwargs, embed]");
	const char map[] = "\x80";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, map, 1,
			    WARREN_EDECODE, "body: map, not [args, kwargs, embed]");
}

Test(schemas_task, body_parts_of_the_wrong_type_are_named)
{
	schema_task_props p = msgpack_props();
	const char args[] = "\x93\x80\x80\xc0";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, args, sizeof args - 1,
			    WARREN_EDECODE, "body[0]: args is map, not an array");
	const char kwargs[] = "\x93\x90\x90\xc0";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, kwargs, sizeof kwargs - 1,
			    WARREN_EDECODE, "body[1]: kwargs is array, not a map");
	const char embed[] = "\x93\x90\x80\x01";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, embed, sizeof embed - 1,
			    WARREN_EDECODE, "body[2]: embed is int, not a map");
}

Test(schemas_task, bad_signatures_name_their_path)
{
	schema_task_props p = msgpack_props();
	/* embed {"chain": [{"args": []}]} */
	const char notask[] = "\x93\x90\x80\x81\xa5" "chain\x91\x81\xa4" "args\x90";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, notask, sizeof notask - 1,
			    WARREN_EDECODE, "body[2][\"chain\"][0]: signature has no 'task'");
	/* embed {"callbacks": [{"task": "t", "kwargs": []}]} */
	const char kw[] = "\x93\x90\x80\x81\xa9" "callbacks\x91\x82\xa4task\xa1t\xa6kwargs\x90";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, kw, sizeof kw - 1,
			    WARREN_EDECODE, "body[2][\"callbacks\"][0]: signature 'kwargs' is array, not map");
	/* embed {"chord": 5} */
	const char chord[] = "\x93\x90\x80\x81\xa5" "chord\x05";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, chord, sizeof chord - 1,
			    WARREN_EDECODE, "body[2][\"chord\"]: signature is int, not a map");
	/* a group without kwargs.tasks */
	const char group[] = "\x93\x90\x80\x81\xa5" "chord\x82\xa4task\xa1g\xacsubtask_type\xa5group";
	expect_decode_error(&p, good_headers, sizeof good_headers - 1, group, sizeof group - 1,
			    WARREN_EDECODE, "body[2][\"chord\"]: group signature has no kwargs 'tasks'");
}

Test(schemas_task, body_over_limits_is_refused)
{
	schema_task_props p = msgpack_props();
	const char deep[] = "\x93\x91\x91\x91\x90\x80\xc0";
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_depth = 3;
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_expect_eq(schema_task_decode(&p, good_headers, sizeof good_headers - 1, deep,
					sizeof deep - 1, &lim, &m, &err), WARREN_ELIMIT);
	cr_expect_str_eq(err.msg, "body: nesting deeper than 3 at [0][0][0]");
}

/* ---- encode errors ---- */

Test(schemas_task, encode_refuses_messages_python_cannot_take)
{
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_msg_new("t", &m, &err), 0);
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	schema_task_props props;
	m->args.type = MSGPACK_OBJECT_MAP;
	cr_expect_eq(schema_task_encode(m, &h, &b, &props, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "task 't': args is map, not an array");
	m->args.type = MSGPACK_OBJECT_ARRAY;
	warren_error_clear(&err);
	m->has_time_limit = true;
	m->time_limit = -1;
	cr_expect_eq(schema_task_encode(m, &h, &b, &props, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "timelimit hard -1 is not a finite non-negative number");
	warren_error_clear(&err);
	m->has_time_limit = false;
	m->id = NULL;
	cr_expect_eq(schema_task_encode(m, &h, &b, &props, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "task 't': no task id");
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
	schema_task_msg_free(m);
}

/* ---- repr ---- */

static void expect_repr(const char *packed, size_t len, bool as_tuple, const char *want)
{
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object obj;
	schema_limits lim;
	schema_limits_default(&lim);
	warren_error err = { 0 };
	cr_assert_eq(schema_unpack(packed, len, &lim, "repr", &zone, &obj, &err), 0, "%s", err.msg);
	char buf[SCHEMA_REPR_MAX + 4];
	schema_repr(&obj, as_tuple, buf, sizeof buf);
	cr_expect_str_eq(buf, want);
	msgpack_zone_destroy(&zone);
}

Test(schemas_task, repr_looks_like_python)
{
	expect_repr("\x90", 1, true, "()");
	expect_repr("\x91\x01", 2, true, "(1,)");
	expect_repr("\x91\x01", 2, false, "[1]");
	expect_repr("\x94\xc0\xc3\xff\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 13, true, "(None, True, -1, 1.5)");
	expect_repr("\x92\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xa4it's", 15, false, "[1.0, \"it's\"]");
	expect_repr("\x81\xa1k\xc4\x02\x00\xff", 7, false, "{'k': b'\\x00\\xff'}");
	expect_repr("\x91\xa3\x61\xc3\xa9", 5, true, "('a\xc3\xa9',)");
	expect_repr("\x91\xa2\x61\xff", 4, true, "('a\\xff',)");
}

Test(schemas_task, repr_is_cut_at_1024_with_dots)
{
	char packed[2004] = { (char)0x91, (char)0xda, 0x07, (char)0xd0 };
	memset(packed + 4, 'a', 2000);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object obj;
	schema_limits lim;
	schema_limits_default(&lim);
	warren_error err = { 0 };
	cr_assert_eq(schema_unpack(packed, sizeof packed, &lim, "repr", &zone, &obj, &err), 0, "%s", err.msg);
	char buf[SCHEMA_REPR_MAX + 4];
	size_t n = schema_repr(&obj, true, buf, sizeof buf);
	cr_expect_eq(n, 1027);
	cr_expect_eq(strlen(buf), 1027);
	cr_expect_str_eq(buf + 1020, "aaaa...");
	msgpack_zone_destroy(&zone);
}
