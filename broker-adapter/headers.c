/* broker-adapter/headers.c - message headers: msgpack map <-> AMQP field table.
 *
 * py-amqp (Celery's client) and rabbitmq-c disagree on several AMQP field type
 * codes (CELERY-WIRE.md §0.7): py-amqp reads 's' as a short string, 'l' as
 * unsigned 64, 'L' as signed 64 and 'B' as signed 8; rabbitmq-c reads 's' as
 * int16, 'l' as signed 64, 'L' as unsigned 64, 'B' as unsigned 8. So we WRITE
 * only the codes both read alike:
 *
 *   msgpack nil -> V    bool -> t    float32/64 -> d    str, bin -> S
 *   int in int32 range -> I          int in (INT32_MAX, INT64_MAX] -> l
 *   array -> A          map (string keys) -> F
 *
 * A negative integer below INT32_MIN has no such code (py-amqp would need 'L',
 * which rabbitmq-c reads as unsigned) and is an error naming the key, as are
 * integers above INT64_MAX and msgpack ext values.
 *
 * We READ every type rabbitmq-c decodes, mapping each to the nearest msgpack
 * type. 'L' (rabbitmq-c's U64) is read as SIGNED 64, because that is what
 * py-amqp writes for a Python int beyond int32 (serialization.py _write_item).
 * 'S' becomes a str when it is valid UTF-8, else bin (py-amqp does the same);
 * 'x' becomes bin; 'f' a float32; 'D' (decimal) a double, possibly inexact;
 * 'T' (timestamp) an unsigned int of seconds.
 *
 * Memory: a table built from msgpack lives entirely in the caller's
 * amqp_pool_t (entries, keys and strings are copied there), so it outlives
 * the msgpack zone it came from and goes when the pool is recycled.
 *
 * Wire format note: these type choices are part of the Celery wire contract;
 * changing them means re-running the interop tests against py-amqp.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Where in the headers we are, for error messages: "kwargs.items[3]". */
typedef struct path {
	char buf[160];
	size_t len;
} path;

/* The path is pushed and popped for every header of every message, so it is
 * built with memcpy, not snprintf (which cost ~1,000 instructions a key and
 * was the largest single cost of a publish); the result is the same text,
 * cut at sizeof buf - 1 as snprintf would. */
static void path_append(path *p, const char *s, size_t n)
{
	size_t room = sizeof p->buf - 1 - p->len;
	if (n > room)
		n = room;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

static size_t path_push_key(path *p, const char *key, size_t len)
{
	size_t old = p->len;
	if (old)
		path_append(p, ".", 1);
	path_append(p, key, strnlen(key, len)); /* as %.*s: up to a NUL */
	return old;
}

static size_t path_push_index(path *p, size_t i)
{
	size_t old = p->len;
	char tmp[24];
	size_t n = sizeof tmp;
	tmp[--n] = ']';
	do
		tmp[--n] = (char)('0' + i % 10);
	while ((i /= 10) != 0);
	tmp[--n] = '[';
	path_append(p, tmp + n, sizeof tmp - n);
	return old;
}

static void path_pop(path *p, size_t old)
{
	p->len = old;
	p->buf[old] = '\0';
}

/* ---- msgpack -> AMQP ---------------------------------------------------- */

static int value_from_msgpack(const msgpack_object *o, amqp_pool_t *pool, amqp_field_value_t *v,
			      path *pp, int depth, warren_error *err);

static int copy_bytes(amqp_pool_t *pool, const void *src, size_t len, amqp_bytes_t *out,
		      const path *pp, warren_error *err)
{
	out->len = len;
	out->bytes = NULL;
	if (!len)
		return 0;
	out->bytes = amqp_pool_alloc(pool, len);
	if (!out->bytes)
		return warren_error_set(err, WARREN_ENOMEM, "header '%s': out of memory", pp->buf);
	memcpy(out->bytes, src, len);
	return 0;
}

static int table_from_map(const msgpack_object_map *m, amqp_pool_t *pool, amqp_table_t *t,
			  path *pp, int depth, warren_error *err)
{
	t->num_entries = 0;
	t->entries = NULL;
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
					pp->buf, BROKER_HEADERS_MAX_DEPTH);
	if (!m->size)
		return 0;
	t->entries = amqp_pool_alloc(pool, m->size * sizeof *t->entries);
	if (!t->entries)
		return warren_error_set(err, WARREN_ENOMEM, "headers: out of memory");
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		if (k->type != MSGPACK_OBJECT_STR) {
			size_t old = path_push_index(pp, i);
			int rc = warren_error_set(err, WARREN_EENCODE,
						  "header '%s': key is not a string (msgpack type %d)",
						  pp->buf, (int)k->type);
			path_pop(pp, old);
			return rc;
		}
		size_t old = path_push_key(pp, k->via.str.ptr, k->via.str.size);
		if (k->via.str.size > 255) {
			int rc = warren_error_set(err, WARREN_EENCODE,
						  "header '%.40s...': key longer than 255 bytes", pp->buf);
			path_pop(pp, old);
			return rc;
		}
		amqp_table_entry_t *e = &t->entries[i];
		int rc = copy_bytes(pool, k->via.str.ptr, k->via.str.size, &e->key, pp, err);
		if (!rc)
			rc = value_from_msgpack(&m->ptr[i].val, pool, &e->value, pp, depth + 1, err);
		path_pop(pp, old);
		if (rc)
			return rc;
		t->num_entries++;
	}
	return 0;
}

