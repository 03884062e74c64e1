/* schemas/control.c - Celery remote control (kombu's pidbox Mailbox) on the
 * wire: request and reply bodies and headers, queue and exchange names, and
 * the result shapes Celery's Panel commands return, so that `celery inspect`
 * and `celery control` talk to warren workers and `warren inspect` talks to
 * Celery workers.
 *
 * The authority is kombu 5.2.4 kombu/pidbox.py (Mailbox._publish,
 * _publish_reply, _collect, Node.handle_message, get_queue) and Celery 5.2.6
 * app/control.py (Control, Inspect, flatten_reply) and worker/control.py (the
 * Panel commands and what they return). tests/fixtures/control/ holds bytes
 * made by that code (tests/interop/gen_control_fixtures.py).
 *
 * Bodies are msgpack or JSON, chosen by content type. JSON is converted to
 * msgpack objects on the way in and from them on the way out (serialized by
 * schema_event_encode(), byte-compatible with Python's json.dumps), so the
 * worker and the CLI handle one representation. Uses jansson: the library
 * must be linked with -ljansson.
 *
 * Wire format note: the body key order, header keys and reply shapes here are
 * the format; a change bumps SCHEMA_CONTROL_WIRE_VERSION in schemas.h and
 * regenerates tests/fixtures/control/.
 */
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schemas.h"

#define MSGPACK_CT "application/x-msgpack"

/* ---- names and formats ---- */

static int join_name(const char *a, const char *suffix, char *buf, size_t cap,
		     warren_error *err)
{
	if (!a || !*a)
		return warren_error_set(err, WARREN_EINVAL, "control: empty name for '*%s'", suffix);
	int n = snprintf(buf, cap, "%s%s", a, suffix);
	if (n < 0 || (size_t)n >= cap)
		return warren_error_set(err, WARREN_ELIMIT, "control: name '%s%s' longer than %zu",
					a, suffix, cap ? cap - 1 : 0);
	return 0;
}

int schema_control_queue_name(const char *nodename, char *buf, size_t cap,
			      warren_error *err)
{
	return join_name(nodename, SCHEMA_CONTROL_QUEUE_SUFFIX, buf, cap, err);
}

int schema_control_reply_queue_name(const char *oid, char *buf, size_t cap,
				    warren_error *err)
{
	return join_name(oid, SCHEMA_CONTROL_REPLY_QUEUE_SUFFIX, buf, cap, err);
}

int schema_control_format_of(const char *content_type, schema_control_format *out,
			     warren_error *err)
{
	if (!content_type || strcmp(content_type, MSGPACK_CT) == 0)
		*out = SCHEMA_CONTROL_MSGPACK;
	else if (strcmp(content_type, SCHEMA_CONTROL_JSON_CONTENT_TYPE) == 0)
		*out = SCHEMA_CONTROL_JSON;
	else
		return warren_error_set(err, WARREN_EDECODE,
					"control: content type '%s' is not msgpack or json",
					content_type);
	return 0;
}

const char *schema_control_content_type(schema_control_format fmt)
{
	return fmt == SCHEMA_CONTROL_JSON ? SCHEMA_CONTROL_JSON_CONTENT_TYPE : MSGPACK_CT;
}

const char *schema_control_content_encoding(schema_control_format fmt)
{
	return fmt == SCHEMA_CONTROL_JSON ? SCHEMA_CONTROL_JSON_CONTENT_ENCODING : "binary";
}

/* ---- JSON <-> msgpack ---- */

static int pack_str(msgpack_packer *pk, const char *s)
{
	if (!s)
		return msgpack_pack_nil(pk);
	return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Packs a parsed JSON value. Depth is bounded by jansson's parser (2048)
 * and again here, since callers may hand in any tree. */
static int json_to_mp(msgpack_packer *pk, const json_t *v, unsigned depth)
{
	const char *key;
	json_t *val;
	if (depth > SCHEMA_DEPTH_CEILING)
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (msgpack_pack_map(pk, json_object_size(v)))
			return -1;
		json_object_foreach((json_t *)v, key, val)
			if (pack_str(pk, key) || json_to_mp(pk, val, depth + 1))
				return -1;
		return 0;
	case JSON_ARRAY:
		if (msgpack_pack_array(pk, json_array_size(v)))
			return -1;
		for (size_t i = 0; i < json_array_size(v); i++)
			if (json_to_mp(pk, json_array_get(v, i), depth + 1))
				return -1;
		return 0;
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(v));
	case JSON_REAL: return msgpack_pack_double(pk, json_real_value(v));
	case JSON_TRUE: return msgpack_pack_true(pk);
	case JSON_FALSE: return msgpack_pack_false(pk);
	default: return msgpack_pack_nil(pk);
	}
}

static json_t *mp_to_json(const msgpack_object *o, unsigned depth, const char **why);

static json_t *map_to_json(const msgpack_object *o, unsigned depth, const char **why)
{
	json_t *obj = json_object();
	for (uint32_t i = 0; obj && i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR) {
			*why = "a map key that is not a string";
			goto out_obj;
		}
		json_t *val = mp_to_json(&kv->val, depth + 1, why);
		if (!val || json_object_setn_new(obj, kv->key.via.str.ptr, kv->key.via.str.size, val))
			goto out_obj;
	}
	return obj;
out_obj:
	json_decref(obj);
	return NULL;
}

