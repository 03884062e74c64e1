/* tests/unit/test_schemas_args.c - task argument schemas (schemas/args.c):
 * Python-style binding of args+kwargs, type checks with previews, result
 * checks and default filling, each error with its exact message. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/schemas.h"

/* math.add(a: int, b: int = 10) -> int */
static const warren_param add_params[] = {
	{"a", WARREN_TYPE_INT, 1, NULL, 0},
	{"b", WARREN_TYPE_INT, 0, "\x0a", 1},
};
static const warren_task_schema add_schema = {add_params, 2, WARREN_TYPE_INT, 0, 0};

/* ---- building msgpack inputs ---- */

/* One value unpacked from packed bytes; destroy with msgpack_unpacked_destroy. */
typedef struct value {
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
} value;

static msgpack_packer *begin(value *v)
{
	msgpack_sbuffer_init(&v->sb);
	msgpack_packer_init(&v->pk, &v->sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&v->u);
	return &v->pk;
}

static const msgpack_object *end(value *v)
{
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(&v->u, v->sb.data, v->sb.size, &off),
		     MSGPACK_UNPACK_SUCCESS);
	return &v->u.data;
}

static void value_destroy(value *v)
{
	msgpack_unpacked_destroy(&v->u);
	msgpack_sbuffer_destroy(&v->sb);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* Each test builds args and kwargs with these, then checks. */
typedef struct call {
	value args, kwargs;
} call;

static void expect_error(const warren_task_schema *schema, call *c, const char *want)
{
	warren_error err = {0};
	const msgpack_object *args = end(&c->args), *kwargs = end(&c->kwargs);
	int rc = schema_args_validate("math.add", schema, args, kwargs, &err);
	cr_expect_eq(rc, WARREN_ESCHEMA, "rc %d: %s", rc, err.msg);
	cr_expect_str_eq(err.msg, want);
	value_destroy(&c->args);
	value_destroy(&c->kwargs);
}

static void expect_ok(const warren_task_schema *schema, call *c)
{
	warren_error err = {0};
	const msgpack_object *args = end(&c->args), *kwargs = end(&c->kwargs);
	cr_expect_eq(schema_args_validate("math.add", schema, args, kwargs, &err), 0, "%s",
		     err.msg);
	value_destroy(&c->args);
	value_destroy(&c->kwargs);
}

/* ---- binding rules ---- */

Test(schemas_args, positional_and_keyword_calls_pass)
{
	call c;
	msgpack_pack_array(begin(&c.args), 2); /* add(2, 3) */
	msgpack_pack_int(&c.args.pk, 2);
	msgpack_pack_int(&c.args.pk, 3);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_ok(&add_schema, &c);

	msgpack_pack_array(begin(&c.args), 1); /* add(2, b=3) */
	msgpack_pack_int(&c.args.pk, 2);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "b");
	msgpack_pack_int(&c.kwargs.pk, -3);
	expect_ok(&add_schema, &c);

	msgpack_pack_array(begin(&c.args), 0); /* add(b=3, a=2) */
	msgpack_pack_map(begin(&c.kwargs), 2);
	pack_str(&c.kwargs.pk, "b");
	msgpack_pack_int(&c.kwargs.pk, 3);
	pack_str(&c.kwargs.pk, "a");
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_ok(&add_schema, &c);

	msgpack_pack_array(begin(&c.args), 1); /* add(2): b has a default */
	msgpack_pack_int(&c.args.pk, 2);
	msgpack_pack_nil(begin(&c.kwargs)); /* nil kwargs count as {} */
	expect_ok(&add_schema, &c);
}