static int array_from_msgpack(const msgpack_object_array *a, amqp_pool_t *pool,
			      amqp_array_t *arr, path *pp, int depth, warren_error *err)
{
	arr->num_entries = 0;
	arr->entries = NULL;
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
					pp->buf, BROKER_HEADERS_MAX_DEPTH);
	if (!a->size)
		return 0;
	arr->entries = amqp_pool_alloc(pool, a->size * sizeof *arr->entries);
	if (!arr->entries)
		return warren_error_set(err, WARREN_ENOMEM, "header '%s': out of memory", pp->buf);
	for (uint32_t i = 0; i < a->size; i++) {
		size_t old = path_push_index(pp, i);
		int rc = value_from_msgpack(&a->ptr[i], pool, &arr->entries[i], pp, depth + 1, err);
		path_pop(pp, old);
		if (rc)
			return rc;
		arr->num_entries++;
	}
	return 0;
}

static int value_from_msgpack(const msgpack_object *o, amqp_pool_t *pool, amqp_field_value_t *v,
			      path *pp, int depth, warren_error *err)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		v->kind = AMQP_FIELD_KIND_VOID;
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		v->kind = AMQP_FIELD_KIND_BOOLEAN;
		v->value.boolean = o->via.boolean;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 <= INT32_MAX) {
			v->kind = AMQP_FIELD_KIND_I32;
			v->value.i32 = (int32_t)o->via.u64;
		} else if (o->via.u64 <= INT64_MAX) {
			v->kind = AMQP_FIELD_KIND_I64;
			v->value.i64 = (int64_t)o->via.u64;
		} else {
			return warren_error_set(err, WARREN_EENCODE,
						"header '%s': integer %llu is above 2^63-1, the largest "
						"AMQP header integer", pp->buf, (unsigned long long)o->via.u64);
		}
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		if (o->via.i64 < INT32_MIN)
			return warren_error_set(err, WARREN_EENCODE,
						"header '%s': negative integer %lld is below -2^31; py-amqp "
						"and rabbitmq-c share no signed 64-bit header type",
						pp->buf, (long long)o->via.i64);
		v->kind = AMQP_FIELD_KIND_I32;
		v->value.i32 = (int32_t)o->via.i64;
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v->kind = AMQP_FIELD_KIND_F64;
		v->value.f64 = o->via.f64;
		return 0;
	case MSGPACK_OBJECT_STR:
		v->kind = AMQP_FIELD_KIND_UTF8;
		return copy_bytes(pool, o->via.str.ptr, o->via.str.size, &v->value.bytes, pp, err);
	case MSGPACK_OBJECT_BIN:
		/* 'S', not 'x': py-amqp hands 'S' that is not UTF-8 to Python as bytes. */
		v->kind = AMQP_FIELD_KIND_UTF8;
		return copy_bytes(pool, o->via.bin.ptr, o->via.bin.size, &v->value.bytes, pp, err);
	case MSGPACK_OBJECT_ARRAY:
		v->kind = AMQP_FIELD_KIND_ARRAY;
		return array_from_msgpack(&o->via.array, pool, &v->value.array, pp, depth, err);
	case MSGPACK_OBJECT_MAP:
		v->kind = AMQP_FIELD_KIND_TABLE;
		return table_from_map(&o->via.map, pool, &v->value.table, pp, depth, err);
	case MSGPACK_OBJECT_EXT:
		return warren_error_set(err, WARREN_EENCODE,
					"header '%s': msgpack ext type %d has no AMQP equivalent",
					pp->buf, (int)o->via.ext.type);
	}
	return warren_error_set(err, WARREN_EENCODE, "header '%s': unknown msgpack type %d",
				pp->buf, (int)o->type);
}