static json_t *array_to_json(const msgpack_object *o, unsigned depth, const char **why)
{
	json_t *arr = json_array();
	for (uint32_t i = 0; arr && i < o->via.array.size; i++) {
		json_t *val = mp_to_json(&o->via.array.ptr[i], depth + 1, why);
		if (!val || json_array_append_new(arr, val)) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* A msgpack value as JSON; NULL with *why set for what JSON cannot hold
 * (bin, ext, non-string keys, huge unsigned, NaN), or with *why NULL when
 * memory ran out. */
static json_t *mp_to_json(const msgpack_object *o, unsigned depth, const char **why)
{
	json_t *v = NULL;
	if (depth > SCHEMA_DEPTH_CEILING) {
		*why = "nesting too deep";
		return NULL;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return json_null();
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX)
			*why = "an integer above 2^63-1";
		else
			v = json_integer((json_int_t)o->via.u64);
		return v;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			*why = "a NaN or infinite float";
		else
			v = json_real(o->via.f64);
		return v;
	case MSGPACK_OBJECT_STR:
		v = json_stringn(o->via.str.ptr, o->via.str.size);
		if (!v)
			*why = "a string that is not UTF-8";
		return v;
	case MSGPACK_OBJECT_ARRAY: return array_to_json(o, depth, why);
	case MSGPACK_OBJECT_MAP: return map_to_json(o, depth, why);
	default:
		*why = "bytes or an ext value";
		return NULL;
	}
}

/* Appends obj to body as Python-compatible JSON text. */
static int write_json(const msgpack_object *obj, msgpack_sbuffer *body, const char *what,
		      warren_error *err)
{
	const char *why = NULL;
	json_t *doc = mp_to_json(obj, 0, &why);
	if (!doc)
		return why ? warren_error_set(err, WARREN_EENCODE, "%s: json cannot hold %s", what, why)
			   : warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	char *text = NULL;
	size_t len = 0;
	int rc = schema_event_encode(doc, &text, &len, err);
	json_decref(doc);
	if (rc != 0)
		return rc;
	rc = msgpack_sbuffer_write(body, text, len);
	free(text);
	if (rc != 0)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	return 0;
}

/* Unpacks a body of either format into zone under lim. A JSON body is
 * parsed, repacked as msgpack and then unpacked like any other, so the
 * limits and the copying rules of schema_unpack hold for both. */
static int unpack_body(schema_control_format fmt, const void *body, size_t len,
		       const schema_limits *lim, const char *what, msgpack_zone *zone,
		       msgpack_object *out, warren_error *err)
{
	if (len > lim->max_body)
		return warren_error_set(err, WARREN_ELIMIT, "%s: %zu bytes, limit %zu", what, len,
					lim->max_body);
	if (fmt == SCHEMA_CONTROL_MSGPACK)
		return schema_unpack(body, len, lim, what, zone, out, err);
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr);
	if (!doc)
		return warren_error_set(err, WARREN_EDECODE, "%s: not JSON: %s at %d:%d", what,
					jerr.text, jerr.line, jerr.column);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int rc = json_to_mp(&pk, doc, 0);
	json_decref(doc);
	if (rc != 0)
		rc = warren_error_set(err, WARREN_ELIMIT, "%s: too deep or out of memory", what);
	else
		rc = schema_unpack(sb.data, sb.size, lim, what, zone, out, err);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

/* ---- small readers ---- */

/* The str under key as a NUL-terminated zone string (schema_unpack copies
 * strs with a NUL after them), NULL for nil or absent; -1 for another type. */
static int opt_str(const msgpack_object *map, const char *key, const char *what,
		   const char **out, warren_error *err)
{
	const msgpack_object *v = schema_map_get(map, key);
	*out = NULL;
	if (!v || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_STR || memchr(v->via.str.ptr, 0, v->via.str.size))
		return warren_error_set(err, WARREN_EDECODE, "%s: \"%s\" is %s, expected a string",
					what, key, schema_obj_type_name(v));
	*out = v->via.str.ptr;
	return 0;
}

static bool obj_number(const msgpack_object *v, double *out)
{
	if (!v)
		return false;
	switch (v->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)v->via.u64; return true;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)v->via.i64; return true;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: *out = v->via.f64; return isfinite(*out);
	default: return false;
	}
}

/* headers.clock as kombu uses it: `headers.get('clock') or 0`; anything
 * that is not a non-negative number is ignored rather than fatal. */
static void read_clock(const msgpack_object *headers, bool *has, uint64_t *clock)
{
	double d;
	const msgpack_object *v = schema_map_get(headers, "clock");
	*has = false;
	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*has = true;
		*clock = v->via.u64;
	} else if (obj_number(v, &d) && d >= 0 && d < 1.8e19) {
		*has = true;
		*clock = (uint64_t)d;
	}
}

static int unpack_headers(const void *headers, size_t len, const schema_limits *lim,
			  msgpack_zone *zone, msgpack_object *out, warren_error *err)
{
	out->type = MSGPACK_OBJECT_NIL;
	if (!headers || len == 0)
		return 0;
	int rc = schema_unpack(headers, len, lim, "control headers", zone, out, err);
	if (rc == 0 && out->type != MSGPACK_OBJECT_MAP && out->type != MSGPACK_OBJECT_NIL)
		rc = warren_error_set(err, WARREN_EDECODE, "control headers: %s, expected a map",
				      schema_obj_type_name(out));
	return rc;
}

