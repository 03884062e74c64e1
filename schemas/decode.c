/* schemas/decode.c - a msgpack decoder that honours schema_limits.
 *
 * msgpack-c's own unpacker keeps a fixed 32-level stack and allocates a
 * container's declared element count before reading a single element, so a
 * 6-byte message can ask it for gigabytes. This decoder reads the same format
 * into the same msgpack_object trees, but checks depth, counts and lengths
 * first, and never trusts a declared count beyond the bytes that remain: each
 * element takes at least one byte, so an array of n needs n bytes and a map of
 * n needs 2n. Allocation is thus at most sizeof(msgpack_object) per input byte.
 *
 * Errors name the input and the path of the value at fault, as
 * `body: truncated at byte 17 in [2]["chain"]`.
 *
 * Wire format note: this is the msgpack spec of 2017 (str8, bin, ext,
 * timestamps as ext -1 left as ext). A new msgpack type byte means a new case
 * in unpack_value().
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "schemas.h"

/* One step of the path from the root to the value being read. Steps live on
 * the C stack of the recursive calls; each points at its parent. */
typedef struct path_step {
	const struct path_step *up;
	enum { STEP_INDEX, STEP_KEY_OF, STEP_VALUE_OF } kind;
	size_t index;               /* STEP_INDEX, STEP_KEY_OF: element/pair number */
	const msgpack_object *key;  /* STEP_VALUE_OF: the pair's key */
} path_step;

typedef struct unpacker {
	const uint8_t *start, *pos, *end;
	const schema_limits *lim;
	unsigned max_depth;
	const char *what;
	msgpack_zone *zone;
	warren_error *err;
	schema_span *spans; /* of the root array's elements, n_spans at most */
	size_t n_spans;
} unpacker;

/* Appends one step to buf, as [3], ["chain"] or [key 2]. */
static void format_step(const path_step *s, char *buf, size_t cap)
{
	size_t used = strlen(buf);
	if (used + 1 >= cap)
		return;
	char *p = buf + used;
	size_t room = cap - used;
	if (s->kind == STEP_INDEX) {
		snprintf(p, room, "[%zu]", s->index);
	} else if (s->kind == STEP_KEY_OF) {
		snprintf(p, room, "[key %zu]", s->index);
	} else if (s->key->type == MSGPACK_OBJECT_STR) {
		int n = s->key->via.str.size > 40 ? 40 : (int)s->key->via.str.size;
		snprintf(p, room, "[\"%.*s%s\"]", n, s->key->via.str.ptr,
			 s->key->via.str.size > 40 ? "..." : "");
	} else if (s->key->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		snprintf(p, room, "[%" PRIu64 "]", s->key->via.u64);
	} else if (s->key->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		snprintf(p, room, "[%" PRId64 "]", s->key->via.i64);
	} else {
		snprintf(p, room, "[?]");
	}
}

/* Writes the path root-first; recursion depth is bounded by max_depth. */
static void format_path(const path_step *s, char *buf, size_t cap)
{
	if (!s)
		return;
	format_path(s->up, buf, cap);
	format_step(s, buf, cap);
}

/* " at [0][3]" (or " in ..."), or "" at the root. */
static void path_suffix(const path_step *s, const char *prep, char *buf, size_t cap)
{
	char path[200] = "";
	format_path(s, path, sizeof path);
	if (path[0])
		snprintf(buf, cap, " %s %s", prep, path);
	else
		buf[0] = '\0';
}

static int fail_truncated(unpacker *u, const uint8_t *at, const path_step *s)
{
	char where[220];
	path_suffix(s, "in", where, sizeof where);
	return warren_error_set(u->err, WARREN_EDECODE, "%s: truncated at byte %zu%s",
				u->what, (size_t)(at - u->start), where);
}

static int fail_nomem(unpacker *u)
{
	return warren_error_set(u->err, WARREN_ENOMEM, "%s: out of memory", u->what);
}

/* Reads an n-byte big-endian unsigned integer at pos (the caller checked n
 * bytes remain). */
