/* tests/unit/test_schemas_limits.c - schema_unpack, the limit-checking
 * msgpack decoder: every type against msgpack-c's own unpacker, and each
 * limit and malformation with the exact message it gives. */
#include <criterion/criterion.h>
#include <string.h>

#include "schemas/schemas.h"

typedef struct unpacked {
	msgpack_zone zone;
	msgpack_object obj;
	warren_error err;
	int rc;
} unpacked;

static void unpack_with(unpacked *u, const void *data, size_t len, const schema_limits *lim)
{
	memset(u, 0, sizeof *u);
	msgpack_zone_init(&u->zone, 256);
	u->rc = schema_unpack(data, len, lim, "body", &u->zone, &u->obj, &u->err);
}

static void unpack_default(unpacked *u, const void *data, size_t len)
{
	schema_limits lim;
	schema_limits_default(&lim);
	unpack_with(u, data, len, &lim);
}

static void release(unpacked *u)
{
	msgpack_zone_destroy(&u->zone);
}

Test(schemas_limits, defaults_are_the_documented_ones)
{
	schema_limits lim;
	schema_limits_default(&lim);
	cr_expect_eq(lim.max_body, 16u << 20);
	cr_expect_eq(lim.max_depth, 64);
	cr_expect_eq(lim.max_elems, 1000000);
	cr_expect_eq(lim.max_str, 8u << 20);
}

/* Packs one value of every type and width with msgpack-c, then checks our
 * decoder yields the same object tree as msgpack_unpack. */
Test(schemas_limits, decodes_every_type_like_msgpack_c)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 30);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_false(&pk);
	msgpack_pack_uint8(&pk, 7);            /* fixint */
	msgpack_pack_uint8(&pk, 200);          /* uint8 */
	msgpack_pack_uint16(&pk, 60000);
	msgpack_pack_uint32(&pk, 4000000000u);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	msgpack_pack_int8(&pk, -5);            /* negative fixint */
	msgpack_pack_int8(&pk, -100);
	msgpack_pack_int16(&pk, -30000);
	msgpack_pack_int32(&pk, -2000000000);
	msgpack_pack_int64(&pk, INT64_MIN);
	msgpack_pack_float(&pk, 1.5f);
	msgpack_pack_double(&pk, -2.25e300);
	msgpack_pack_str_with_body(&pk, "hi", 2);
	char big[70000];
	memset(big, 'x', sizeof big);
	msgpack_pack_str_with_body(&pk, big, 40);     /* str8 */
	msgpack_pack_str_with_body(&pk, big, 300);    /* str16 */
	msgpack_pack_str_with_body(&pk, big, 70000);  /* str32 */
	msgpack_pack_bin_with_body(&pk, "\x00\xff", 2);
	msgpack_pack_bin_with_body(&pk, big, 300);
	msgpack_pack_ext_with_body(&pk, "a", 1, 5);   /* fixext1 */
	msgpack_pack_ext_with_body(&pk, big, 16, -1); /* fixext16 */
	msgpack_pack_ext_with_body(&pk, big, 3, 9);   /* ext8 */
	msgpack_pack_array(&pk, 20);                  /* array16 */
	for (int i = 0; i < 20; i++)
		msgpack_pack_int(&pk, i);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_map(&pk, 17);                    /* map16 */
	for (int i = 0; i < 17; i++) {
		msgpack_pack_int(&pk, i);
		msgpack_pack_int(&pk, -i);
	}
	msgpack_pack_array(&pk, 0);
	msgpack_pack_map(&pk, 0);
	msgpack_pack_str_with_body(&pk, "", 0);

	unpacked u;
	unpack_default(&u, sb.data, sb.size);
	cr_assert_eq(u.rc, 0, "%s", u.err.msg);
	msgpack_zone ref_zone;
	msgpack_zone_init(&ref_zone, 1024);
	msgpack_object ref;
	cr_assert_eq(msgpack_unpack(sb.data, sb.size, NULL, &ref_zone, &ref), MSGPACK_UNPACK_SUCCESS);
	cr_expect(msgpack_object_equal(u.obj, ref));
	cr_expect_eq(u.obj.via.array.ptr[13].type, MSGPACK_OBJECT_FLOAT32);
	cr_expect_str_eq(u.obj.via.array.ptr[15].via.str.ptr, "hi", "str copies end in a NUL");
	cr_expect_eq(u.obj.via.array.ptr[21].via.ext.type, 5);
	msgpack_zone_destroy(&ref_zone);
	release(&u);
	msgpack_sbuffer_destroy(&sb);
}

Test(schemas_limits, copies_strings_out_of_the_input)
{
	uint8_t in[] = { 0xa2, 'o', 'k' };
	unpacked u;
	unpack_default(&u, in, sizeof in);
	cr_assert_eq(u.rc, 0, "%s", u.err.msg);
	memset(in, 0, sizeof in);
	cr_expect_str_eq(u.obj.via.str.ptr, "ok");
	release(&u);
}

static void expect_error(const uint8_t *in, size_t len, const schema_limits *lim,
			 int code, const char *msg)
{
	unpacked u;
	if (lim)
		unpack_with(&u, in, len, lim);
	else
		unpack_default(&u, in, len);
	cr_expect_eq(u.rc, code, "rc %d: %s", u.rc, u.err.msg);
	cr_expect_str_eq(u.err.msg, msg);
	release(&u);
}