/* What both decoders do first: the format from the content type, then a
 * zone with the headers and body unpacked into it under lim. On success the
 * zone is the caller's. `what` names the message in errors. */
static int unpack_message(const char *content_type, const void *headers, size_t headers_len,
			  const void *body, size_t body_len, const schema_limits *lim,
			  const char *what, schema_control_format *fmt, msgpack_zone **zone,
			  msgpack_object *hdrs, msgpack_object *obj, warren_error *err)
{
	int rc = schema_control_format_of(content_type, fmt, err);
	if (rc != 0)
		return rc;
	msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	if (!z)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	rc = unpack_headers(headers, headers_len, lim, z, hdrs, err);
	if (rc == 0)
		rc = unpack_body(*fmt, body, body_len, lim, what, z, obj, err);
	if (rc != 0) {
		msgpack_zone_free(z);
		return rc;
	}
	*zone = z;
	return 0;
}

/* ---- requests ---- */

static int read_destination(const msgpack_object *body, const schema_limits *lim,
			    schema_control_request *req, warren_error *err)
{
	const msgpack_object *d = schema_map_get(body, "destination");
	if (!d || d->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (d->type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE,
					"control request: \"destination\" is %s, expected a list",
					schema_obj_type_name(d));
	if (d->via.array.size > lim->max_elems)
		return warren_error_set(err, WARREN_ELIMIT,
					"control request: %" PRIu32 " destinations, limit %zu",
					d->via.array.size, lim->max_elems);
	size_t n = d->via.array.size;
	req->destination = msgpack_zone_malloc(req->zone, (n ? n : 1) * sizeof(char *));
	if (!req->destination)
		return warren_error_set(err, WARREN_ENOMEM, "control request: out of memory");
	for (size_t i = 0; i < n; i++) {
		const msgpack_object *e = &d->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_STR)
			return warren_error_set(err, WARREN_EDECODE,
						"control request: \"destination\"[%zu] is %s, expected a string",
						i, schema_obj_type_name(e));
		req->destination[i] = e->via.str.ptr;
	}
	req->n_destination = n;
	return 0;
}