Test(schemas_args, null_args_and_kwargs_count_as_empty)
{
	static const warren_task_schema none = {NULL, 0, WARREN_TYPE_ANY, 0, 0};
	warren_error err = {0};
	cr_expect_eq(schema_args_validate("t.none", &none, NULL, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(schema_args_validate("math.add", &add_schema, NULL, NULL, &err),
		     WARREN_ESCHEMA);
	cr_expect_str_eq(err.msg, "math.add: argument a: required but not given");
}

Test(schemas_args, given_both_ways_is_an_error)
{
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_int(&c.args.pk, 1);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "a");
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_error(&add_schema, &c, "math.add: argument a: given positionally and by keyword");
}

Test(schemas_args, missing_required_is_an_error)
{
	call c;
	msgpack_pack_array(begin(&c.args), 0);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "b");
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_error(&add_schema, &c, "math.add: argument a: required but not given");
}

Test(schemas_args, unknown_keyword_is_an_error_unless_extra_kwargs)
{
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_int(&c.args.pk, 1);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "c");
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_error(&add_schema, &c, "math.add: unexpected keyword argument \"c\"");

	warren_task_schema open = add_schema;
	open.extra_kwargs = 1;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_int(&c.args.pk, 1);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "c");
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_ok(&open, &c);
}

Test(schemas_args, non_string_keyword_is_an_error)
{
	call c;
	msgpack_pack_array(begin(&c.args), 0);
	msgpack_pack_map(begin(&c.kwargs), 1);
	msgpack_pack_int(&c.kwargs.pk, 7);
	msgpack_pack_int(&c.kwargs.pk, 2);
	expect_error(&add_schema, &c, "math.add: kwargs: expected str keys, got int 7");
}

Test(schemas_args, too_many_positionals_is_an_error_unless_extra_args)
{
	call c;
	msgpack_pack_array(begin(&c.args), 3);
	for (int i = 0; i < 3; i++)
		msgpack_pack_int(&c.args.pk, i);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_error(&add_schema, &c,
		     "math.add: takes 2 positional arguments but 3 were given");

	static const warren_param one[] = {{"x", WARREN_TYPE_ANY, 1, NULL, 0}};
	warren_task_schema single = {one, 1, WARREN_TYPE_ANY, 0, 0};
	msgpack_pack_array(begin(&c.args), 2);
	msgpack_pack_int(&c.args.pk, 1);
	msgpack_pack_int(&c.args.pk, 2);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_error(&single, &c, "math.add: takes 1 positional argument but 2 were given");

	warren_task_schema star = add_schema;
	star.extra_args = 1;
	msgpack_pack_array(begin(&c.args), 3);
	for (int i = 0; i < 3; i++)
		msgpack_pack_int(&c.args.pk, i);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_ok(&star, &c);
}

Test(schemas_args, args_and_kwargs_must_be_list_and_map)
{
	call c;
	msgpack_pack_map(begin(&c.args), 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_int(&c.args.pk, i);
		msgpack_pack_int(&c.args.pk, i);
	}
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_error(&add_schema, &c, "math.add: args: expected list, got map of 2");

	msgpack_pack_array(begin(&c.args), 0);
	pack_str(begin(&c.kwargs), "a=1");
	expect_error(&add_schema, &c, "math.add: kwargs: expected map, got str \"a=1\"");
}

/* ---- types and previews ---- */

/* Checks one value given as argument b of type t, positionally. */
static void expect_type(warren_type t, void (*pack)(msgpack_packer *), const char *want)
{
	const warren_param params[] = {{"b", t, 1, NULL, 0}};
	const warren_task_schema schema = {params, 1, WARREN_TYPE_ANY, 0, 0};
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	pack(&c.args.pk);
	msgpack_pack_map(begin(&c.kwargs), 0);
	if (want)
		expect_error(&schema, &c, want);
	else
		expect_ok(&schema, &c);
}

