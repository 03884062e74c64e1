/* tests/unit/test_producer_args.c - libwarren's argument builder, JSON in
 * (warren_args_json/_auto/_from_json) and JSON out (warren_msgpack_to_json),
 * and the ISO-8601 times of producer/clock.c. No services needed. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "producer/producer.h"

/* The JSON text of what a builder holds. */
static char *as_json(const warren_args *a)
{
	const void *p;
	size_t n;
	warren_error err = {0};
	cr_assert_eq(warren_args_packed(a, &p, &n, &err), 0, "%s", err.msg);
	char *s = NULL;
	cr_assert_eq(warren_msgpack_to_json(p, n, &s, &err), 0, "%s", err.msg);
	return s;
}

static void expect_json(const warren_args *a, const char *want)
{
	char *s = as_json(a);
	cr_expect_str_eq(s, want);
	free(s);
}

Test(producer_args, typed_values_nested)
{
	warren_args *a = warren_args_new();
	warren_args_int(a, -3);
	warren_args_float(a, 2.5);
	warren_args_str(a, "h\xc3\xa9llo");
	warren_args_bool(a, true);
	warren_args_nil(a);
	warren_args_begin_list(a);
	warren_args_int(a, 1);
	warren_args_begin_map(a);
	warren_args_key(a, "k");
	warren_args_str(a, "v");
	warren_args_end_map(a);
	warren_args_end_list(a);
	warren_args_bytes(a, "ab", 2);
	expect_json(a, "[-3, 2.5, \"h\xc3\xa9llo\", true, null, [1, {\"k\": \"v\"}], \"ab\"]");
	warren_args_free(a);
}

Test(producer_args, kwargs_need_keys_and_errors_stick)
{
	warren_args *k = warren_kwargs_new();
	cr_assert_eq(warren_args_int(k, 1), WARREN_EINVAL);
	cr_assert_eq(warren_args_key(k, "a"), WARREN_EINVAL, "sticky");
	const char *msg;
	cr_expect_eq(warren_args_status(k, &msg), WARREN_EINVAL);
	cr_expect(strstr(msg, "warren_args_key"), "%s", msg);
	warren_args_free(k);

	warren_args *a = warren_args_new();
	warren_args_begin_list(a);
	const void *p;
	size_t n;
	warren_error err = {0};
	cr_expect_eq(warren_args_packed(a, &p, &n, &err), WARREN_EINVAL);
	cr_expect(strstr(err.msg, "not closed"), "%s", err.msg);
	cr_expect_eq(warren_args_end_map(a), WARREN_EINVAL);
	warren_args_free(a);
}

Test(producer_args, nesting_limit)
{
	warren_args *a = warren_args_new();
	int rc = 0;
	for (int i = 0; i < 100 && !rc; i++)
		rc = warren_args_begin_list(a);
	cr_expect_eq(rc, WARREN_ELIMIT);
	warren_args_free(a);
}

Test(producer_args, json_round_trip)
{
	warren_args *a = NULL;
	warren_error err = {0};
	const char *in = "[1, -2, 0.1, 1e+300, \"\xe2\x82\xac\", [true, false, null], "
			 "{\"b\": 1, \"a\": [2]}, \"q\\\"\\n\"]";
	cr_assert_eq(warren_args_from_json(in, &a, &err), 0, "%s", err.msg);
	expect_json(a, in);
	warren_args_free(a);

	warren_args *k = NULL;
	cr_assert_eq(warren_kwargs_from_json("{\"x\": 5.0, \"y\": {}}", &k, &err), 0, "%s", err.msg);
	expect_json(k, "{\"x\": 5.0, \"y\": {}}");
	warren_args_free(k);
}

Test(producer_args, json_errors)
{
	warren_args *a = NULL;
	warren_error err = {0};
	cr_expect_eq(warren_args_from_json("{\"a\":1}", &a, &err), WARREN_EDECODE);
	cr_expect(strstr(err.msg, "JSON array"), "%s", err.msg);
	warren_error_clear(&err);
	cr_expect_eq(warren_kwargs_from_json("{bad", &a, &err), WARREN_EDECODE);
	cr_expect(strstr(err.msg, "column"), "%s", err.msg);
	warren_error_clear(&err);
	cr_expect_eq(warren_args_from_json("[99999999999999999999999]", &a, &err), WARREN_EDECODE);
	cr_expect_null(a);
}

