/* tests/unit/test_broker_delay.c - the pure part of delayed delivery: rounding
 * a delay up to seconds, the level it enters at, and the routing key that
 * carries the remaining bits and the destination, both ways. */
#include <criterion/criterion.h>
#include <string.h>

#include "broker-adapter/broker.h"

static uint32_t seconds_of(int64_t ms)
{
	uint32_t s = 12345;
	warren_error err = {0};
	cr_assert_eq(broker_delay_seconds(ms, &s, &err), 0, "%lld ms: %s", (long long)ms, err.msg);
	return s;
}

Test(broker_delay, rounds_up_to_whole_seconds_never_down)
{
	cr_expect_eq(seconds_of(0), 0);
	cr_expect_eq(seconds_of(-5000), 0, "a past eta is due now");
	cr_expect_eq(seconds_of(1), 1);
	cr_expect_eq(seconds_of(999), 1);
	cr_expect_eq(seconds_of(1000), 1);
	cr_expect_eq(seconds_of(1001), 2);
	cr_expect_eq(seconds_of(5000), 5);
	cr_expect_eq(seconds_of(5500), 6);
	cr_expect_eq(seconds_of((int64_t)BROKER_DELAY_MAX_S * 1000), BROKER_DELAY_MAX_S);
	cr_expect_eq(seconds_of((int64_t)(1u << 28) * 1000), 1u << 28);
}

Test(broker_delay, longer_than_max_is_an_error)
{
	uint32_t s = 7;
	warren_error err = {0};
	int64_t ms = (int64_t)BROKER_DELAY_MAX_S * 1000 + 1;
	cr_assert_eq(broker_delay_seconds(ms, &s, &err), WARREN_EINVAL);
	cr_expect_eq(s, 0);
	cr_expect(strstr(err.msg, "longest delay"), "%s", err.msg);
	warren_error e2 = {0};
	cr_expect_eq(broker_delay_seconds(INT64_MAX, &s, &e2), WARREN_EINVAL, "%s", e2.msg);
	cr_expect_eq(BROKER_DELAY_MAX_S, 536870911u, "2^29 - 1 s");
}

Test(broker_delay, level_is_the_highest_set_bit)
{
	cr_expect_eq(broker_delay_level(0), -1);
	cr_expect_eq(broker_delay_level(1), 0);
	cr_expect_eq(broker_delay_level(2), 1);
	cr_expect_eq(broker_delay_level(3), 1);
	cr_expect_eq(broker_delay_level(5), 2);
	cr_expect_eq(broker_delay_level(1u << 28), 28);
	cr_expect_eq(broker_delay_level(BROKER_DELAY_MAX_S), BROKER_DELAY_LEVELS - 1);
}

static const char *key_of(uint32_t s, const char *x, const char *rk)
{
	static char buf[256];
	warren_error err = {0};
	cr_assert_eq(broker_delay_key(s, x, rk, buf, sizeof buf, &err), 0, "%s", err.msg);
	return buf;
}

Test(broker_delay, key_holds_the_bits_most_significant_first_then_the_queue)
{
	cr_expect_str_eq(key_of(5, "", "celery"),
			 "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.celery");
	cr_expect_str_eq(key_of(1u << 28, "", "q"),
			 "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.q");
	cr_expect_str_eq(key_of(BROKER_DELAY_MAX_S, "", "q"),
			 "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.q");
}

Test(broker_delay, destination_is_one_escaped_word)
{
	const char *k = key_of(1, "tasks", "a.b");
	cr_expect_str_eq(k + 2 * BROKER_DELAY_LEVELS, "a%2Eb@tasks");
	k = key_of(1, "ex.1", "#.*%@");
	cr_expect_str_eq(k + 2 * BROKER_DELAY_LEVELS, "%23%2E%2A%25%40@ex%2E1");
	k = key_of(1, "fan", "");
	cr_expect_str_eq(k + 2 * BROKER_DELAY_LEVELS, "@fan");
}

static void roundtrip(uint32_t s, const char *x, const char *rk)
{
	uint32_t got = 0;
	char gx[256], grk[256];
	warren_error err = {0};
	const char *k = key_of(s, x, rk);
	cr_assert_eq(broker_delay_key_parse(k, &got, gx, sizeof gx, grk, sizeof grk, &err), 0,
		     "'%s': %s", k, err.msg);
	cr_expect_eq(got, s, "'%s'", k);
	cr_expect_str_eq(gx, x, "'%s'", k);
	cr_expect_str_eq(grk, rk, "'%s'", k);
}

Test(broker_delay, key_parses_back)
{
	roundtrip(1, "", "celery");
	roundtrip(5, "tasks", "a.b.c");
	roundtrip(BROKER_DELAY_MAX_S, "ex.1", "#.*%@");
	roundtrip(123456789, "fan", "");
	roundtrip(1u << 28, "", "priority.high");
}

static void parse_fails(const char *key, const char *want)
{
	uint32_t s;
	char x[64], rk[64];
	warren_error err = {0};
	cr_assert_eq(broker_delay_key_parse(key, &s, x, sizeof x, rk, sizeof rk, &err),
		     WARREN_EDECODE, "'%s' parsed", key);
	cr_expect(strstr(err.msg, want), "'%s': %s", key, err.msg);
}

Test(broker_delay, bad_keys_do_not_parse)
{
	parse_fails("celery", "bit 28");
	parse_fails("0.0.0.1.celery", "bit");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.1.q", "bit 2");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.", "destination");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.a.b", "destination");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.a%2", "destination");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.a%zz", "destination");
	parse_fails("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.a@b@c", "destination");
}

Test(broker_delay, parse_refuses_small_buffers)
{
	uint32_t s;
	char x[4], rk[4];
	warren_error err = {0};
	const char *k = key_of(3, "", "longname");
	cr_expect_eq(broker_delay_key_parse(k, &s, x, sizeof x, rk, sizeof rk, &err), WARREN_EDECODE);
}

Test(broker_delay, long_destinations_and_bad_input_are_refused)
{
	char name[300], buf[256];
	memset(name, 'q', sizeof name);
	name[BROKER_DELAY_DEST_MAX] = '\0';
	warren_error err = {0};
	cr_expect_eq(broker_delay_key(1, "", name, buf, sizeof buf, &err), 0, "%s", err.msg);
	cr_expect_eq(strlen(buf), 255u, "the longest key is 255 bytes");
	name[BROKER_DELAY_DEST_MAX] = 'q';
	name[BROKER_DELAY_DEST_MAX + 1] = '\0';
	warren_error e2 = {0};
	cr_expect_eq(broker_delay_key(1, "", name, buf, sizeof buf, &e2), WARREN_EINVAL);
	cr_expect(strstr(e2.msg, "too long"), "%s", e2.msg);
	/* Escapes count: 66 dots become 198 bytes. */
	memset(name, '.', 66);
	name[66] = '\0';
	warren_error e3 = {0};
	cr_expect_eq(broker_delay_key(1, "", name, buf, sizeof buf, &e3), WARREN_EINVAL);
	warren_error e4 = {0};
	cr_expect_eq(broker_delay_key(1, "", "", buf, sizeof buf, &e4), WARREN_EINVAL);
	cr_expect(strstr(e4.msg, "queue name"), "%s", e4.msg);
	warren_error e5 = {0};
	cr_expect_eq(broker_delay_key(1, "", "q", buf, 20, &e5), WARREN_EINVAL);
	warren_error e6 = {0};
	cr_expect_eq(broker_delay_key(BROKER_DELAY_MAX_S + 1, "", "q", buf, sizeof buf, &e6),
		     WARREN_EINVAL);
}
