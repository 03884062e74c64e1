/* tests/unit/test_broker_headers.c - msgpack map <-> AMQP table: every type
 * both ways, the type codes we write (py-amqp compatible), and every error. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "broker-adapter/internal.h"

/* A packed msgpack value built by the caller's packing code. */
typedef struct packed {
	msgpack_sbuffer sb;
	msgpack_packer pk;
} packed;

static void packed_init(packed *p)
{
	msgpack_sbuffer_init(&p->sb);
	msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Encodes the packed map, expecting success. */
static amqp_table_t encode(packed *p, amqp_pool_t *pool)
{
	amqp_table_t t;
	warren_error err = {0};
	cr_assert_eq(broker_headers_from_packed(p->sb.data, p->sb.size, pool, &t, &err), 0, "%s",
		     err.msg);
	return t;
}

static void encode_fails(packed *p, int code, const char *want)
{
	amqp_pool_t pool;
	init_amqp_pool(&pool, 1024);
	amqp_table_t t;
	warren_error err = {0};
	cr_expect_eq(broker_headers_from_packed(p->sb.data, p->sb.size, &pool, &t, &err), code,
		     "code %d: %s", err.code, err.msg);
	cr_expect_str_eq(err.msg, want);
	empty_amqp_pool(&pool);
}

Test(broker_headers, every_msgpack_type_to_amqp)
{
	packed p;
	packed_init(&p);
	msgpack_pack_map(&p.pk, 12);
	pack_cstr(&p.pk, "nil"), msgpack_pack_nil(&p.pk);
	pack_cstr(&p.pk, "true"), msgpack_pack_true(&p.pk);
	pack_cstr(&p.pk, "small"), msgpack_pack_int(&p.pk, -5);
	pack_cstr(&p.pk, "i32max"), msgpack_pack_uint64(&p.pk, INT32_MAX);
	pack_cstr(&p.pk, "i32min"), msgpack_pack_int64(&p.pk, INT32_MIN);
	pack_cstr(&p.pk, "big"), msgpack_pack_uint64(&p.pk, (uint64_t)INT32_MAX + 1);
	pack_cstr(&p.pk, "f32"), msgpack_pack_float(&p.pk, 1.5f);
	pack_cstr(&p.pk, "f64"), msgpack_pack_double(&p.pk, 2.25);
	pack_cstr(&p.pk, "str"), pack_cstr(&p.pk, "héllo");
	pack_cstr(&p.pk, "bin"), msgpack_pack_bin_with_body(&p.pk, "\x00\xff", 2);
	pack_cstr(&p.pk, "arr"), msgpack_pack_array(&p.pk, 2), msgpack_pack_int(&p.pk, 1),
		pack_cstr(&p.pk, "x");
	pack_cstr(&p.pk, "map"), msgpack_pack_map(&p.pk, 1), pack_cstr(&p.pk, "k"),
		msgpack_pack_false(&p.pk);

	amqp_pool_t pool;
	init_amqp_pool(&pool, 256);
	amqp_table_t t = encode(&p, &pool);
	msgpack_sbuffer_destroy(&p.sb); /* the table borrows nothing from the msgpack bytes */
	cr_assert_eq(t.num_entries, 12);
	/* f32 and f64 both become 'd'; str and bin both 'S' */
	const char kinds[] = {'V', 't', 'I', 'I', 'I', 'l', 'd', 'd', 'S', 'S', 'A', 'F'};
	for (int i = 0; i < 12; i++)
		cr_expect_eq(t.entries[i].value.kind, kinds[i], "entry %d '%.*s': '%c'", i,
			     (int)t.entries[i].key.len, (char *)t.entries[i].key.bytes,
			     t.entries[i].value.kind);
	cr_expect_eq(t.entries[2].value.value.i32, -5);
	cr_expect_eq(t.entries[4].value.value.i32, INT32_MIN);
	cr_expect_eq(t.entries[5].value.value.i64, (int64_t)INT32_MAX + 1);
	cr_expect_eq(t.entries[6].value.value.f64, 1.5);
	cr_expect_eq(t.entries[9].value.value.bytes.len, 2);
	cr_expect_eq(memcmp(t.entries[9].value.value.bytes.bytes, "\x00\xff", 2), 0);
	cr_expect_eq(t.entries[10].value.value.array.num_entries, 2);
	cr_expect_eq(t.entries[11].value.value.table.entries[0].value.kind, 't');

	/* And back: the same map, except that f32 comes back as a double. */
	packed back;
	packed_init(&back);
	warren_error err = {0};
	cr_assert_eq(broker_headers_to_msgpack(&t, &back.sb, &err), 0, "%s", err.msg);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, back.sb.data, back.sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	msgpack_object_map *m = &u.data.via.map;
	cr_assert_eq(m->size, 12);
	cr_expect_eq(m->ptr[0].val.type, MSGPACK_OBJECT_NIL);
	cr_expect_eq(m->ptr[1].val.via.boolean, true);
	cr_expect_eq(m->ptr[2].val.via.i64, -5);
	cr_expect_eq(m->ptr[3].val.via.u64, INT32_MAX);
	cr_expect_eq(m->ptr[4].val.via.i64, INT32_MIN);
	cr_expect_eq(m->ptr[5].val.via.u64, (uint64_t)INT32_MAX + 1);
	cr_expect_eq(m->ptr[6].val.via.f64, 1.5);
	cr_expect_eq(m->ptr[7].val.via.f64, 2.25);
	cr_expect_eq(m->ptr[8].val.type, MSGPACK_OBJECT_STR);
	cr_expect_eq(m->ptr[8].val.via.str.size, strlen("héllo"));
	cr_expect_eq(m->ptr[9].val.type, MSGPACK_OBJECT_BIN, "non-UTF-8 'S' comes back as bin");
	cr_expect_eq(m->ptr[10].val.type, MSGPACK_OBJECT_ARRAY);
	cr_expect_eq(m->ptr[11].val.type, MSGPACK_OBJECT_MAP);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&back.sb);
	empty_amqp_pool(&pool);
}