static const char *msgpack_type_name(msgpack_object_type t)
{
	switch (t) {
	case MSGPACK_OBJECT_NIL: return "nil";
	case MSGPACK_OBJECT_BOOLEAN: return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "float";
	case MSGPACK_OBJECT_STR: return "str";
	case MSGPACK_OBJECT_BIN: return "bin";
	case MSGPACK_OBJECT_ARRAY: return "array";
	case MSGPACK_OBJECT_MAP: return "map";
	case MSGPACK_OBJECT_EXT: return "ext";
	}
	return "unknown";
}

int broker_headers_from_msgpack(const msgpack_object *map, amqp_pool_t *pool,
				amqp_table_t *out, warren_error *err)
{
	out->num_entries = 0;
	out->entries = NULL;
	if (map->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EENCODE, "headers: expected a msgpack map, got %s",
					msgpack_type_name(map->type));
	path p = {.len = 0};
	return table_from_map(&map->via.map, pool, out, &p, 1, err);
}

int broker_headers_from_packed(const void *buf, size_t len, amqp_pool_t *pool,
			       amqp_table_t *out, warren_error *err)
{
	msgpack_unpacked u;
	size_t off = 0;
	msgpack_unpacked_init(&u);
	int rc;
	msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);
	if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES)
		rc = warren_error_set(err, WARREN_EDECODE, "headers: not valid msgpack (%d bytes)",
				      (int)len);
	else if (off != len)
		rc = warren_error_set(err, WARREN_EDECODE,
				      "headers: %zu bytes of junk after the msgpack map", len - off);
	else
		rc = broker_headers_from_msgpack(&u.data, pool, out, err);
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* ---- AMQP -> msgpack ---------------------------------------------------- */

static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t more;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			more = 1, cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			more = 2, cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			more = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + more >= n)
			return false;
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
		if (cp < min_cp[more] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += more + 1;
	}
	return true;
}

static int pack_value(const amqp_field_value_t *v, msgpack_packer *pk, path *pp, int depth,
		      warren_error *err);

static int pack_table(const amqp_table_t *t, msgpack_packer *pk, path *pp, int depth,
		      warren_error *err)
{
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
					pp->buf, BROKER_HEADERS_MAX_DEPTH);
	int n = t->num_entries > 0 ? t->num_entries : 0;
	msgpack_pack_map(pk, (size_t)n);
	for (int i = 0; i < n; i++) {
		const amqp_table_entry_t *e = &t->entries[i];
		msgpack_pack_str_with_body(pk, e->key.bytes, e->key.len);
		size_t old = path_push_key(pp, e->key.bytes, e->key.len);
		int rc = pack_value(&e->value, pk, pp, depth + 1, err);
		path_pop(pp, old);
		if (rc)
			return rc;
	}
	return 0;
}