static void p_int(msgpack_packer *pk) { msgpack_pack_int(pk, 42); }
static void p_neg(msgpack_packer *pk) { msgpack_pack_int64(pk, -9000000000LL); }
static void p_big(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
static void p_float(msgpack_packer *pk) { msgpack_pack_double(pk, 2.5); }
static void p_float32(msgpack_packer *pk) { msgpack_pack_float(pk, 0.5f); }
static void p_tenth(msgpack_packer *pk) { msgpack_pack_double(pk, 0.1); }
static void p_x(msgpack_packer *pk) { pack_str(pk, "x"); }
static void p_long(msgpack_packer *pk) { pack_str(pk, "abcdefghijklmnopqrstuvwxyz0123456789"); }
static void p_ctrl(msgpack_packer *pk) { pack_str(pk, "a\nb\tc"); }
/* 23 ASCII bytes then "é" (2 bytes) straddling the 24-byte cut. */
static void p_utf8(msgpack_packer *pk) { pack_str(pk, "aaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9zz"); }
static void p_bytes(msgpack_packer *pk) { msgpack_pack_bin(pk, 4); msgpack_pack_bin_body(pk, "abcd", 4); }
static void p_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void p_false(msgpack_packer *pk) { msgpack_pack_false(pk); }
static void p_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void p_list(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 3);
	for (int i = 0; i < 3; i++)
		msgpack_pack_int(pk, i);
}
static void p_map(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_int(pk, i);
		msgpack_pack_nil(pk);
	}
}
static void p_ext(msgpack_packer *pk) { msgpack_pack_ext(pk, 1, 5); msgpack_pack_ext_body(pk, "x", 1); }

Test(schemas_args, each_type_accepts_its_own_values)
{
	expect_type(WARREN_TYPE_INT, p_int, NULL);
	expect_type(WARREN_TYPE_INT, p_neg, NULL);
	expect_type(WARREN_TYPE_INT, p_big, NULL);
	expect_type(WARREN_TYPE_FLOAT, p_float, NULL);
	expect_type(WARREN_TYPE_FLOAT, p_float32, NULL);
	expect_type(WARREN_TYPE_FLOAT, p_int, NULL); /* an int satisfies float */
	expect_type(WARREN_TYPE_FLOAT, p_neg, NULL);
	expect_type(WARREN_TYPE_STR, p_x, NULL);
	expect_type(WARREN_TYPE_BYTES, p_bytes, NULL);
	expect_type(WARREN_TYPE_BOOL, p_true, NULL);
	expect_type(WARREN_TYPE_BOOL, p_false, NULL);
	expect_type(WARREN_TYPE_LIST, p_list, NULL);
	expect_type(WARREN_TYPE_MAP, p_map, NULL);
	expect_type(WARREN_TYPE_NULL, p_nil, NULL);
	expect_type(WARREN_TYPE_ANY, p_nil, NULL);
	expect_type(WARREN_TYPE_ANY, p_ext, NULL);
}

Test(schemas_args, mismatches_show_a_preview_of_the_value)
{
	expect_type(WARREN_TYPE_INT, p_x, "math.add: argument b: expected int, got str \"x\"");
	expect_type(WARREN_TYPE_INT, p_true, "math.add: argument b: expected int, got bool true");
	expect_type(WARREN_TYPE_INT, p_false,
		    "math.add: argument b: expected int, got bool false");
	expect_type(WARREN_TYPE_INT, p_float, "math.add: argument b: expected int, got float 2.5");
	expect_type(WARREN_TYPE_INT, p_tenth, "math.add: argument b: expected int, got float 0.1");
	expect_type(WARREN_TYPE_INT, p_nil, "math.add: argument b: expected int, got null");
	expect_type(WARREN_TYPE_STR, p_int, "math.add: argument b: expected str, got int 42");
	expect_type(WARREN_TYPE_STR, p_neg,
		    "math.add: argument b: expected str, got int -9000000000");
	expect_type(WARREN_TYPE_STR, p_big,
		    "math.add: argument b: expected str, got int 18446744073709551615");
	expect_type(WARREN_TYPE_STR, p_bytes, "math.add: argument b: expected str, got bytes of 4");
	expect_type(WARREN_TYPE_BYTES, p_x, "math.add: argument b: expected bytes, got str \"x\"");
	expect_type(WARREN_TYPE_BOOL, p_int, "math.add: argument b: expected bool, got int 42");
	expect_type(WARREN_TYPE_FLOAT, p_list,
		    "math.add: argument b: expected float, got list of 3");
	expect_type(WARREN_TYPE_LIST, p_map, "math.add: argument b: expected list, got map of 2");
	expect_type(WARREN_TYPE_MAP, p_list, "math.add: argument b: expected map, got list of 3");
	expect_type(WARREN_TYPE_NULL, p_int, "math.add: argument b: expected null, got int 42");
	expect_type(WARREN_TYPE_STR, p_ext, "math.add: argument b: expected str, got ext type 5");
	expect_type(WARREN_TYPE_STR, p_float32,
		    "math.add: argument b: expected str, got float 0.5");
}