/* Decodes one AMQP value and returns the unpacked msgpack value of key "v". */
static msgpack_object decode_one(amqp_field_value_t v, msgpack_unpacked *u, packed *p)
{
	amqp_table_entry_t e = {.key = amqp_cstring_bytes("v"), .value = v};
	amqp_table_t t = {.num_entries = 1, .entries = &e};
	packed_init(p);
	warren_error err = {0};
	cr_assert_eq(broker_headers_to_msgpack(&t, &p->sb, &err), 0, "%s", err.msg);
	msgpack_unpacked_init(u);
	cr_assert_eq(msgpack_unpack_next(u, p->sb.data, p->sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	return u->data.via.map.ptr[0].val;
}

#define DECODE(check, ...)                                                   \
	do {                                                                        \
		msgpack_unpacked u;                                                 \
		packed p;                                                           \
		msgpack_object o = decode_one((amqp_field_value_t)__VA_ARGS__, &u, &p); \
		check;                                                              \
		msgpack_unpacked_destroy(&u);                                       \
		msgpack_sbuffer_destroy(&p.sb);                                     \
	} while (0)

Test(broker_headers, every_amqp_type_rabbitmq_c_reads_to_msgpack)
{
	DECODE(cr_expect_eq(o.via.i64, -7),
	       {.kind = 'b', .value.i8 = -7});
	DECODE(cr_expect_eq(o.via.u64, 200),
	       {.kind = 'B', .value.u8 = 200});
	DECODE(cr_expect_eq(o.via.i64, -300),
	       {.kind = 's', .value.i16 = -300});
	DECODE(cr_expect_eq(o.via.u64, 60000),
	       {.kind = 'u', .value.u16 = 60000});
	DECODE(cr_expect_eq(o.via.i64, -70000),
	       {.kind = 'I', .value.i32 = -70000});
	DECODE(cr_expect_eq(o.via.u64, 4000000000u),
	       {.kind = 'i', .value.u32 = 4000000000u});
	DECODE(cr_expect_eq(o.via.i64, -5000000000LL),
	       {.kind = 'l', .value.i64 = -5000000000LL});
	/* py-amqp writes Python ints beyond int32 as 'L' *signed*: -2^31 - 1 arrives as
	 * rabbitmq-c's U64 bit pattern and must come back negative. */
	DECODE(cr_expect_eq(o.via.i64, -2147483649LL),
	       {.kind = 'L', .value.u64 = (uint64_t)(int64_t)-2147483649LL});
	DECODE(cr_expect_eq(o.via.u64, 1ULL << 40),
	       {.kind = 'L', .value.u64 = 1ULL << 40});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_FLOAT32); cr_expect_eq(o.via.f64, 0.5); },
	       {.kind = 'f', .value.f32 = 0.5f});
	DECODE(cr_expect_eq(o.via.f64, -1e300),
	       {.kind = 'd', .value.f64 = -1e300});
	DECODE(cr_expect(fabs(o.via.f64 - 123.45) < 1e-9, "%g", o.via.f64),
	       {.kind = 'D', .value.decimal = {.decimals = 2, .value = 12345}});
	DECODE(cr_expect(fabs(o.via.f64 + 1.5) < 1e-9, "%g", o.via.f64),
	       {.kind = 'D', .value.decimal = {.decimals = 1, .value = (uint32_t)-15}});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_STR); cr_expect_eq(o.via.str.size, 2); },
	       {.kind = 'S', .value.bytes = amqp_cstring_bytes("ok")});
	DECODE(cr_expect_eq(o.type, MSGPACK_OBJECT_BIN),
	       {.kind = 'S', .value.bytes = {.len = 2, .bytes = "\xc3\x28"}});
	DECODE(/* surrogate */
	       cr_expect_eq(o.type, MSGPACK_OBJECT_BIN),
	       {.kind = 'S', .value.bytes = {.len = 3, .bytes = "\xed\xa0\x80"}});
	DECODE(/* truncated */
	       cr_expect_eq(o.type, MSGPACK_OBJECT_BIN),
	       {.kind = 'S', .value.bytes = {.len = 1, .bytes = "\xe2"}});
	DECODE(cr_expect_eq(o.type, MSGPACK_OBJECT_BIN),
	       {.kind = 'x', .value.bytes = amqp_cstring_bytes("raw")});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_POSITIVE_INTEGER); cr_expect_eq(o.via.u64, 1700000000); },
	       {.kind = 'T', .value.u64 = 1700000000});
	DECODE(cr_expect_eq(o.type, MSGPACK_OBJECT_NIL),
	       {.kind = 'V'});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_BOOLEAN); cr_expect(!o.via.boolean); },
	       {.kind = 't', .value.boolean = 0});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_ARRAY); cr_expect_eq(o.via.array.size, 0); },
	       {.kind = 'A'});
	DECODE({ cr_expect_eq(o.type, MSGPACK_OBJECT_MAP); cr_expect_eq(o.via.map.size, 0); },
	       {.kind = 'F'});
}

