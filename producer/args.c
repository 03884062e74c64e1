/* producer/args.c - task arguments: the warren_args builder (typed values
 * or JSON in, packed msgpack out) and msgpack back to JSON text for results.
 *
 * The builder packs as it goes into one buffer. msgpack wants a container's
 * element count before its elements, so every list and map is opened with a
 * 32-bit-count header (array32/map32) whose count is written when the
 * container closes (and, for the top level, whenever the bytes are read).
 * That is valid msgpack for every decoder; the task encoder repacks the args
 * canonically anyway (schemas/task.c).
 *
 * JSON goes through jansson on the way in. On the way out we write the JSON
 * ourselves: jansson prints 0.1 as 0.10000000000000001, and `warren call`
 * should print floats the way Python does (shortest round trip).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer.h"
#include "schemas/schemas.h"

#define ARGS_MAX_DEPTH 64
#define HDR_LEN 5 /* 0xdd/0xdf + 32-bit count */

typedef struct frame {
	size_t hdr_off;  /* where the container's header is */
	uint32_t items;  /* values (and keys, in a map) so far */
	bool is_map;
} frame;

struct warren_args {
	msgpack_sbuffer buf;
	msgpack_packer pk;
	frame stack[ARGS_MAX_DEPTH + 1]; /* [0] is the top level */
	unsigned depth;
	warren_error err; /* sticky: the first failure */
};

/* ---- the builder ---- */

static void put_be32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

static void patch(msgpack_sbuffer *b, const frame *f)
{
	put_be32(b->data + f->hdr_off + 1, f->is_map ? f->items / 2 : f->items);
}

/* Opens a container at the end of the buffer with a placeholder count. */
static int open_frame(warren_args *a, frame *f, bool is_map)
{
	char hdr[HDR_LEN] = {(char)(is_map ? 0xdf : 0xdd), 0, 0, 0, 0};
	*f = (frame){.hdr_off = a->buf.size, .is_map = is_map};
	if (msgpack_sbuffer_write(&a->buf, hdr, HDR_LEN))
		return warren_error_set(&a->err, WARREN_ENOMEM, "args: out of memory");
	return 0;
}

static warren_args *builder_new(bool is_map)
{
	warren_args *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	msgpack_sbuffer_init(&a->buf);
	msgpack_packer_init(&a->pk, &a->buf, msgpack_sbuffer_write);
	if (open_frame(a, &a->stack[0], is_map)) {
		warren_args_free(a);
		return NULL;
	}
	return a;
}

warren_args *warren_args_new(void) { return builder_new(false); }
warren_args *warren_kwargs_new(void) { return builder_new(true); }

void warren_args_free(warren_args *a)
{
	if (!a)
		return;
	msgpack_sbuffer_destroy(&a->buf);
	free(a);
}

/* Checks that a value (not a key) may come next. */
static int before_value(warren_args *a)
{
	if (!a)
		return WARREN_EINVAL;
	if (a->err.code)
		return a->err.code;
	frame *f = &a->stack[a->depth];
	if (f->is_map && f->items % 2 == 0)
		return warren_error_set(&a->err, WARREN_EINVAL,
					"args: a map value needs warren_args_key before it");
	return 0;
}

/* Counts a value that was just packed (pack_rc from msgpack_pack_*). */
static int after_value(warren_args *a, int pack_rc)
{
	if (pack_rc)
		return warren_error_set(&a->err, WARREN_ENOMEM, "args: out of memory");
	a->stack[a->depth].items++;
	return 0;
}

int warren_args_key(warren_args *a, const char *key)
{
	if (!a)
		return WARREN_EINVAL;
	if (a->err.code)
		return a->err.code;
	frame *f = &a->stack[a->depth];
	if (!f->is_map || f->items % 2)
		return warren_error_set(&a->err, WARREN_EINVAL,
					"args: key '%s' outside a map or where a value belongs",
					key ? key : "(null)");
	if (!key)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: NULL key");
	size_t n = strlen(key);
	return after_value(a, msgpack_pack_str(&a->pk, n) || msgpack_pack_str_body(&a->pk, key, n));
}

int warren_args_int(warren_args *a, int64_t v)
{
	int rc = before_value(a);
	return rc ? rc : after_value(a, msgpack_pack_int64(&a->pk, v));
}

int warren_args_float(warren_args *a, double v)
{
	int rc = before_value(a);
	return rc ? rc : after_value(a, msgpack_pack_double(&a->pk, v));
}