Test(schemas_args, long_and_odd_strings_are_cut_and_cleaned)
{
	expect_type(WARREN_TYPE_INT, p_long,
		    "math.add: argument b: expected int, got str \"abcdefghijklmnopqrstuvwx...\"");
	expect_type(WARREN_TYPE_INT, p_ctrl,
		    "math.add: argument b: expected int, got str \"a?b?c\"");
	expect_type(WARREN_TYPE_INT, p_utf8,
		    "math.add: argument b: expected int, got str \"aaaaaaaaaaaaaaaaaaaaaaa...\"");
}

Test(schemas_args, keyword_values_are_type_checked_too)
{
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_int(&c.args.pk, 1);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "b");
	pack_str(&c.kwargs.pk, "x");
	expect_error(&add_schema, &c, "math.add: argument b: expected int, got str \"x\"");
}

Test(schemas_args, none_is_accepted_where_the_default_is_none)
{
	static const warren_param params[] = {
		{"a", WARREN_TYPE_INT, 0, "\xc0", 1},
		{"b", WARREN_TYPE_INT, 0, "\x00", 1},
	};
	static const warren_task_schema schema = {params, 2, WARREN_TYPE_ANY, 0, 0};
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_nil(&c.args.pk);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_ok(&schema, &c);

	msgpack_pack_array(begin(&c.args), 2);
	msgpack_pack_nil(&c.args.pk);
	msgpack_pack_nil(&c.args.pk);
	msgpack_pack_map(begin(&c.kwargs), 0);
	expect_error(&schema, &c, "math.add: argument b: expected int, got null");
}

/* ---- results ---- */

Test(schemas_args, result_is_checked_against_the_result_type)
{
	warren_error err = {0};
	value v;
	p_x(begin(&v));
	cr_expect_eq(schema_args_validate_result("math.add", &add_schema, end(&v), &err),
		     WARREN_ESCHEMA);
	cr_expect_str_eq(err.msg, "math.add: result: expected int, got str \"x\"");
	value_destroy(&v);

	warren_error_clear(&err);
	p_int(begin(&v));
	cr_expect_eq(schema_args_validate_result("math.add", &add_schema, end(&v), &err), 0, "%s",
		     err.msg);
	value_destroy(&v);

	warren_task_schema any = add_schema;
	any.result = WARREN_TYPE_ANY;
	p_ext(begin(&v));
	cr_expect_eq(schema_args_validate_result("math.add", &any, end(&v), &err), 0);
	value_destroy(&v);

	any.result = WARREN_TYPE_FLOAT;
	p_int(begin(&v));
	cr_expect_eq(schema_args_validate_result("math.add", &any, end(&v), &err), 0);
	value_destroy(&v);
}

/* ---- binding with defaults ---- */