static int read_reply_to(const msgpack_object *body, schema_control_request *req,
			 warren_error *err)
{
	const char *what = "control request: reply_to";
	const msgpack_object *r = schema_map_get(body, "reply_to");
	if (!r || r->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (r->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "%s is %s, expected a map", what,
					schema_obj_type_name(r));
	int rc = opt_str(r, "exchange", what, &req->reply_exchange, err);
	if (rc == 0)
		rc = opt_str(r, "routing_key", what, &req->reply_routing_key, err);
	if (rc == 0 && (!req->reply_exchange || !req->reply_routing_key))
		rc = warren_error_set(err, WARREN_EDECODE,
				      "%s needs both \"exchange\" and \"routing_key\"", what);
	return rc;
}

static int read_arguments(const msgpack_object *body, schema_control_request *req,
			  warren_error *err)
{
	const msgpack_object *a = schema_map_get(body, "arguments");
	if (!a || a->type == MSGPACK_OBJECT_NIL) {
		req->arguments.type = MSGPACK_OBJECT_MAP; /* `arguments or {}` */
		req->arguments.via.map.size = 0;
		req->arguments.via.map.ptr = NULL;
		return 0;
	}
	if (a->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE,
					"control request: \"arguments\" is %s, expected a map",
					schema_obj_type_name(a));
	req->arguments = *a;
	return 0;
}

static int read_request(const msgpack_object *body, const msgpack_object *headers,
			const schema_limits *lim, schema_control_request *req,
			warren_error *err)
{
	const char *what = "control request";
	if (body->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "%s: body is %s, expected a map", what,
					schema_obj_type_name(body));
	int rc = opt_str(body, "method", what, &req->method, err);
	if (rc == 0 && !req->method)
		rc = warren_error_set(err, WARREN_EDECODE, "%s: \"method\" is missing", what);
	if (rc == 0)
		rc = read_arguments(body, req, err);
	if (rc == 0)
		rc = read_destination(body, lim, req, err);
	if (rc == 0)
		rc = opt_str(body, "pattern", what, &req->pattern, err);
	if (rc == 0)
		rc = opt_str(body, "matcher", what, &req->matcher, err);
	if (rc == 0)
		rc = opt_str(body, "ticket", what, &req->ticket, err);
	if (rc == 0)
		rc = read_reply_to(body, req, err);
	if (rc != 0)
		return rc;
	read_clock(headers, &req->has_clock, &req->clock);
	double exp = 0;
	if (obj_number(schema_map_get(headers, "expires"), &exp) && exp > 0)
		req->expires = exp;
	return 0;
}

int schema_control_request_decode(const char *content_type, const void *headers,
				  size_t headers_len, const void *body,
				  size_t body_len, const schema_limits *lim,
				  schema_control_request **out, warren_error *err)
{
	schema_limits def;
	if (!lim) {
		schema_limits_default(&def);
		lim = &def;
	}
	schema_control_format fmt;
	msgpack_zone *zone;
	msgpack_object hdrs, obj;
	int rc = unpack_message(content_type, headers, headers_len, body, body_len, lim,
				"control request", &fmt, &zone, &hdrs, &obj, err);
	if (rc != 0)
		return rc;
	schema_control_request *req = calloc(1, sizeof *req);
	if (!req) {
		rc = warren_error_set(err, WARREN_ENOMEM, "control request: out of memory");
		goto out_zone;
	}
	req->format = fmt;
	req->zone = zone;
	if ((rc = read_request(&obj, &hdrs, lim, req, err)) != 0)
		goto out_req;
	*out = req;
	return 0;
out_req:
	free(req);
out_zone:
	msgpack_zone_free(zone);
	return rc;
}

void schema_control_request_free(schema_control_request *req)
{
	if (!req)
		return;
	msgpack_zone_free(req->zone);
	free(req);
}

/* kombu's 'pcre' matcher is re.match: anchored at the start only. POSIX
 * extended syntax covers what node patterns use (., *, +, [], |, ^, $). */
static bool regex_match_start(const char *pattern, const char *s)
{
	regex_t re;
	regmatch_t m;
	if (regcomp(&re, pattern, REG_EXTENDED) != 0)
		return false;
	bool ok = regexec(&re, s, 1, &m, 0) == 0 && m.rm_so == 0;
	/* re.match may find a later match when an earlier one exists; a
	 * leftmost match at 0 is what matters. */
	regfree(&re);
	return ok;
}

bool schema_control_request_is_for(const schema_control_request *req,
				   const char *nodename)
{
	if (req->n_destination > 0) {
		for (size_t i = 0; i < req->n_destination; i++)
			if (strcmp(req->destination[i], nodename) == 0)
				return true;
		return false;
	}
	if (req->pattern && *req->pattern && req->matcher && *req->matcher) {
		if (strcmp(req->matcher, "glob") == 0)
			return fnmatch(req->pattern, nodename, 0) == 0;
		if (strcmp(req->matcher, "pcre") == 0)
			return regex_match_start(req->pattern, nodename);
		return false; /* MatcherNotInstalled on a Celery worker */
	}
	return true;
}

bool schema_control_request_expired(const schema_control_request *req, double now)
{
	return req->expires > 0 && now > req->expires;
}

const msgpack_object *schema_control_arg(const schema_control_request *req,
					 const char *key)
{
	return schema_map_get(&req->arguments, key);
}

/* ---- encoding requests and replies ---- */

/* Unpacks exactly one value from mp (trusted, but checked) into zone. */
static int one_value(const void *mp, size_t len, msgpack_zone *zone, msgpack_object *out,
		     const char *what, warren_error *err)
{
	schema_limits lim;
	schema_limits_default(&lim);
	return schema_unpack(mp, len, &lim, what, zone, out, err);
}

/* Bytes the caller packed that do not unpack are the caller's mistake:
 * WARREN_EINVAL, keeping the decoder's message. */
static int caller_error(int rc, warren_error *err)
{
	if (rc != WARREN_EDECODE && rc != WARREN_ELIMIT)
		return rc;
	if (err)
		err->code = WARREN_EINVAL;
	return WARREN_EINVAL;
}

static int pack_request(msgpack_packer *pk, const schema_control_request_spec *s,
			const msgpack_object *args)
{
	bool call = s->ticket != NULL;
	int rc = msgpack_pack_map(pk, call ? 7 : 5);
	rc |= pack_str(pk, "method") | pack_str(pk, s->method);
	rc |= pack_str(pk, "arguments") | msgpack_pack_object(pk, *args);
	rc |= pack_str(pk, "destination");
	if (s->n_destination == 0) {
		rc |= msgpack_pack_nil(pk);
	} else {
		rc |= msgpack_pack_array(pk, s->n_destination);
		for (size_t i = 0; i < s->n_destination; i++)
			rc |= pack_str(pk, s->destination[i]);
	}
	rc |= pack_str(pk, "pattern") | pack_str(pk, s->pattern);
	rc |= pack_str(pk, "matcher") | pack_str(pk, s->matcher);
	if (call) {
		rc |= pack_str(pk, "ticket") | pack_str(pk, s->ticket);
		rc |= pack_str(pk, "reply_to") | msgpack_pack_map(pk, 2);
		rc |= pack_str(pk, "exchange") | pack_str(pk, SCHEMA_CONTROL_REPLY_EXCHANGE);
		rc |= pack_str(pk, "routing_key") | pack_str(pk, s->reply_routing_key);
	}
	return rc;
}

static int pack_request_headers(msgpack_packer *pk, uint64_t clock, double expires)
{
	int rc = msgpack_pack_map(pk, 2);
	rc |= pack_str(pk, "clock") | msgpack_pack_uint64(pk, clock);
	rc |= pack_str(pk, "expires");
	/* kombu: `time() + timeout if timeout else 0`, an int 0 */
	rc |= expires > 0 ? msgpack_pack_double(pk, expires) : msgpack_pack_int(pk, 0);
	return rc;
}

/* Packs obj into body in fmt. */
static int write_body(const msgpack_object *obj, schema_control_format fmt,
		      msgpack_sbuffer *body, const char *what, warren_error *err)
{
	if (fmt == SCHEMA_CONTROL_JSON)
		return write_json(obj, body, what, err);
	msgpack_packer pk;
	msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *obj) != 0)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	return 0;
}