int warren_args_strn(warren_args *a, const char *s, size_t len)
{
	int rc = before_value(a);
	if (rc)
		return rc;
	if (!s && len)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: NULL string");
	return after_value(a, msgpack_pack_str(&a->pk, len) ||
				      msgpack_pack_str_body(&a->pk, s ? s : "", len));
}

int warren_args_str(warren_args *a, const char *s)
{
	if (!s)
		return a ? warren_error_set(&a->err, WARREN_EINVAL, "args: NULL string")
			 : WARREN_EINVAL;
	return warren_args_strn(a, s, strlen(s));
}

int warren_args_bytes(warren_args *a, const void *p, size_t len)
{
	int rc = before_value(a);
	if (rc)
		return rc;
	if (!p && len)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: NULL bytes");
	return after_value(a, msgpack_pack_bin(&a->pk, len) ||
				      msgpack_pack_bin_body(&a->pk, p ? p : "", len));
}

int warren_args_bool(warren_args *a, bool v)
{
	int rc = before_value(a);
	return rc ? rc
		  : after_value(a, v ? msgpack_pack_true(&a->pk) : msgpack_pack_false(&a->pk));
}

int warren_args_nil(warren_args *a)
{
	int rc = before_value(a);
	return rc ? rc : after_value(a, msgpack_pack_nil(&a->pk));
}

static int begin(warren_args *a, bool is_map)
{
	int rc = before_value(a);
	if (rc)
		return rc;
	if (a->depth == ARGS_MAX_DEPTH)
		return warren_error_set(&a->err, WARREN_ELIMIT, "args: nesting deeper than %d",
					ARGS_MAX_DEPTH);
	if ((rc = open_frame(a, &a->stack[a->depth + 1], is_map)))
		return rc;
	a->depth++;
	return 0;
}

static int end(warren_args *a, bool is_map)
{
	if (!a)
		return WARREN_EINVAL;
	if (a->err.code)
		return a->err.code;
	frame *f = &a->stack[a->depth];
	if (a->depth == 0 || f->is_map != is_map)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: end_%s without begin_%s",
					is_map ? "map" : "list", is_map ? "map" : "list");
	if (is_map && f->items % 2)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: map key without a value");
	patch(&a->buf, f);
	a->depth--;
	return after_value(a, 0);
}

int warren_args_begin_list(warren_args *a) { return begin(a, false); }
int warren_args_end_list(warren_args *a) { return end(a, false); }
int warren_args_begin_map(warren_args *a) { return begin(a, true); }
int warren_args_end_map(warren_args *a) { return end(a, true); }

int warren_args_status(const warren_args *a, const char **msg)
{
	if (msg)
		*msg = a ? a->err.msg : "args: NULL builder";
	return a ? a->err.code : WARREN_EINVAL;
}

int warren_args_packed(const warren_args *a, const void **data, size_t *len, warren_error *err)
{
	if (!a)
		return warren_error_set(err, WARREN_EINVAL, "args: NULL builder");
	if (a->err.code)
		return warren_error_set(err, a->err.code, "%s", a->err.msg);
	if (a->depth)
		return warren_error_set(err, WARREN_EINVAL, "args: %u list(s) or map(s) not closed",
					a->depth);
	if (a->stack[0].is_map && a->stack[0].items % 2)
		return warren_error_set(err, WARREN_EINVAL, "args: key without a value");
	/* The top count changes with every value; writing it does not change
	 * what the builder holds, only brings the header up to date. */
	patch((msgpack_sbuffer *)&a->buf, &a->stack[0]);
	*data = a->buf.data;
	*len = a->buf.size;
	return 0;
}

int producer_args_bytes(const warren_args *a, bool want_map, const char *what,
			const void **data, size_t *len, warren_error *err)
{
	static const char empty_array[] = "\x90", empty_map[] = "\x80";
	if (!a) {
		*data = want_map ? empty_map : empty_array;
		*len = 1;
		return 0;
	}
	if (a->stack[0].is_map != want_map)
		return warren_error_set(err, WARREN_EINVAL, "%s: expected a builder from %s", what,
					want_map ? "warren_kwargs_new" : "warren_args_new");
	warren_error e = {0};
	int rc = warren_args_packed(a, data, len, &e);
	if (rc)
		return warren_error_set(err, rc, "%s: %s", what,
					strncmp(e.msg, "args: ", 6) ? e.msg : e.msg + 6);
	return 0;
}

/* ---- JSON in ---- */

