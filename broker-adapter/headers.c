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
#include <stdlib.h>
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
		uint64_t word; /* eight ASCII bytes at a time: header text mostly is */
		if (n - i >= 8 && (memcpy(&word, s + i, 8), !(word & 0x8080808080808080ull))) {
			i += 8;
			continue;
		}
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

/* Every delivery's headers pass through here, so this writes msgpack bytes
 * itself, straight into the buffer, in the smallest form, as msgpack-c's
 * packer would (the bytes are the same); msgpack-c's packer makes a call
 * through its write callback per item, which cost more than the rest of the
 * conversion. The first pass keeps no path (pp NULL, no error text); only
 * when it fails is the table walked again with one, for the message. */

/* Room for n more bytes; false when out of memory. */
static bool out_reserve(msgpack_sbuffer *out, size_t n)
{
	if (out->alloc - out->size >= n)
		return true;
	size_t cap = out->alloc ? out->alloc : 256;
	while (cap - out->size < n)
		cap *= 2;
	char *grown = realloc(out->data, cap);
	if (!grown)
		return false;
	out->data = grown;
	out->alloc = cap;
	return true;
}

/* A type byte and a big-endian number or length of width 0, 1, 2, 4 or 8
 * (room reserved by the caller). */
static void put_be(msgpack_sbuffer *out, uint8_t type, uint64_t v, unsigned width)
{
	char *p = out->data + out->size;
	*p++ = (char)type;
	for (unsigned i = width; i-- > 0;)
		*p++ = (char)(v >> (8 * i));
	out->size += 1 + width;
}

static bool put_head(msgpack_sbuffer *out, uint8_t type, uint64_t v, unsigned width)
{
	if (!out_reserve(out, 9))
		return false;
	put_be(out, type, v, width);
	return true;
}

static bool put_uint(msgpack_sbuffer *out, uint64_t v)
{
	if (v < 0x80)
		return put_head(out, (uint8_t)v, 0, 0);
	if (v <= UINT8_MAX)
		return put_head(out, 0xcc, v, 1);
	if (v <= UINT16_MAX)
		return put_head(out, 0xcd, v, 2);
	if (v <= UINT32_MAX)
		return put_head(out, 0xce, v, 4);
	return put_head(out, 0xcf, v, 8);
}

static bool put_int(msgpack_sbuffer *out, int64_t v)
{
	if (v >= 0)
		return put_uint(out, (uint64_t)v);
	if (v >= -32)
		return put_head(out, (uint8_t)v, 0, 0);
	if (v >= INT8_MIN)
		return put_head(out, 0xd0, (uint64_t)v & 0xff, 1);
	if (v >= INT16_MIN)
		return put_head(out, 0xd1, (uint64_t)v & 0xffff, 2);
	if (v >= INT32_MIN)
		return put_head(out, 0xd2, (uint64_t)v & 0xffffffff, 4);
	return put_head(out, 0xd3, (uint64_t)v, 8);
}

static bool put_float(msgpack_sbuffer *out, float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof bits);
	return put_head(out, 0xca, bits, 4);
}

static bool put_double(msgpack_sbuffer *out, double d)
{
	uint64_t bits;
	memcpy(&bits, &d, sizeof bits);
	return put_head(out, 0xcb, bits, 8);
}

/* An array (fix 0x90, 0xdc, 0xdd) or map (fix 0x80, 0xde, 0xdf) header. */
static bool put_container(msgpack_sbuffer *out, uint8_t fix, uint8_t big16, uint32_t n)
{
	if (n < 16)
		return put_head(out, (uint8_t)(fix | n), 0, 0);
	if (n <= UINT16_MAX)
		return put_head(out, big16, n, 2);
	return put_head(out, (uint8_t)(big16 + 1), n, 4);
}

static bool put_bytes(msgpack_sbuffer *out, bool as_str, const amqp_bytes_t *b)
{
	size_t n = b->len;
	if (!out_reserve(out, 5 + n))
		return false;
	if (as_str && n < 32)
		put_be(out, (uint8_t)(0xa0 | n), 0, 0);
	else if (n <= UINT8_MAX)
		put_be(out, as_str ? 0xd9 : 0xc4, n, 1);
	else if (n <= UINT16_MAX)
		put_be(out, as_str ? 0xda : 0xc5, n, 2);
	else
		put_be(out, as_str ? 0xdb : 0xc6, n, 4);
	if (n)
		memcpy(out->data + out->size, b->bytes, n);
	out->size += n;
	return true;
}

/* An error of the packing walk: only the pass with a path words it. */
static int pack_error(path *pp, warren_error *err, int code, const char *fmt, int arg)
{
	if (pp)
		warren_error_set(err, code, fmt, pp->buf, arg);
	return code;
}

static int pack_nomem(path *pp, warren_error *err)
{
	if (pp)
		warren_error_set(err, WARREN_ENOMEM, "headers: out of memory");
	return WARREN_ENOMEM;
}

static size_t pp_push_key(path *pp, const amqp_bytes_t *key)
{
	return pp ? path_push_key(pp, key->bytes, key->len) : 0;
}

static size_t pp_push_index(path *pp, size_t i)
{
	return pp ? path_push_index(pp, i) : 0;
}

static void pp_pop(path *pp, size_t old)
{
	if (pp)
		path_pop(pp, old);
}

static int pack_value(const amqp_field_value_t *v, msgpack_sbuffer *out, path *pp, int depth,
		      warren_error *err);