static int check_spec(const schema_control_request_spec *s, warren_error *err)
{
	if (!s || !s->method || !*s->method)
		return warren_error_set(err, WARREN_EINVAL, "control request: no method");
	if (!s->ticket != !s->reply_routing_key)
		return warren_error_set(err, WARREN_EINVAL,
					"control request '%s': ticket and reply key go together",
					s->method);
	if (!isfinite(s->expires))
		return warren_error_set(err, WARREN_EINVAL,
					"control request '%s': expires is not finite", s->method);
	return 0;
}

/* The spec's arguments as an object in zone ({} when none). */
static int spec_arguments(const schema_control_request_spec *s, msgpack_zone *zone,
			  msgpack_object *args, warren_error *err)
{
	if (!s->arguments_mp) {
		args->type = MSGPACK_OBJECT_MAP;
		args->via.map.size = 0;
		args->via.map.ptr = NULL;
		return 0;
	}
	int rc = one_value(s->arguments_mp, s->arguments_len, zone, args,
			   "control request arguments", err);
	if (rc == 0 && args->type != MSGPACK_OBJECT_MAP)
		rc = warren_error_set(err, WARREN_EINVAL,
				      "control request '%s': arguments are %s, expected a map",
				      s->method, schema_obj_type_name(args));
	return caller_error(rc, err);
}

int schema_control_request_encode(const schema_control_request_spec *spec,
				  schema_control_format fmt, msgpack_sbuffer *headers,
				  msgpack_sbuffer *body, warren_error *err)
{
	int rc = check_spec(spec, err);
	if (rc != 0)
		return rc;
	msgpack_zone *zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	if (!zone)
		return warren_error_set(err, WARREN_ENOMEM, "control request: out of memory");
	msgpack_sbuffer tmp;
	msgpack_sbuffer_init(&tmp);
	msgpack_packer pk;
	msgpack_object args, obj;
	rc = spec_arguments(spec, zone, &args, err);
	if (rc != 0)
		goto out;
	msgpack_packer_init(&pk, &tmp, msgpack_sbuffer_write);
	if (pack_request(&pk, spec, &args) != 0) {
		rc = warren_error_set(err, WARREN_ENOMEM, "control request: out of memory");
		goto out;
	}
	rc = one_value(tmp.data, tmp.size, zone, &obj, "control request", err);
	if (rc == 0)
		rc = write_body(&obj, fmt, body, "control request", err);
	if (rc == 0) {
		msgpack_packer_init(&pk, headers, msgpack_sbuffer_write);
		if (pack_request_headers(&pk, spec->clock, spec->expires) != 0)
			rc = warren_error_set(err, WARREN_ENOMEM, "control request: out of memory");
	}
out:
	msgpack_sbuffer_destroy(&tmp);
	msgpack_zone_free(zone);
	return rc;
}

int schema_control_reply_headers(const char *ticket, uint64_t clock,
				 msgpack_sbuffer *buf, warren_error *err)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
	int rc = msgpack_pack_map(&pk, 2);
	rc |= pack_str(&pk, "ticket") | pack_str(&pk, ticket);
	rc |= pack_str(&pk, "clock") | msgpack_pack_uint64(&pk, clock);
	if (rc != 0)
		return warren_error_set(err, WARREN_ENOMEM, "control reply headers: out of memory");
	return 0;
}

int schema_control_reply_encode(const char *nodename, const void *result_mp,
				size_t result_len, schema_control_format fmt,
				msgpack_sbuffer *body, warren_error *err)
{
	if (!nodename || !*nodename || !result_mp)
		return warren_error_set(err, WARREN_EINVAL, "control reply: no node name or result");
	msgpack_zone *zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	if (!zone)
		return warren_error_set(err, WARREN_ENOMEM, "control reply: out of memory");
	msgpack_object result;
	int rc = one_value(result_mp, result_len, zone, &result, "control reply result", err);
	if (rc != 0) {
		rc = caller_error(rc, err);
		goto out;
	}
	msgpack_object_kv kv = {
		.key = { .type = MSGPACK_OBJECT_STR,
			 .via.str = { .size = (uint32_t)strlen(nodename), .ptr = nodename } },
		.val = result,
	};
	msgpack_object map = { .type = MSGPACK_OBJECT_MAP, .via.map = { .size = 1, .ptr = &kv } };
	rc = write_body(&map, fmt, body, "control reply", err);
out:
	msgpack_zone_free(zone);
	return rc;
}

/* ---- replies ---- */

static void classify(schema_control_node_reply *n)
{
	const msgpack_object *v = &n->value;
	if (v->type != MSGPACK_OBJECT_MAP || v->via.map.size != 1 ||
	    v->via.map.ptr[0].key.type != MSGPACK_OBJECT_STR)
		return;
	const msgpack_object_str *k = &v->via.map.ptr[0].key.via.str;
	const msgpack_object *val = &v->via.map.ptr[0].val;
	if (k->size == 2 && memcmp(k->ptr, "ok", 2) == 0) {
		n->is_ok = true;
	} else if (k->size == 5 && memcmp(k->ptr, "error", 5) == 0) {
		n->is_error = true;
		if (val->type == MSGPACK_OBJECT_STR)
			n->error = val->via.str.ptr;
	}
}