static int pack_json(warren_args *a, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		int rc = warren_args_begin_map(a);
		const char *key;
		json_t *item;
		json_object_foreach((json_t *)v, key, item) {
			if (rc || (rc = warren_args_key(a, key)) || (rc = pack_json(a, item)))
				return rc;
		}
		return rc ? rc : warren_args_end_map(a);
	}
	case JSON_ARRAY: {
		int rc = warren_args_begin_list(a);
		for (size_t i = 0; !rc && i < json_array_size(v); i++)
			rc = pack_json(a, json_array_get(v, i));
		return rc ? rc : warren_args_end_list(a);
	}
	case JSON_STRING:
		return warren_args_strn(a, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return warren_args_int(a, json_integer_value(v));
	case JSON_REAL:
		return warren_args_float(a, json_real_value(v));
	case JSON_TRUE:
		return warren_args_bool(a, true);
	case JSON_FALSE:
		return warren_args_bool(a, false);
	case JSON_NULL:
		return warren_args_nil(a);
	}
	return warren_error_set(&a->err, WARREN_EINVAL, "args: unknown JSON type");
}

static json_t *parse_json(const char *text, json_error_t *jerr)
{
	return json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, jerr);
}

int warren_args_json(warren_args *a, const char *json)
{
	int rc = before_value(a);
	if (rc)
		return rc;
	json_error_t jerr;
	json_t *v = json ? parse_json(json, &jerr) : NULL;
	if (!v)
		return warren_error_set(&a->err, WARREN_EDECODE, "args: bad JSON at column %d: %s",
					json ? jerr.column : 0, json ? jerr.text : "NULL text");
	rc = pack_json(a, v);
	json_decref(v);
	return rc;
}

int warren_args_auto(warren_args *a, const char *text)
{
	int rc = before_value(a);
	if (rc)
		return rc;
	if (!text)
		return warren_error_set(&a->err, WARREN_EINVAL, "args: NULL text");
	json_error_t jerr;
	json_t *v = parse_json(text, &jerr);
	if (!v)
		return warren_args_str(a, text);
	rc = pack_json(a, v);
	json_decref(v);
	return rc;
}

int producer_args_from_jansson(const json_t *v, bool is_map, warren_args **out,
			       warren_error *err)
{
	const char *what = is_map ? "kwargs" : "args";
	if (is_map ? !json_is_object(v) : !json_is_array(v))
		return warren_error_set(err, WARREN_EDECODE, "%s: expected a JSON %s", what,
					is_map ? "object" : "array");
	warren_args *a = is_map ? warren_kwargs_new() : warren_args_new();
	if (!a)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	int rc = 0;
	/* The top-level container is the builder's own: add its members. */
	if (is_map) {
		const char *key;
		json_t *item;
		json_object_foreach((json_t *)v, key, item) {
			if (!rc && !(rc = warren_args_key(a, key)))
				rc = pack_json(a, item);
		}
	} else {
		for (size_t i = 0; !rc && i < json_array_size(v); i++)
			rc = pack_json(a, json_array_get(v, i));
	}
	if (rc) {
		warren_error_set(err, rc, "%s: %s", what,
				 strncmp(a->err.msg, "args: ", 6) ? a->err.msg : a->err.msg + 6);
		warren_args_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

static int from_json(const char *json, bool is_map, warren_args **out, warren_error *err)
{
	json_error_t jerr;
	json_t *v = json ? parse_json(json, &jerr) : NULL;
	if (!v)
		return warren_error_set(err, WARREN_EDECODE, "%s: bad JSON at line %d column %d: %s",
					is_map ? "kwargs" : "args", json ? jerr.line : 0,
					json ? jerr.column : 0, json ? jerr.text : "NULL text");
	int rc = producer_args_from_jansson(v, is_map, out, err);
	json_decref(v);
	return rc;
}

int warren_args_from_json(const char *json, warren_args **out, warren_error *err)
{
	return from_json(json, false, out, err);
}

int warren_kwargs_from_json(const char *json, warren_args **out, warren_error *err)
{
	return from_json(json, true, out, err);
}

/* ---- JSON out ---- */

typedef struct text {
	char *p;
	size_t len, cap;
	bool oom;
} text;

static void put(text *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 64;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	if (!len || len > n || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0; /* overlong, surrogate, beyond U+10FFFF */
	return len;
}

static bool utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

/* A JSON string; invalid UTF-8 bytes become U+FFFD. */
static void put_json_str(text *t, const char *s, size_t n)
{
	put(t, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			put(t, esc, 2);
		} else if (ch < 0x20) {
			const char *named = ch == '\n' ? "\\n" : ch == '\t' ? "\\t" : ch == '\r' ? "\\r"
					  : ch == '\b' ? "\\b" : ch == '\f' ? "\\f" : NULL;
			if (named)
				puts_(t, named);
			else {
				snprintf(esc, sizeof esc, "\\u%04x", ch);
				puts_(t, esc);
			}
		} else {
			size_t k = utf8_seq((const unsigned char *)s + i, n - i);
			if (!k) {
				puts_(t, "\\ufffd");
				i++;
				continue;
			}
			put(t, s + i, k);
			i += k;
			continue;
		}
		i++;
	}
	put(t, "\"", 1);
}

static void put_base64(text *t, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
			     i + 2 < n ? tab[v & 63] : '='};
		put(t, q, 4);
	}
}