Test(broker_headers, decode_rejects_unknown_type_naming_the_key)
{
	amqp_field_value_t inner = {.kind = 'Z'};
	amqp_table_entry_t e = {.key = amqp_cstring_bytes("k"),
				.value = {.kind = 'A', .value.array = {.num_entries = 1, .entries = &inner}}};
	amqp_table_t t = {.num_entries = 1, .entries = &e};
	packed p;
	packed_init(&p);
	warren_error err = {0};
	cr_expect_eq(broker_headers_to_msgpack(&t, &p.sb, &err), WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "header 'k[0]': unknown AMQP field type 'Z'");
	msgpack_sbuffer_destroy(&p.sb);
}

Test(broker_headers, decode_limits_depth)
{
	amqp_field_value_t v[40];
	for (int i = 0; i < 40; i++)
		v[i] = (amqp_field_value_t){.kind = 'A', .value.array = {i < 39, i < 39 ? &v[i + 1] : NULL}};
	amqp_table_entry_t e = {.key = amqp_cstring_bytes("deep"), .value = v[0]};
	amqp_table_t t = {.num_entries = 1, .entries = &e};
	packed p;
	packed_init(&p);
	warren_error err = {0};
	cr_expect_eq(broker_headers_to_msgpack(&t, &p.sb, &err), WARREN_ELIMIT);
	cr_expect(strstr(err.msg, "nested deeper than 32"), "%s", err.msg);
	msgpack_sbuffer_destroy(&p.sb);
}