static uint64_t read_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Consumes an n-byte big-endian length or count after the type byte at `at`. */
static int take_be(unpacker *u, const uint8_t *at, unsigned n, const path_step *s,
		   uint64_t *v)
{
	if ((size_t)(u->end - u->pos) < n)
		return fail_truncated(u, at, s);
	*v = read_be(u->pos, n);
	u->pos += n;
	return 0;
}

static int unpack_value(unpacker *u, unsigned depth, const path_step *s,
			msgpack_object *out);

/* str, bin and ext payloads: checked against max_str, copied into the zone
 * (with a NUL after, so a str can serve as a C string). */
static int take_bytes(unpacker *u, const uint8_t *at, uint64_t len,
		      const char *kind, const path_step *s, const char **out)
{
	if (len > u->lim->max_str) {
		char where[220];
		path_suffix(s, "at", where, sizeof where);
		return warren_error_set(u->err, WARREN_ELIMIT,
					"%s: %s of %" PRIu64 " bytes over the %zu limit%s",
					u->what, kind, len, u->lim->max_str, where);
	}
	if ((uint64_t)(u->end - u->pos) < len)
		return fail_truncated(u, at, s);
	char *copy = msgpack_zone_malloc(u->zone, (size_t)len + 1);
	if (!copy)
		return fail_nomem(u);
	memcpy(copy, u->pos, (size_t)len);
	copy[len] = '\0';
	u->pos += len;
	*out = copy;
	return 0;
}

static int unpack_str(unpacker *u, const uint8_t *at, uint64_t len,
		      const path_step *s, msgpack_object *out)
{
	out->type = MSGPACK_OBJECT_STR;
	out->via.str.size = (uint32_t)len;
	return take_bytes(u, at, len, "string", s, &out->via.str.ptr);
}

static int unpack_bin(unpacker *u, const uint8_t *at, uint64_t len,
		      const path_step *s, msgpack_object *out)
{
	out->type = MSGPACK_OBJECT_BIN;
	out->via.bin.size = (uint32_t)len;
	return take_bytes(u, at, len, "binary", s, &out->via.bin.ptr);
}

static int unpack_ext(unpacker *u, const uint8_t *at, uint64_t len,
		      const path_step *s, msgpack_object *out)
{
	if (u->pos == u->end)
		return fail_truncated(u, at, s);
	out->type = MSGPACK_OBJECT_EXT;
	out->via.ext.type = (int8_t)*u->pos++;
	out->via.ext.size = (uint32_t)len;
	return take_bytes(u, at, len, "extension", s, &out->via.ext.ptr);
}

/* Checks a container header before anything is allocated for it. */
static int check_container(unpacker *u, const uint8_t *at, unsigned depth,
			   uint64_t count, unsigned per_elem, const char *kind,
			   const path_step *s)
{
	char where[220];
	if (depth >= u->max_depth) {
		path_suffix(s, "at", where, sizeof where);
		return warren_error_set(u->err, WARREN_ELIMIT,
					"%s: nesting deeper than %u%s",
					u->what, u->max_depth, where);
	}
	if (count > u->lim->max_elems) {
		path_suffix(s, "at", where, sizeof where);
		return warren_error_set(u->err, WARREN_ELIMIT,
					"%s: %s of %" PRIu64 " elements over the %zu limit%s",
					u->what, kind, count, u->lim->max_elems, where);
	}
	if (count > (uint64_t)(u->end - u->pos) / per_elem)
		return fail_truncated(u, at, s);
	return 0;
}

static int unpack_array(unpacker *u, const uint8_t *at, unsigned depth,
			uint64_t count, const path_step *s, msgpack_object *out)
{
	int rc = check_container(u, at, depth, count, 1, "array", s);
	if (rc)
		return rc;
	out->type = MSGPACK_OBJECT_ARRAY;
	out->via.array.size = (uint32_t)count;
	out->via.array.ptr = NULL;
	if (count == 0)
		return 0;
	msgpack_object *items = msgpack_zone_malloc(u->zone, (size_t)count * sizeof *items);
	if (!items)
		return fail_nomem(u);
	out->via.array.ptr = items;
	for (size_t i = 0; i < count; i++) {
		path_step step = { .up = s, .kind = STEP_INDEX, .index = i };
		size_t off = (size_t)(u->pos - u->start);
		rc = unpack_value(u, depth + 1, &step, &items[i]);
		if (rc)
			return rc;
		if (depth == 0 && i < u->n_spans)
			u->spans[i] = (schema_span){off, (size_t)(u->pos - u->start) - off};
	}
	return 0;
}