/* A float as Python's repr prints it: the fewest significant digits that
 * read back as v, positional for exponents -4..15, else scientific, and
 * always with a '.' or an exponent so it stays a float (5.0, not 5). */
static void put_double(text *t, double v)
{
	if (!isfinite(v)) {
		puts_(t, "null");
		return;
	}
	char buf[48];
	int prec = 1;
	for (; prec < 17; prec++) {
		snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
	int exp = atoi(strchr(buf, 'e') + 1);
	if (exp >= -4 && exp < 16)
		snprintf(buf, sizeof buf, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
	if (!strpbrk(buf, ".e"))
		strcat(buf, ".0");
	puts_(t, buf);
}

static void put_value(text *t, const msgpack_object *o);

static void put_key(text *t, const msgpack_object *k)
{
	if (k->type == MSGPACK_OBJECT_STR) {
		put_json_str(t, k->via.str.ptr, k->via.str.size);
		return;
	}
	text inner = {0};
	put_value(&inner, k);
	if (inner.oom)
		t->oom = true;
	else if (inner.p && inner.p[0] == '"')
		put(t, inner.p, inner.len);
	else
		put_json_str(t, inner.p ? inner.p : "", inner.len);
	free(inner.p);
}

static void put_value(text *t, const msgpack_object *o)
{
	char buf[32];
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		puts_(t, "null");
		return;
	case MSGPACK_OBJECT_BOOLEAN:
		puts_(t, o->via.boolean ? "true" : "false");
		return;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->via.u64);
		puts_(t, buf);
		return;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof buf, "%lld", (long long)o->via.i64);
		puts_(t, buf);
		return;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		put_double(t, o->via.f64);
		return;
	case MSGPACK_OBJECT_STR:
		put_json_str(t, o->via.str.ptr, o->via.str.size);
		return;
	case MSGPACK_OBJECT_BIN:
		if (utf8_valid(o->via.bin.ptr, o->via.bin.size)) {
			put_json_str(t, o->via.bin.ptr, o->via.bin.size);
		} else {
			puts_(t, "\"base64:");
			put_base64(t, (const unsigned char *)o->via.bin.ptr, o->via.bin.size);
			puts_(t, "\"");
		}
		return;
	case MSGPACK_OBJECT_ARRAY:
		puts_(t, "[");
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				puts_(t, ", ");
			put_value(t, &o->via.array.ptr[i]);
		}
		puts_(t, "]");
		return;
	case MSGPACK_OBJECT_MAP:
		puts_(t, "{");
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				puts_(t, ", ");
			put_key(t, &o->via.map.ptr[i].key);
			puts_(t, ": ");
			put_value(t, &o->via.map.ptr[i].val);
		}
		puts_(t, "}");
		return;
	default: /* ext: no JSON form */
		puts_(t, "null");
		return;
	}
}

/* JSON text of an unpacked object; NULL when out of memory. */
char *producer_object_to_json(const msgpack_object *o)
{
	text t = {0};
	put_value(&t, o);
	if (t.oom) {
		free(t.p);
		return NULL;
	}
	return t.p;
}

int warren_msgpack_to_json(const void *mp, size_t len, char **out, warren_error *err)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 1024))
		return warren_error_set(err, WARREN_ENOMEM, "to json: out of memory");
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object obj;
	int rc = schema_unpack(mp, len, &lim, "value", &zone, &obj, err);
	if (rc)
		goto out_zone;
	char *s = producer_object_to_json(&obj);
	if (!s) {
		rc = warren_error_set(err, WARREN_ENOMEM, "to json: out of memory");
		goto out_zone;
	}
	*out = s;
out_zone:
	msgpack_zone_destroy(&zone);
	return rc;
}
