/* schemas/repr.c - Python-like repr of msgpack values, for the argsrepr and
 * kwargsrepr headers.
 *
 * Celery fills those headers with saferepr(args, 1024) and shows them in logs,
 * events and Flower; nothing parses them. So this aims at "looks like Python
 * to a human" (tuples, quoted strings, b'' bytes, True/None), cut at
 * SCHEMA_REPR_MAX bytes with "...", not at byte-for-byte equality with
 * saferepr (which also shortens each long string inside).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas.h"

typedef struct repr_writer {
	char *buf;
	size_t len, limit;
	bool cut;
} repr_writer;

static void put(repr_writer *w, const char *s, size_t n)
{
	if (w->cut)
		return;
	size_t room = w->limit - w->len;
	if (n > room) {
		/* Never end inside a UTF-8 sequence: py-amqp decodes header
		 * strings strictly and would fail on the whole message. */
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		w->cut = true;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void puts_(repr_writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* Shortest %g that reads back as the same double, with ".0" on integral
 * values as Python prints them. */
static void put_float(repr_writer *w, double d)
{
	char tmp[40];
	if (isnan(d)) {
		puts_(w, "nan");
		return;
	}
	if (isinf(d)) {
		puts_(w, d < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	puts_(w, tmp);
	if (!strpbrk(tmp, ".e"))
		puts_(w, ".0");
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 :
		     p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
	if (p[0] >= 0xf5 || len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Quotes like Python: single quotes unless the text holds ' and no ".
 * Valid UTF-8 passes through in a str; any other byte >= 0x80 becomes \xNN,
 * so the header stays valid UTF-8 whatever the args hold. */
static void put_quoted(repr_writer *w, const char *p, size_t n, bool bytes)
{
	bool has_single = memchr(p, '\'', n) != NULL;
	char quote = has_single && !memchr(p, '"', n) ? '"' : '\'';
	if (bytes)
		puts_(w, "b");
	put(w, &quote, 1);
	for (size_t i = 0; i < n && !w->cut; i++) {
		unsigned char c = (unsigned char)p[i];
		char esc[8];
		if (c == '\\' || c == (unsigned char)quote) {
			snprintf(esc, sizeof esc, "\\%c", c);
		} else if (c == '\n') {
			strcpy(esc, "\\n");
		} else if (c == '\r') {
			strcpy(esc, "\\r");
		} else if (c == '\t') {
			strcpy(esc, "\\t");
		} else if (c >= 0x80 && !bytes && utf8_seq_len((const unsigned char *)p + i, n - i)) {
			size_t len = utf8_seq_len((const unsigned char *)p + i, n - i);
			put(w, p + i, len);
			i += len - 1;
			continue;
		} else if (c < 0x20 || c >= 0x7f) {
			snprintf(esc, sizeof esc, "\\x%02x", c);
		} else {
			esc[0] = (char)c;
			esc[1] = '\0';
		}
		puts_(w, esc);
	}
	put(w, &quote, 1);
}

/* Integers are the commonest argument: formatted by hand, not snprintf. */
static void put_int(repr_writer *w, bool negative, uint64_t v)
{
	char tmp[24];
	size_t n = sizeof tmp;
	do
		tmp[--n] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	if (negative)
		tmp[--n] = '-';
	put(w, tmp + n, sizeof tmp - n);
}

static void put_obj(repr_writer *w, const msgpack_object *o, bool as_tuple);

static void put_array(repr_writer *w, const msgpack_object *o, bool as_tuple)
{
	puts_(w, as_tuple ? "(" : "[");
	for (uint32_t i = 0; i < o->via.array.size && !w->cut; i++) {
		if (i)
			puts_(w, ", ");
		put_obj(w, &o->via.array.ptr[i], false);
	}
	if (as_tuple && o->via.array.size == 1)
		puts_(w, ",");
	puts_(w, as_tuple ? ")" : "]");
}

static void put_map(repr_writer *w, const msgpack_object *o)
{
	puts_(w, "{");
	for (uint32_t i = 0; i < o->via.map.size && !w->cut; i++) {
		if (i)
			puts_(w, ", ");
		put_obj(w, &o->via.map.ptr[i].key, false);
		puts_(w, ": ");
		put_obj(w, &o->via.map.ptr[i].val, false);
	}
	puts_(w, "}");
}

static void put_obj(repr_writer *w, const msgpack_object *o, bool as_tuple)
{
	char tmp[32];
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: puts_(w, "None"); break;
	case MSGPACK_OBJECT_BOOLEAN: puts_(w, o->via.boolean ? "True" : "False"); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: put_int(w, false, o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		/* -(INT64_MIN) as unsigned without overflow */
		put_int(w, o->via.i64 < 0, o->via.i64 < 0 ? 0 - (uint64_t)o->via.i64
							  : (uint64_t)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: put_float(w, o->via.f64); break;
	case MSGPACK_OBJECT_STR: put_quoted(w, o->via.str.ptr, o->via.str.size, false); break;
	case MSGPACK_OBJECT_BIN: put_quoted(w, o->via.bin.ptr, o->via.bin.size, true); break;
	case MSGPACK_OBJECT_EXT:
		snprintf(tmp, sizeof tmp, "ExtType(%d, ...)", o->via.ext.type);
		puts_(w, tmp);
		break;
	case MSGPACK_OBJECT_ARRAY: put_array(w, o, as_tuple); break;
	case MSGPACK_OBJECT_MAP: put_map(w, o); break;
	}
}

size_t schema_repr(const msgpack_object *obj, bool as_tuple, char *buf, size_t cap)
{
	if (cap < 4) {
		if (cap)
			buf[0] = '\0';
		return 0;
	}
	size_t limit = cap - 4 < SCHEMA_REPR_MAX ? cap - 4 : SCHEMA_REPR_MAX;
	repr_writer w = { .buf = buf, .limit = limit };
	put_obj(&w, obj, as_tuple);
	if (w.cut) {
		memcpy(buf + w.len, "...", 3);
		w.len += 3;
	}
	buf[w.len] = '\0';
	return w.len;
}