static int read_reply(const msgpack_object *body, const msgpack_object *headers,
		      schema_control_reply *r, warren_error *err)
{
	if (body->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE,
					"control reply: body is %s, expected a map",
					schema_obj_type_name(body));
	size_t n = body->via.map.size;
	r->nodes = msgpack_zone_malloc(r->zone, (n ? n : 1) * sizeof *r->nodes);
	if (!r->nodes)
		return warren_error_set(err, WARREN_ENOMEM, "control reply: out of memory");
	for (size_t i = 0; i < n; i++) {
		const msgpack_object_kv *kv = &body->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR)
			return warren_error_set(err, WARREN_EDECODE,
						"control reply: node name [%zu] is %s, expected a string",
						i, schema_obj_type_name(&kv->key));
		schema_control_node_reply *node = &r->nodes[i];
		memset(node, 0, sizeof *node);
		node->nodename = kv->key.via.str.ptr;
		node->value = kv->val;
		classify(node);
	}
	r->n_nodes = n;
	read_clock(headers, &r->has_clock, &r->clock);
	return opt_str(headers, "ticket", "control reply headers", &r->ticket, err);
}

int schema_control_reply_decode(const char *content_type, const void *headers,
				size_t headers_len, const void *body,
				size_t body_len, const schema_limits *lim,
				schema_control_reply **out, warren_error *err)
{
	schema_limits def;
	if (!lim) {
		schema_limits_default(&def);
		lim = &def;
	}
	schema_control_format fmt;
	msgpack_zone *zone;
	msgpack_object hdrs, obj;
	int rc = unpack_message(content_type, headers, headers_len, body, body_len, lim,
				"control reply", &fmt, &zone, &hdrs, &obj, err);
	if (rc != 0)
		return rc;
	schema_control_reply *r = calloc(1, sizeof *r);
	if (!r) {
		rc = warren_error_set(err, WARREN_ENOMEM, "control reply: out of memory");
		goto out_zone;
	}
	r->zone = zone;
	if ((rc = read_reply(&obj, &hdrs, r, err)) != 0)
		goto out_reply;
	*out = r;
	return 0;
out_reply:
	free(r);
out_zone:
	msgpack_zone_free(zone);
	return rc;
}

void schema_control_reply_free(schema_control_reply *reply)
{
	if (!reply)
		return;
	msgpack_zone_free(reply->zone);
	free(reply);
}

/* ---- result shapes ---- */

static int packed(int rc, const char *what, warren_error *err)
{
	if (rc != 0)
		return warren_error_set(err, WARREN_ENOMEM, "control %s: out of memory", what);
	return 0;
}

static int pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	return pack_str(pk, key) | pack_str(pk, val);
}

int schema_control_pack_ok(msgpack_packer *pk, const char *text, warren_error *err)
{
	return packed(msgpack_pack_map(pk, 1) | pack_kv_str(pk, "ok", text), "ok", err);
}

int schema_control_pack_error(msgpack_packer *pk, const char *text, warren_error *err)
{
	return packed(msgpack_pack_map(pk, 1) | pack_kv_str(pk, "error", text), "error", err);
}

/* "<prefix><a>, <b>, ...<suffix>" in a malloc'd string. */
static char *join_ids(const char *prefix, const char *const *ids, size_t n, const char *suffix)
{
	size_t len = strlen(prefix) + strlen(suffix) + 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(ids[i]) + 2;
	char *s = malloc(len);
	if (!s)
		return NULL;
	size_t o = (size_t)snprintf(s, len, "%s", prefix);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, len - o, "%s%s", i ? ", " : "", ids[i]);
	snprintf(s + o, len - o, "%s", suffix);
	return s;
}

int schema_control_pack_revoke(msgpack_packer *pk, const char *const *ids, size_t n,
			       bool terminate, const char *const *terminated,
			       size_t n_terminated, warren_error *err)
{
	char *text;
	if (!terminate)
		text = join_ids("tasks ", ids, n, " flagged as revoked");
	else if (n_terminated == 0)
		text = strdup("terminate: tasks unknown");
	else
		text = join_ids("terminate: ", terminated, n_terminated, "");
	if (!text)
		return warren_error_set(err, WARREN_ENOMEM, "control revoke: out of memory");
	int rc = schema_control_pack_ok(pk, text, err);
	free(text);
	return rc;
}

int schema_control_pack_strings(msgpack_packer *pk, const char *const *s, size_t n,
				warren_error *err)
{
	int rc = msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++)
		rc |= pack_str(pk, s[i]);
	return packed(rc, "list", err);
}

static int pack_opt_int(msgpack_packer *pk, bool has, int64_t v)
{
	return has ? msgpack_pack_int64(pk, v) : msgpack_pack_nil(pk);
}

static int pack_opt_double(msgpack_packer *pk, bool has, double v)
{
	return has ? msgpack_pack_double(pk, v) : msgpack_pack_nil(pk);
}

static int pack_bool(msgpack_packer *pk, bool b)
{
	return b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

/* kombu Exchange.as_dict(): name, type, arguments, durable, passive,
 * auto_delete, delivery_mode, no_declare. */
static int pack_exchange(msgpack_packer *pk, const schema_control_queue_info *q)
{
	int rc = msgpack_pack_map(pk, 8);
	rc |= pack_kv_str(pk, "name", q->exchange ? q->exchange : "");
	rc |= pack_kv_str(pk, "type", q->exchange_type ? q->exchange_type : "direct");
	rc |= pack_str(pk, "arguments") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "durable") | pack_bool(pk, q->exchange_durable);
	rc |= pack_str(pk, "passive") | msgpack_pack_false(pk);
	rc |= pack_str(pk, "auto_delete") | msgpack_pack_false(pk);
	rc |= pack_str(pk, "delivery_mode") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "no_declare") | msgpack_pack_false(pk);
	return rc;
}