Test(broker_headers, encode_errors_name_the_key)
{
	packed p;

	packed_init(&p);
	msgpack_pack_map(&p.pk, 1), pack_cstr(&p.pk, "eta"), msgpack_pack_int64(&p.pk, -2147483649LL);
	encode_fails(&p, WARREN_EENCODE,
		     "header 'eta': negative integer -2147483649 is below -2^31; py-amqp and "
		     "rabbitmq-c share no signed 64-bit header type");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_map(&p.pk, 1), pack_cstr(&p.pk, "kw"), msgpack_pack_map(&p.pk, 1),
		pack_cstr(&p.pk, "n"), msgpack_pack_array(&p.pk, 2), msgpack_pack_int(&p.pk, 1),
		msgpack_pack_uint64(&p.pk, UINT64_MAX);
	encode_fails(&p, WARREN_EENCODE,
		     "header 'kw.n[1]': integer 18446744073709551615 is above 2^63-1, the largest "
		     "AMQP header integer");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_map(&p.pk, 1), pack_cstr(&p.pk, "x"), msgpack_pack_ext_with_body(&p.pk, "a", 1, 5);
	encode_fails(&p, WARREN_EENCODE, "header 'x': msgpack ext type 5 has no AMQP equivalent");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_map(&p.pk, 1), msgpack_pack_int(&p.pk, 3), msgpack_pack_nil(&p.pk);
	encode_fails(&p, WARREN_EENCODE, "header '[0]': key is not a string (msgpack type 2)");
	msgpack_sbuffer_destroy(&p.sb);

	char longkey[300];
	memset(longkey, 'k', sizeof longkey - 1);
	longkey[299] = '\0';
	packed_init(&p);
	msgpack_pack_map(&p.pk, 1), pack_cstr(&p.pk, longkey), msgpack_pack_nil(&p.pk);
	encode_fails(&p, WARREN_EENCODE,
		     "header 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...': key longer than 255 bytes");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_array(&p.pk, 0);
	encode_fails(&p, WARREN_EENCODE, "headers: expected a msgpack map, got array");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_map(&p.pk, 0), msgpack_pack_nil(&p.pk);
	encode_fails(&p, WARREN_EDECODE, "headers: 1 bytes of junk after the msgpack map");
	msgpack_sbuffer_destroy(&p.sb);

	packed_init(&p);
	msgpack_pack_map(&p.pk, 2);
	encode_fails(&p, WARREN_EDECODE, "headers: not valid msgpack (1 bytes)");
	msgpack_sbuffer_destroy(&p.sb);
}

Test(broker_headers, encode_limits_depth)
{
	/* msgpack's own unpacker stops near depth 32, so build the objects by hand. */
	msgpack_object arr[40];
	for (int i = 0; i < 40; i++)
		arr[i] = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY,
					  .via.array = {.size = i < 39, .ptr = i < 39 ? &arr[i + 1] : NULL}};
	msgpack_object_kv kv = {.key = {.type = MSGPACK_OBJECT_STR, .via.str = {1, "d"}}, .val = arr[0]};
	msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &kv}};
	amqp_pool_t pool;
	init_amqp_pool(&pool, 1024);
	amqp_table_t t;
	warren_error err = {0};
	cr_expect_eq(broker_headers_from_msgpack(&map, &pool, &t, &err), WARREN_ELIMIT);
	cr_expect(strstr(err.msg, "header 'd[0][0]"), "%s", err.msg);
	cr_expect(strstr(err.msg, "nested deeper than 32"), "%s", err.msg);
	empty_amqp_pool(&pool);
}

Test(broker_headers, celery_like_headers_round_trip_through_the_wire_codec)
{
	/* Through rabbitmq-c's own encoder and decoder, as on the wire. */
	packed p;
	packed_init(&p);
	msgpack_pack_map(&p.pk, 4);
	pack_cstr(&p.pk, "task"), pack_cstr(&p.pk, "math.add");
	pack_cstr(&p.pk, "retries"), msgpack_pack_int(&p.pk, 0);
	pack_cstr(&p.pk, "timelimit"), msgpack_pack_array(&p.pk, 2), msgpack_pack_nil(&p.pk),
		msgpack_pack_nil(&p.pk);
	pack_cstr(&p.pk, "big"), msgpack_pack_uint64(&p.pk, 1ULL << 40);
	amqp_pool_t pool;
	init_amqp_pool(&pool, 1024);
	amqp_table_t t = encode(&p, &pool);
	char wire[1024];
	size_t off = 0;
	cr_assert_eq(amqp_encode_table((amqp_bytes_t){sizeof wire, wire}, &t, &off), AMQP_STATUS_OK);
	amqp_table_t back;
	size_t roff = 0;
	cr_assert_eq(amqp_decode_table((amqp_bytes_t){off, wire}, &pool, &back, &roff), AMQP_STATUS_OK);
	packed out;
	packed_init(&out);
	warren_error err = {0};
	cr_assert_eq(broker_headers_to_msgpack(&back, &out.sb, &err), 0, "%s", err.msg);
	cr_expect_eq(out.sb.size, p.sb.size);
	cr_expect_eq(memcmp(out.sb.data, p.sb.data, p.sb.size), 0, "bytes differ after the round trip");
	msgpack_sbuffer_destroy(&out.sb);
	msgpack_sbuffer_destroy(&p.sb);
	empty_amqp_pool(&pool);
}