static int unpack_map(unpacker *u, const uint8_t *at, unsigned depth,
		      uint64_t count, const path_step *s, msgpack_object *out)
{
	int rc = check_container(u, at, depth, count, 2, "map", s);
	if (rc)
		return rc;
	out->type = MSGPACK_OBJECT_MAP;
	out->via.map.size = (uint32_t)count;
	out->via.map.ptr = NULL;
	if (count == 0)
		return 0;
	msgpack_object_kv *pairs = msgpack_zone_malloc(u->zone, (size_t)count * sizeof *pairs);
	if (!pairs)
		return fail_nomem(u);
	out->via.map.ptr = pairs;
	for (size_t i = 0; i < count; i++) {
		path_step key_step = { .up = s, .kind = STEP_KEY_OF, .index = i };
		rc = unpack_value(u, depth + 1, &key_step, &pairs[i].key);
		if (rc)
			return rc;
		path_step val_step = { .up = s, .kind = STEP_VALUE_OF, .key = &pairs[i].key };
		rc = unpack_value(u, depth + 1, &val_step, &pairs[i].val);
		if (rc)
			return rc;
	}
	return 0;
}

static void set_uint(msgpack_object *out, uint64_t v)
{
	out->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	out->via.u64 = v;
}

/* Signed forms with a non-negative value become POSITIVE_INTEGER, as
 * msgpack-c's own unpacker does, so consumers check one type for "n >= 0". */
static void set_int(msgpack_object *out, int64_t v)
{
	if (v >= 0) {
		set_uint(out, (uint64_t)v);
	} else {
		out->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
		out->via.i64 = v;
	}
}

/* Reads the fixed-size scalar types 0xca-0xd3. */
static int unpack_number(unpacker *u, const uint8_t *at, uint8_t b,
			 const path_step *s, msgpack_object *out)
{
	static const unsigned width[] = { 4, 8, 1, 2, 4, 8, 1, 2, 4, 8 };
	uint64_t v = 0;
	int rc = take_be(u, at, width[b - 0xca], s, &v);
	if (rc)
		return rc;
	switch (b) {
	case 0xca: {
		uint32_t bits = (uint32_t)v;
		float f;
		memcpy(&f, &bits, sizeof f);
		out->type = MSGPACK_OBJECT_FLOAT32;
		out->via.f64 = f;
		break;
	}
	case 0xcb:
		out->type = MSGPACK_OBJECT_FLOAT64;
		memcpy(&out->via.f64, &v, sizeof out->via.f64);
		break;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		set_uint(out, v);
		break;
	case 0xd0: set_int(out, (int8_t)(uint8_t)v); break;
	case 0xd1: set_int(out, (int16_t)(uint16_t)v); break;
	case 0xd2: set_int(out, (int32_t)(uint32_t)v); break;
	default: {
		int64_t i;
		memcpy(&i, &v, sizeof i);
		set_int(out, i);
		break;
	}
	}
	return 0;
}

/* Reads the variable-length types 0xc4-0xc9 and 0xd4-0xdf. */
static int unpack_sized(unpacker *u, const uint8_t *at, uint8_t b, unsigned depth,
			const path_step *s, msgpack_object *out)
{
	uint64_t n = 0;
	int rc;
	if (b >= 0xd4 && b <= 0xd8) /* fixext 1, 2, 4, 8, 16 */
		return unpack_ext(u, at, 1u << (b - 0xd4), s, out);
	static const unsigned c4_width[] = { 1, 2, 4, 1, 2, 4 };  /* 0xc4-0xc9 */
	static const unsigned d9_width[] = { 1, 2, 4, 2, 4, 2, 4 }; /* 0xd9-0xdf */
	unsigned w = b <= 0xc9 ? c4_width[b - 0xc4] : d9_width[b - 0xd9];
	rc = take_be(u, at, w, s, &n);
	if (rc)
		return rc;
	if (b <= 0xc6)
		return unpack_bin(u, at, n, s, out);
	if (b <= 0xc9)
		return unpack_ext(u, at, n, s, out);
	if (b <= 0xdb)
		return unpack_str(u, at, n, s, out);
	if (b <= 0xdd)
		return unpack_array(u, at, depth, n, s, out);
	return unpack_map(u, at, depth, n, s, out);
}