static int pack_table(const amqp_table_t *t, msgpack_sbuffer *out, path *pp, int depth,
		      warren_error *err)
{
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return pack_error(pp, err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
				  BROKER_HEADERS_MAX_DEPTH);
	int n = t->num_entries > 0 ? t->num_entries : 0;
	if (!put_container(out, 0x80, 0xde, (uint32_t)n))
		return pack_nomem(pp, err);
	for (int i = 0; i < n; i++) {
		const amqp_table_entry_t *e = &t->entries[i];
		if (!put_bytes(out, true, &e->key))
			return pack_nomem(pp, err);
		size_t old = pp_push_key(pp, &e->key);
		int rc = pack_value(&e->value, out, pp, depth + 1, err);
		pp_pop(pp, old);
		if (rc)
			return rc;
	}
	return 0;
}

static int pack_array(const amqp_array_t *a, msgpack_sbuffer *out, path *pp, int depth,
		      warren_error *err)
{
	if (depth > BROKER_HEADERS_MAX_DEPTH)
		return pack_error(pp, err, WARREN_ELIMIT, "header '%s': nested deeper than %d",
				  BROKER_HEADERS_MAX_DEPTH);
	int n = a->num_entries > 0 ? a->num_entries : 0;
	if (!put_container(out, 0x90, 0xdc, (uint32_t)n))
		return pack_nomem(pp, err);
	for (int i = 0; i < n; i++) {
		size_t old = pp_push_index(pp, (size_t)i);
		int rc = pack_value(&a->entries[i], out, pp, depth + 1, err);
		pp_pop(pp, old);
		if (rc)
			return rc;
	}
	return 0;
}

/* A scalar of a kind pack_value checked; false when out of memory. */
static bool pack_scalar(const amqp_field_value_t *v, msgpack_sbuffer *out)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_BOOLEAN: return put_head(out, v->value.boolean ? 0xc3 : 0xc2, 0, 0);
	case AMQP_FIELD_KIND_I8: return put_int(out, v->value.i8);
	case AMQP_FIELD_KIND_U8: return put_uint(out, v->value.u8);
	case AMQP_FIELD_KIND_I16: return put_int(out, v->value.i16);
	case AMQP_FIELD_KIND_U16: return put_uint(out, v->value.u16);
	case AMQP_FIELD_KIND_I32: return put_int(out, v->value.i32);
	case AMQP_FIELD_KIND_U32: return put_uint(out, v->value.u32);
	case AMQP_FIELD_KIND_I64: return put_int(out, v->value.i64);
	/* py-amqp writes signed 64-bit ints as 'L', which rabbitmq-c calls U64. */
	case AMQP_FIELD_KIND_U64: return put_int(out, (int64_t)v->value.u64);
	case AMQP_FIELD_KIND_F32: return put_float(out, v->value.f32);
	case AMQP_FIELD_KIND_F64: return put_double(out, v->value.f64);
	case AMQP_FIELD_KIND_DECIMAL: {
		/* py-amqp reads the value as signed; so do we. */
		double d = (double)(int32_t)v->value.decimal.value;
		for (int i = 0; i < v->value.decimal.decimals; i++)
			d /= 10.0;
		return put_double(out, d);
	}
	case AMQP_FIELD_KIND_UTF8:
		return put_bytes(out, valid_utf8(v->value.bytes.bytes, v->value.bytes.len),
				 &v->value.bytes);
	case AMQP_FIELD_KIND_BYTES: return put_bytes(out, false, &v->value.bytes);
	case AMQP_FIELD_KIND_TIMESTAMP: return put_uint(out, v->value.u64);
	default: return put_head(out, 0xc0, 0, 0); /* AMQP_FIELD_KIND_VOID */
	}
}

static int pack_value(const amqp_field_value_t *v, msgpack_sbuffer *out, path *pp, int depth,
		      warren_error *err)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_ARRAY: return pack_array(&v->value.array, out, pp, depth, err);
	case AMQP_FIELD_KIND_TABLE: return pack_table(&v->value.table, out, pp, depth, err);
	case AMQP_FIELD_KIND_BOOLEAN: case AMQP_FIELD_KIND_I8: case AMQP_FIELD_KIND_U8:
	case AMQP_FIELD_KIND_I16: case AMQP_FIELD_KIND_U16: case AMQP_FIELD_KIND_I32:
	case AMQP_FIELD_KIND_U32: case AMQP_FIELD_KIND_I64: case AMQP_FIELD_KIND_U64:
	case AMQP_FIELD_KIND_F32: case AMQP_FIELD_KIND_F64: case AMQP_FIELD_KIND_DECIMAL:
	case AMQP_FIELD_KIND_UTF8: case AMQP_FIELD_KIND_BYTES: case AMQP_FIELD_KIND_TIMESTAMP:
	case AMQP_FIELD_KIND_VOID:
		return pack_scalar(v, out) ? 0 : pack_nomem(pp, err);
	}
	return pack_error(pp, err, WARREN_EDECODE, "header '%s': unknown AMQP field type '%c'",
			  v->kind >= 0x20 && v->kind < 0x7f ? v->kind : '?');
}

int broker_headers_to_msgpack(const amqp_table_t *t, msgpack_sbuffer *out, warren_error *err)
{
	size_t start = out->size;
	int rc = pack_table(t, out, NULL, 1, err);
	if (rc) {
		/* Again with a path, for the message naming the header at fault. */
		path p = {.len = 0};
		out->size = start;
		rc = pack_table(t, out, &p, 1, err);
		out->size = start;
	}
	return rc;
}