Test(schemas_args, bind_fills_values_and_defaults_by_position)
{
	/* f(a: int, b: int = 10, c: str = "hi", d: any (optional, no default)) */
	static const warren_param params[] = {
		{"a", WARREN_TYPE_INT, 1, NULL, 0},
		{"b", WARREN_TYPE_INT, 0, "\x0a", 1},
		{"c", WARREN_TYPE_STR, 0, "\xa2hi", 3},
		{"d", WARREN_TYPE_ANY, 0, NULL, 0},
	};
	static const warren_task_schema schema = {params, 4, WARREN_TYPE_ANY, 0, 0};
	warren_error err = {0};
	call c;
	msgpack_pack_array(begin(&c.args), 1);
	msgpack_pack_int(&c.args.pk, 7);
	msgpack_pack_map(begin(&c.kwargs), 1);
	pack_str(&c.kwargs.pk, "c");
	pack_str(&c.kwargs.pk, "yo");
	const msgpack_object *args = end(&c.args), *kwargs = end(&c.kwargs);

	msgpack_zone *zone = msgpack_zone_new(1024);
	msgpack_object values[4];
	cr_assert_eq(schema_args_bind("f", &schema, args, kwargs, zone, values, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(values[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_expect_eq(values[0].via.u64, 7);
	cr_expect_eq(values[1].type, MSGPACK_OBJECT_POSITIVE_INTEGER, "default of b");
	cr_expect_eq(values[1].via.u64, 10);
	cr_expect_eq(values[2].type, MSGPACK_OBJECT_STR, "c from kwargs");
	cr_expect_eq(values[2].via.str.size, 2);
	cr_expect_eq(memcmp(values[2].via.str.ptr, "yo", 2), 0);
	cr_expect_eq(values[3].type, MSGPACK_OBJECT_NIL, "no default: nil");
	msgpack_zone_free(zone);
	value_destroy(&c.args);
	value_destroy(&c.kwargs);
}

Test(schemas_args, bind_takes_the_last_of_duplicate_keywords_like_python)
{
	warren_error err = {0};
	call c;
	msgpack_pack_array(begin(&c.args), 0);
	msgpack_pack_map(begin(&c.kwargs), 3);
	pack_str(&c.kwargs.pk, "a");
	msgpack_pack_int(&c.kwargs.pk, 1);
	pack_str(&c.kwargs.pk, "b");
	msgpack_pack_int(&c.kwargs.pk, 2);
	pack_str(&c.kwargs.pk, "a");
	msgpack_pack_int(&c.kwargs.pk, 3);
	const msgpack_object *args = end(&c.args), *kwargs = end(&c.kwargs);
	msgpack_zone *zone = msgpack_zone_new(256);
	msgpack_object values[2];
	cr_assert_eq(schema_args_bind("math.add", &add_schema, args, kwargs, zone, values, &err),
		     0, "%s", err.msg);
	cr_expect_eq(values[0].via.u64, 3);
	cr_expect_eq(values[1].via.u64, 2);
	msgpack_zone_free(zone);
	value_destroy(&c.args);
	value_destroy(&c.kwargs);
}

Test(schemas_args, bind_reports_errors_and_bad_defaults)
{
	warren_error err = {0};
	msgpack_zone *zone = msgpack_zone_new(256);
	msgpack_object values[2];
	cr_expect_eq(schema_args_bind("math.add", &add_schema, NULL, NULL, zone, values, &err),
		     WARREN_ESCHEMA);
	cr_expect_str_eq(err.msg, "math.add: argument a: required but not given");

	static const warren_param broken[] = {
		{"a", WARREN_TYPE_INT, 0, "\x92\x01", 2}, /* a list of 2 with one element */
	};
	static const warren_param trailing[] = {
		{"a", WARREN_TYPE_INT, 0, "\x01\x02", 2}, /* two values */
	};
	warren_task_schema schema = {broken, 1, WARREN_TYPE_ANY, 0, 0};
	warren_error_clear(&err);
	cr_expect_eq(schema_args_bind("t.x", &schema, NULL, NULL, zone, values, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "t.x: argument a: default is not one msgpack value");
	schema.params = trailing;
	warren_error_clear(&err);
	cr_expect_eq(schema_args_bind("t.x", &schema, NULL, NULL, zone, values, &err),
		     WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "t.x: argument a: default is not one msgpack value");
	/* validate alone does not read defaults */
	warren_error_clear(&err);
	cr_expect_eq(schema_args_validate("t.x", &schema, NULL, NULL, &err), 0);
	msgpack_zone_free(zone);
}

Test(schemas_args, preview_respects_small_buffers)
{
	value v;
	p_long(begin(&v));
	char buf[8];
	cr_expect_str_eq(schema_value_preview(end(&v), buf, sizeof buf), "str \"ab");
	value_destroy(&v);
}