/* depth counts the containers enclosing this value (0 at the root). */
static int unpack_value(unpacker *u, unsigned depth, const path_step *s,
			msgpack_object *out)
{
	const uint8_t *at = u->pos;
	if (u->pos == u->end)
		return fail_truncated(u, at, s);
	uint8_t b = *u->pos++;
	if (b <= 0x7f) {
		set_uint(out, b);
	} else if (b >= 0xe0) {
		set_int(out, (int8_t)b);
	} else if (b <= 0x8f) {
		return unpack_map(u, at, depth, b & 0x0f, s, out);
	} else if (b <= 0x9f) {
		return unpack_array(u, at, depth, b & 0x0f, s, out);
	} else if (b <= 0xbf) {
		return unpack_str(u, at, b & 0x1f, s, out);
	} else if (b == 0xc0) {
		out->type = MSGPACK_OBJECT_NIL;
	} else if (b == 0xc2 || b == 0xc3) {
		out->type = MSGPACK_OBJECT_BOOLEAN;
		out->via.boolean = b == 0xc3;
	} else if (b == 0xc1) {
		char where[220];
		path_suffix(s, "in", where, sizeof where);
		return warren_error_set(u->err, WARREN_EDECODE,
					"%s: invalid type byte 0xc1 at byte %zu%s",
					u->what, (size_t)(at - u->start), where);
	} else if (b >= 0xca && b <= 0xd3) {
		return unpack_number(u, at, b, s, out);
	} else {
		return unpack_sized(u, at, b, depth, s, out);
	}
	return 0;
}

int schema_unpack(const void *data, size_t len, const schema_limits *lim,
		  const char *what, msgpack_zone *zone, msgpack_object *out,
		  warren_error *err)
{
	return schema_unpack_spans(data, len, lim, what, zone, out, NULL, 0, err);
}

int schema_unpack_spans(const void *data, size_t len, const schema_limits *lim,
			const char *what, msgpack_zone *zone, msgpack_object *out,
			schema_span *spans, size_t n_spans, warren_error *err)
{
	if (len > lim->max_body)
		return warren_error_set(err, WARREN_ELIMIT, "%s: %zu bytes over the %zu limit",
					what, len, lim->max_body);
	unpacker u = {
		.start = data, .pos = data, .end = (const uint8_t *)data + len,
		.lim = lim, .what = what, .zone = zone, .err = err,
		.max_depth = lim->max_depth > SCHEMA_DEPTH_CEILING ?
			SCHEMA_DEPTH_CEILING : lim->max_depth,
		.spans = spans, .n_spans = n_spans,
	};
	if (len == 0)
		return warren_error_set(err, WARREN_EDECODE, "%s: empty", what);
	int rc = unpack_value(&u, 0, NULL, out);
	if (rc)
		return rc;
	if (u.pos != u.end)
		return warren_error_set(err, WARREN_EDECODE,
					"%s: %zu extra bytes after the value at byte %zu",
					what, (size_t)(u.end - u.pos), (size_t)(u.pos - u.start));
	return 0;
}

const msgpack_object *schema_map_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t key_len = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len &&
		    memcmp(k->via.str.ptr, key, key_len) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

const char *schema_obj_type_name(const msgpack_object *obj)
{
	switch (obj->type) {
	case MSGPACK_OBJECT_NIL: return "nil";
	case MSGPACK_OBJECT_BOOLEAN: return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "float";
	case MSGPACK_OBJECT_STR: return "str";
	case MSGPACK_OBJECT_BIN: return "bin";
	case MSGPACK_OBJECT_EXT: return "ext";
	case MSGPACK_OBJECT_ARRAY: return "array";
	case MSGPACK_OBJECT_MAP: return "map";
	}
	return "?";
}

char *schema_zone_strndup(msgpack_zone *zone, const char *s, size_t len)
{
	char *copy = msgpack_zone_malloc(zone, len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}