Test(schemas_limits, nesting_deeper_than_the_limit_names_the_path)
{
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_depth = 2;
	/* [[0, [1]]]: the innermost array is the third level, at [0][1]. */
	const uint8_t in[] = { 0x91, 0x92, 0x00, 0x91, 0x01 };
	expect_error(in, sizeof in, &lim, WARREN_ELIMIT, "body: nesting deeper than 2 at [0][1]");
}

Test(schemas_limits, default_depth_takes_64_levels_and_refuses_65)
{
	uint8_t in[66];
	memset(in, 0x91, 65);
	in[65] = 0xc0;
	unpacked u;
	unpack_default(&u, in + 1, 65); /* 64 arrays around a nil */
	cr_expect_eq(u.rc, 0, "%s", u.err.msg);
	release(&u);
	unpack_default(&u, in, 66);
	cr_expect_eq(u.rc, WARREN_ELIMIT);
	cr_expect(strncmp(u.err.msg, "body: nesting deeper than 64 at [0][0]", 38) == 0, "%s", u.err.msg);
	release(&u);
}

Test(schemas_limits, truncation_names_byte_and_path)
{
	/* [1, 2, {"chain": <str of 5, only 2 bytes>}] */
	const uint8_t in[] = { 0x93, 0x01, 0x02, 0x81, 0xa5, 'c', 'h', 'a', 'i', 'n', 0xa5, 'a', 'b' };
	expect_error(in, sizeof in, NULL, WARREN_EDECODE, "body: truncated at byte 10 in [2][\"chain\"]");
}

Test(schemas_limits, truncated_at_the_top_has_no_path)
{
	const uint8_t in[] = { 0xcd, 0x01 };
	expect_error(in, sizeof in, NULL, WARREN_EDECODE, "body: truncated at byte 0");
}

Test(schemas_limits, string_over_the_limit_is_refused_before_reading)
{
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_str = 8;
	const uint8_t in[] = { 0x91, 0x92, 0x00, 0xa9, '1', '2', '3', '4', '5', '6', '7', '8', '9' };
	expect_error(in, sizeof in, &lim, WARREN_ELIMIT, "body: string of 9 bytes over the 8 limit at [0][1]");
}

Test(schemas_limits, huge_declared_string_is_a_limit_error)
{
	const uint8_t in[] = { 0x91, 0xdb, 0x00, 0x89, 0x54, 0x40 }; /* str32 of 9000000 */
	expect_error(in, sizeof in, NULL, WARREN_ELIMIT,
		     "body: string of 9000000 bytes over the 8388608 limit at [0]");
}

Test(schemas_limits, element_count_over_the_limit)
{
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_elems = 3;
	const uint8_t in[] = { 0x94, 1, 2, 3, 4 };
	expect_error(in, sizeof in, &lim, WARREN_ELIMIT, "body: array of 4 elements over the 3 limit");
}

Test(schemas_limits, declared_count_beyond_the_bytes_left_is_truncation)
{
	/* array32 of 100000 (under max_elems) with 3 bytes after it: refused
	 * before 2.4 MB of objects are allocated. */
	const uint8_t arr[] = { 0xdd, 0x00, 0x01, 0x86, 0xa0, 1, 2, 3 };
	expect_error(arr, sizeof arr, NULL, WARREN_EDECODE, "body: truncated at byte 0");
	/* a map of 2 needs at least 4 bytes; 3 are left */
	const uint8_t map[] = { 0x82, 1, 2, 3 };
	expect_error(map, sizeof map, NULL, WARREN_EDECODE, "body: truncated at byte 0");
}

Test(schemas_limits, trailing_bytes_are_an_error)
{
	const uint8_t in[] = { 0x90, 0xc0 };
	expect_error(in, sizeof in, NULL, WARREN_EDECODE, "body: 1 extra bytes after the value at byte 1");
}

Test(schemas_limits, reserved_type_byte_is_an_error)
{
	const uint8_t in[] = { 0x92, 0x01, 0xc1 };
	expect_error(in, sizeof in, NULL, WARREN_EDECODE, "body: invalid type byte 0xc1 at byte 2 in [1]");
}

Test(schemas_limits, empty_input_is_an_error)
{
	expect_error((const uint8_t *)"", 0, NULL, WARREN_EDECODE, "body: empty");
}

Test(schemas_limits, input_over_max_body_is_refused_unread)
{
	schema_limits lim;
	schema_limits_default(&lim);
	lim.max_body = 2;
	const uint8_t in[] = { 0x92, 0x01, 0x02 };
	expect_error(in, sizeof in, &lim, WARREN_ELIMIT, "body: 3 bytes over the 2 limit");
}

Test(schemas_limits, error_inside_a_map_key_names_the_pair)
{
	const uint8_t in[] = { 0x81, 0xc1, 0x00 };
	expect_error(in, sizeof in, NULL, WARREN_EDECODE, "body: invalid type byte 0xc1 at byte 1 in [key 0]");
}

Test(schemas_limits, map_helpers_find_keys_and_name_types)
{
	const uint8_t in[] = { 0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0xc0 };
	unpacked u;
	unpack_default(&u, in, sizeof in);
	cr_assert_eq(u.rc, 0, "%s", u.err.msg);
	const msgpack_object *a = schema_map_get(&u.obj, "a");
	cr_assert_not_null(a);
	cr_expect_eq(a->via.u64, 1);
	cr_expect_null(schema_map_get(&u.obj, "c"));
	cr_expect_null(schema_map_get(a, "a"), "not a map");
	cr_expect_str_eq(schema_obj_type_name(schema_map_get(&u.obj, "b")), "nil");
	cr_expect_str_eq(schema_obj_type_name(&u.obj), "map");
	release(&u);
}