static int pack_queue_arguments(msgpack_packer *pk, const schema_control_queue_info *q)
{
	size_t n = (q->has_max_priority ? 1 : 0) + (q->queue_type ? 1 : 0);
	if (n == 0)
		return msgpack_pack_nil(pk);
	int rc = msgpack_pack_map(pk, n);
	if (q->has_max_priority)
		rc |= pack_str(pk, "x-max-priority") | msgpack_pack_int64(pk, q->max_priority);
	if (q->queue_type)
		rc |= pack_kv_str(pk, "x-queue-type", q->queue_type);
	return rc;
}

/* kombu Queue.as_dict(recurse=True), in its attrs order. */
static int pack_queue(msgpack_packer *pk, const schema_control_queue_info *q)
{
	int rc = msgpack_pack_map(pk, 18);
	rc |= pack_kv_str(pk, "name", q->name);
	rc |= pack_str(pk, "exchange") | pack_exchange(pk, q);
	rc |= pack_kv_str(pk, "routing_key", q->routing_key ? q->routing_key : "");
	rc |= pack_str(pk, "queue_arguments") | pack_queue_arguments(pk, q);
	rc |= pack_str(pk, "binding_arguments") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "consumer_arguments") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "durable") | pack_bool(pk, q->durable);
	rc |= pack_str(pk, "exclusive") | pack_bool(pk, q->exclusive);
	rc |= pack_str(pk, "auto_delete") | pack_bool(pk, q->auto_delete);
	rc |= pack_str(pk, "no_ack") | msgpack_pack_false(pk);
	rc |= pack_str(pk, "alias") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "bindings") | msgpack_pack_array(pk, 0);
	rc |= pack_str(pk, "no_declare") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "expires") | pack_opt_double(pk, q->has_expires, q->expires);
	rc |= pack_str(pk, "message_ttl") | pack_opt_double(pk, q->has_message_ttl, q->message_ttl);
	rc |= pack_str(pk, "max_length") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "max_length_bytes") | msgpack_pack_nil(pk);
	/* Celery puts a priority into queue_arguments (app/amqp.py
	 * _set_max_priority) and leaves this attribute None. */
	rc |= pack_str(pk, "max_priority") | msgpack_pack_nil(pk);
	return rc;
}

int schema_control_pack_queues(msgpack_packer *pk, const schema_control_queue_info *q,
			       size_t n, warren_error *err)
{
	int rc = msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++)
		rc |= pack_queue(pk, &q[i]);
	return packed(rc, "active_queues", err);
}

/* Writes a caller's packed value, or `empty` (an empty list or map) if
 * none. The bytes are the caller's; they are trusted to be one value. */
static int pack_raw_or(msgpack_packer *pk, const void *mp, size_t len, bool empty_map)
{
	if (!mp)
		return empty_map ? msgpack_pack_map(pk, 0) : msgpack_pack_array(pk, 0);
	return pk->callback(pk->data, (const char *)mp, len);
}

/* Request.info(): id, name, args, kwargs, type, hostname, time_start,
 * acknowledged, delivery_info{exchange, routing_key, priority, redelivered},
 * worker_pid. */
static int pack_task(msgpack_packer *pk, const schema_control_task_info *t)
{
	int rc = msgpack_pack_map(pk, 10);
	rc |= pack_kv_str(pk, "id", t->id);
	rc |= pack_kv_str(pk, "name", t->name);
	rc |= pack_str(pk, "args") | pack_raw_or(pk, t->args_mp, t->args_len, false);
	rc |= pack_str(pk, "kwargs") | pack_raw_or(pk, t->kwargs_mp, t->kwargs_len, true);
	rc |= pack_kv_str(pk, "type", t->name);
	rc |= pack_kv_str(pk, "hostname", t->hostname);
	rc |= pack_str(pk, "time_start") | pack_opt_double(pk, t->has_time_start, t->time_start);
	rc |= pack_str(pk, "acknowledged") | pack_bool(pk, t->acknowledged);
	rc |= pack_str(pk, "delivery_info") | msgpack_pack_map(pk, 4);
	rc |= pack_kv_str(pk, "exchange", t->exchange);
	rc |= pack_kv_str(pk, "routing_key", t->routing_key);
	rc |= pack_str(pk, "priority") | pack_opt_int(pk, t->has_priority, t->priority);
	rc |= pack_str(pk, "redelivered") | pack_bool(pk, t->redelivered);
	rc |= pack_str(pk, "worker_pid") | pack_opt_int(pk, t->has_worker_pid, t->worker_pid);
	return rc;
}

int schema_control_pack_tasks(msgpack_packer *pk, const schema_control_task_info *t,
			      size_t n, warren_error *err)
{
	/* Packed args/kwargs go through pk->callback as raw bytes. */
	int rc = msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++)
		rc |= pack_task(pk, &t[i]);
	return packed(rc, "tasks", err);
}

/* A number as Python keeps it: an int when integral (connect_timeout 4). */
static int pack_number(msgpack_packer *pk, double v)
{
	if (v == floor(v) && fabs(v) < 9e15)
		return msgpack_pack_int64(pk, (int64_t)v);
	return msgpack_pack_double(pk, v);
}