Test(producer_args, auto_json_else_string)
{
	warren_args *a = warren_args_new();
	const char *in[] = {"2", "2.5", "h\xc3\xa9llo", "true", "null", "[1,2]", "\"3\"", "{x", "-5", ""};
	for (size_t i = 0; i < sizeof in / sizeof *in; i++)
		cr_assert_eq(warren_args_auto(a, in[i]), 0);
	expect_json(a, "[2, 2.5, \"h\xc3\xa9llo\", true, null, [1, 2], \"3\", \"{x\", -5, \"\"]");
	warren_args_free(a);
}

Test(producer_args, json_out_edges)
{
	/* bin not UTF-8 -> base64; invalid UTF-8 in str -> U+FFFD; int keys;
	 * float32; NaN -> null; control chars escaped; u64 max. */
	const unsigned char mp[] = {0x87,
				    0x01, 0xc4, 0x02, 0xff, 0x00,          /* 1: bin ff00 */
				    0xa1, 'k', 0xa2, 0xc3, 0x28,           /* "k": str c3 28 */
				    0xa1, 'f', 0xca, 0x3f, 0xc0, 0, 0,     /* "f": float32 1.5 */
				    0xa1, 'n', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0, /* NaN */
				    0xa1, 'c', 0xa2, 0x01, '\t',          /* control chars */
				    0xa1, 'u', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				    0xa1, 'x', 0xd4, 0x01, 0x00};         /* ext */
	char *s = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_msgpack_to_json(mp, sizeof mp, &s, &err), 0, "%s", err.msg);
	cr_expect_str_eq(s, "{\"1\": \"base64:/wA=\", \"k\": \"\\ufffd(\", \"f\": 1.5, \"n\": null, "
			    "\"c\": \"\\u0001\\t\", \"u\": 18446744073709551615, \"x\": null}");
	free(s);
	cr_expect_eq(warren_msgpack_to_json("\x92\x01", 2, &s, &err), WARREN_EDECODE);
}

Test(producer_args, shortest_floats)
{
	warren_args *a = warren_args_new();
	double v[] = {0.1, 0.1 + 0.2, 1.0 / 3, 100.0, 1e21, -0.0};
	for (size_t i = 0; i < sizeof v / sizeof *v; i++)
		warren_args_float(a, v[i]);
	expect_json(a, "[0.1, 0.30000000000000004, 0.3333333333333333, 100.0, 1e+21, -0.0]");
	warren_args_free(a);
}

Test(producer_clock, iso8601_parse_and_format)
{
	warren_error err = {0};
	int64_t us;
	cr_assert_eq(producer_iso8601_parse("2026-11-27T10:18:50.0019+00:00", &us, &err), 0, "%s",
		     err.msg);
	char buf[40];
	producer_iso8601_format(us, buf);
	cr_expect_str_eq(buf, "2026-11-27T10:18:50.001900+00:00");
	int64_t naive, z, off;
	cr_assert_eq(producer_iso8601_parse("2026-11-27 10:18:50", &naive, &err), 0);
	cr_assert_eq(producer_iso8601_parse("2026-11-27T10:18:50Z", &z, &err), 0);
	cr_assert_eq(producer_iso8601_parse("2026-11-27T12:18:50+02:00", &off, &err), 0);
	cr_expect_eq(naive, z);
	cr_expect_eq(off, z);
	producer_iso8601_format(z, buf);
	cr_expect_str_eq(buf, "2026-11-27T10:18:50+00:00");
	producer_iso8601_format(0, buf);
	cr_expect_str_eq(buf, "1970-01-01T00:00:00+00:00");
	cr_assert_eq(producer_iso8601_parse("2000-02-29T00:00", &us, &err), 0);
	cr_expect_eq(us, INT64_C(951782400) * 1000000);
	const char *bad[] = {"tomorrow", "2026-13-01T00:00", "2026-11-27", "2026-11-27T10:18:50x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		warren_error_clear(&err);
		cr_expect_eq(producer_iso8601_parse(bad[i], &us, &err), WARREN_EINVAL, "%s", bad[i]);
	}
	cr_expect(strstr(err.msg, "ISO-8601"), "%s", err.msg);
}