static int pack_array(const amqp_array_t *a, msgpack_packer *pk, path *pp, int depth,
		      warren_error *err)
{
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
					pp->buf, BROKER_HEADERS_MAX_DEPTH);
	int n = a->num_entries > 0 ? a->num_entries : 0;
	msgpack_pack_array(pk, (size_t)n);
	for (int i = 0; i < n; i++) {
		size_t old = path_push_index(pp, (size_t)i);
		int rc = pack_value(&a->entries[i], pk, pp, depth + 1, err);
		path_pop(pp, old);
		if (rc)
			return rc;
	}
	return 0;
}

static void pack_bytes(const amqp_bytes_t *b, bool as_str, msgpack_packer *pk)
{
	if (as_str)
		msgpack_pack_str_with_body(pk, b->bytes, b->len);
	else
		msgpack_pack_bin_with_body(pk, b->bytes, b->len);
}

static int pack_value(const amqp_field_value_t *v, msgpack_packer *pk, path *pp, int depth,
		      warren_error *err)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_BOOLEAN:
		return v->value.boolean ? msgpack_pack_true(pk) : msgpack_pack_false(pk), 0;
	case AMQP_FIELD_KIND_I8: return msgpack_pack_int8(pk, v->value.i8), 0;
	case AMQP_FIELD_KIND_U8: return msgpack_pack_uint8(pk, v->value.u8), 0;
	case AMQP_FIELD_KIND_I16: return msgpack_pack_int16(pk, v->value.i16), 0;
	case AMQP_FIELD_KIND_U16: return msgpack_pack_uint16(pk, v->value.u16), 0;
	case AMQP_FIELD_KIND_I32: return msgpack_pack_int32(pk, v->value.i32), 0;
	case AMQP_FIELD_KIND_U32: return msgpack_pack_uint32(pk, v->value.u32), 0;
	case AMQP_FIELD_KIND_I64: return msgpack_pack_int64(pk, v->value.i64), 0;
	/* py-amqp writes signed 64-bit ints as 'L', which rabbitmq-c calls U64. */
	case AMQP_FIELD_KIND_U64: return msgpack_pack_int64(pk, (int64_t)v->value.u64), 0;
	case AMQP_FIELD_KIND_F32: return msgpack_pack_float(pk, v->value.f32), 0;
	case AMQP_FIELD_KIND_F64: return msgpack_pack_double(pk, v->value.f64), 0;
	case AMQP_FIELD_KIND_DECIMAL: {
		/* py-amqp reads the value as signed; so do we. */
		double d = (double)(int32_t)v->value.decimal.value;
		for (int i = 0; i < v->value.decimal.decimals; i++)
			d /= 10.0;
		return msgpack_pack_double(pk, d), 0;
	}
	case AMQP_FIELD_KIND_UTF8:
		pack_bytes(&v->value.bytes, valid_utf8(v->value.bytes.bytes, v->value.bytes.len), pk);
		return 0;
	case AMQP_FIELD_KIND_BYTES:
		pack_bytes(&v->value.bytes, false, pk);
		return 0;
	case AMQP_FIELD_KIND_TIMESTAMP: return msgpack_pack_uint64(pk, v->value.u64), 0;
	case AMQP_FIELD_KIND_VOID: return msgpack_pack_nil(pk), 0;
	case AMQP_FIELD_KIND_ARRAY: return pack_array(&v->value.array, pk, pp, depth, err);
	case AMQP_FIELD_KIND_TABLE: return pack_table(&v->value.table, pk, pp, depth, err);
	}
	return warren_error_set(err, WARREN_EDECODE, "header '%s': unknown AMQP field type '%c'",
				pp->buf, v->kind >= 0x20 && v->kind < 0x7f ? v->kind : '?');
}

int broker_headers_to_msgpack(const amqp_table_t *t, msgpack_packer *pk, warren_error *err)
{
	path p = {.len = 0};
	return pack_table(t, pk, &p, 1, err);
}