/* prefork's _get_info: max-concurrency, processes, max-tasks-per-child,
 * put-guarded-by-semaphore, timeouts [soft, hard], writes. */
static int pack_pool(msgpack_packer *pk, const schema_control_stats *st)
{
	int rc = msgpack_pack_map(pk, 6);
	rc |= pack_str(pk, "max-concurrency") | msgpack_pack_int64(pk, st->max_concurrency);
	rc |= pack_str(pk, "processes") | msgpack_pack_array(pk, st->n_processes);
	for (size_t i = 0; i < st->n_processes; i++)
		rc |= msgpack_pack_int64(pk, st->processes[i]);
	rc |= pack_str(pk, "max-tasks-per-child");
	rc |= st->max_tasks_per_child > 0 ? msgpack_pack_int64(pk, st->max_tasks_per_child)
					  : pack_str(pk, "N/A");
	rc |= pack_str(pk, "put-guarded-by-semaphore") | pack_bool(pk, st->put_guarded_by_semaphore);
	rc |= pack_str(pk, "timeouts") | msgpack_pack_array(pk, 2);
	rc |= pack_number(pk, st->soft_timeout) | pack_number(pk, st->hard_timeout);
	rc |= pack_kv_str(pk, "writes", "N/A");
	return rc;
}

/* kombu Connection.info() without the password, in its order. */
static int pack_broker(msgpack_packer *pk, const schema_control_stats *st)
{
	int rc = msgpack_pack_map(pk, 14);
	rc |= pack_kv_str(pk, "hostname", st->broker_hostname);
	rc |= pack_kv_str(pk, "userid", st->broker_userid);
	rc |= pack_kv_str(pk, "virtual_host", st->broker_vhost);
	rc |= pack_str(pk, "port") | msgpack_pack_int64(pk, st->broker_port);
	rc |= pack_str(pk, "insist") | msgpack_pack_false(pk);
	rc |= pack_str(pk, "ssl") | pack_bool(pk, st->broker_ssl);
	rc |= pack_kv_str(pk, "transport", st->broker_transport ? st->broker_transport : "amqp");
	rc |= pack_str(pk, "connect_timeout") | pack_number(pk, st->broker_connect_timeout);
	rc |= pack_str(pk, "transport_options") | msgpack_pack_map(pk, 0);
	rc |= pack_kv_str(pk, "login_method", "PLAIN");
	rc |= pack_str(pk, "uri_prefix") | msgpack_pack_nil(pk);
	rc |= pack_str(pk, "heartbeat") |
	      pack_opt_double(pk, st->broker_heartbeat > 0, st->broker_heartbeat);
	rc |= pack_kv_str(pk, "failover_strategy", "round-robin");
	rc |= pack_str(pk, "alternates") | msgpack_pack_array(pk, 0);
	return rc;
}

static int pack_rusage(msgpack_packer *pk, const schema_control_stats *st)
{
	if (!st->has_rusage)
		return pack_str(pk, "N/A");
	const struct { const char *k; int64_t v; } ints[] = {
		{"maxrss", st->maxrss}, {"ixrss", st->ixrss}, {"idrss", st->idrss},
		{"isrss", st->isrss}, {"minflt", st->minflt}, {"majflt", st->majflt},
		{"nswap", st->nswap}, {"inblock", st->inblock}, {"oublock", st->oublock},
		{"msgsnd", st->msgsnd}, {"msgrcv", st->msgrcv}, {"nsignals", st->nsignals},
		{"nvcsw", st->nvcsw}, {"nivcsw", st->nivcsw},
	};
	size_t n = sizeof ints / sizeof ints[0];
	int rc = msgpack_pack_map(pk, 2 + n);
	rc |= pack_str(pk, "utime") | msgpack_pack_double(pk, st->utime);
	rc |= pack_str(pk, "stime") | msgpack_pack_double(pk, st->stime);
	for (size_t i = 0; i < n; i++)
		rc |= pack_str(pk, ints[i].k) | msgpack_pack_int64(pk, ints[i].v);
	return rc;
}

int schema_control_pack_stats(msgpack_packer *pk, const schema_control_stats *st,
			      warren_error *err)
{
	char clock[24];
	snprintf(clock, sizeof clock, "%" PRIu64, st->clock);
	int rc = msgpack_pack_map(pk, 8);
	rc |= pack_str(pk, "total") | msgpack_pack_map(pk, st->n_total);
	for (size_t i = 0; i < st->n_total; i++)
		rc |= pack_str(pk, st->total[i].name) | msgpack_pack_int64(pk, st->total[i].count);
	rc |= pack_str(pk, "pid") | msgpack_pack_int64(pk, st->pid);
	rc |= pack_kv_str(pk, "clock", clock);
	rc |= pack_str(pk, "uptime") | msgpack_pack_int64(pk, st->uptime);
	rc |= pack_str(pk, "pool") | pack_pool(pk, st);
	rc |= pack_str(pk, "broker") | pack_broker(pk, st);
	rc |= pack_str(pk, "prefetch_count") | msgpack_pack_int64(pk, st->prefetch_count);
	rc |= pack_str(pk, "rusage") | pack_rusage(pk, st);
	return packed(rc, "stats", err);
}
