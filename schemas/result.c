/* schemas/result.c - Celery task results on the wire: the rpc backend's reply
 * body and the Redis backend's stored meta, both msgpack maps, plus the
 * exc_* map Celery uses for exceptions under json/msgpack.
 *
 * The authority is Celery 5.2's own code: backends/rpc.py _to_result,
 * backends/base.py _get_result_meta / prepare_exception / exception_to_python
 * and states.py. tests/fixtures/results/results.json holds bytes made by that
 * code (tests/interop/gen_result_fixtures.py); our encoders must reproduce
 * them exactly. The layouts are described, with what to bump when they
 * change, next to WARREN_RESULT_WIRE_VERSION in schemas.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas.h"

/* ---- states ---- */

static const char *const state_names[] = {
	[SCHEMA_STATE_PENDING] = "PENDING",   [SCHEMA_STATE_RECEIVED] = "RECEIVED",
	[SCHEMA_STATE_STARTED] = "STARTED",   [SCHEMA_STATE_SUCCESS] = "SUCCESS",
	[SCHEMA_STATE_FAILURE] = "FAILURE",   [SCHEMA_STATE_RETRY] = "RETRY",
	[SCHEMA_STATE_REVOKED] = "REVOKED",   [SCHEMA_STATE_REJECTED] = "REJECTED",
	[SCHEMA_STATE_IGNORED] = "IGNORED",
};
#define N_STATES (sizeof state_names / sizeof state_names[0])

const char *schema_state_name(schema_state s)
{
	if ((unsigned)s >= N_STATES)
		return "?";
	return state_names[s];
}

int schema_state_parse(const char *name, size_t len, schema_state *out)
{
	for (size_t i = 0; i < N_STATES; i++) {
		if (strlen(state_names[i]) == len && memcmp(name, state_names[i], len) == 0) {
			*out = (schema_state)i;
			return 0;
		}
	}
	return -1;
}

bool schema_state_is_ready(schema_state s)
{
	return s == SCHEMA_STATE_SUCCESS || s == SCHEMA_STATE_FAILURE ||
	       s == SCHEMA_STATE_REVOKED;
}

bool schema_state_is_exception(schema_state s)
{
	return s == SCHEMA_STATE_RETRY || s == SCHEMA_STATE_FAILURE ||
	       s == SCHEMA_STATE_REVOKED;
}

bool schema_state_is_propagate(schema_state s)
{
	return s == SCHEMA_STATE_FAILURE || s == SCHEMA_STATE_REVOKED;
}

/* ---- lifecycle and setters ---- */

void schema_result_init(schema_result *r)
{
	memset(r, 0, sizeof *r);
	r->state = SCHEMA_STATE_PENDING;
}

void schema_result_release(schema_result *r)
{
	free(r->task_id);
	free(r->result_mp);
	free(r->traceback);
	free(r->children_mp);
	free(r->date_done);
	free(r->group_id);
	free(r->parent_id);
	free(r->name);
	free(r->args_mp);
	free(r->kwargs_mp);
	free(r->worker);
	free(r->queue);
	schema_result_init(r);
}

/* Replaces *slot with a copy of s (NULL: nil). */
static int replace_str(char **slot, const char *s, warren_error *err)
{
	char *copy = NULL;
	if (s && !(copy = strdup(s)))
		return warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
	free(*slot);
	*slot = copy;
	return 0;
}

/* Replaces *slot and *slot_len with a copy of len bytes at mp (NULL: nil). */
static int replace_bytes(char **slot, size_t *slot_len, const void *mp, size_t len,
			 warren_error *err)
{
	char *copy = NULL;
	if (mp) {
		copy = malloc(len ? len : 1);
		if (!copy)
			return warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
		memcpy(copy, mp, len);
	}
	free(*slot);
	*slot = copy;
	*slot_len = mp ? len : 0;
	return 0;
}

int schema_result_set_task_id(schema_result *r, const char *task_id, warren_error *err)
{
	return replace_str(&r->task_id, task_id, err);
}

int schema_result_set_traceback(schema_result *r, const char *traceback, warren_error *err)
{
	return replace_str(&r->traceback, traceback, err);
}

int schema_result_set_group_id(schema_result *r, const char *group_id, warren_error *err)
{
	return replace_str(&r->group_id, group_id, err);
}

int schema_result_set_parent_id(schema_result *r, const char *parent_id, warren_error *err)
{
	return replace_str(&r->parent_id, parent_id, err);
}

int schema_result_set_value(schema_result *r, const void *mp, size_t len, warren_error *err)
{
	return replace_bytes(&r->result_mp, &r->result_len, mp, len, err);
}

int schema_result_set_children(schema_result *r, const void *mp, size_t len, warren_error *err)
{
	return replace_bytes(&r->children_mp, &r->children_len, mp, len, err);
}

int schema_result_set_extended(schema_result *r, const char *name,
			       const void *args_mp, size_t args_len,
			       const void *kwargs_mp, size_t kwargs_len,
			       const char *worker, int64_t retries,
			       const char *queue, warren_error *err)
{
	int rc;
	if ((rc = replace_str(&r->name, name, err)) ||
	    (rc = replace_bytes(&r->args_mp, &r->args_len, args_mp, args_len, err)) ||
	    (rc = replace_bytes(&r->kwargs_mp, &r->kwargs_len, kwargs_mp, kwargs_len, err)) ||
	    (rc = replace_str(&r->worker, worker, err)) ||
	    (rc = replace_str(&r->queue, queue, err)))
		return rc;
	r->retries = retries;
	r->extended = true;
	return 0;
}

/* ---- packing helpers ---- */

/* msgpack-c's pack functions return 0 or -1 (the sbuffer could not grow);
 * the builders below OR them together and report ENOMEM once at the end. */

static int pack_cstr(msgpack_packer *pk, const char *s)
{
	if (!s)
		return msgpack_pack_nil(pk);
	size_t len = strlen(s);
	return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s, len);
}

/* Writes already-packed bytes as they are (NULL: nil). */
static int pack_raw(msgpack_packer *pk, const char *mp, size_t len)
{
	if (!mp)
		return msgpack_pack_nil(pk);
	return pk->callback(pk->data, mp, len);
}

static int pack_key(msgpack_packer *pk, const char *key)
{
	return pack_cstr(pk, key);
}

/* Hands the sbuffer's bytes to the caller, or frees them on failure. */
static int finish_sbuffer(msgpack_sbuffer *sb, int pack_rc, char **out, size_t *out_len,
			  warren_error *err)
{
	if (pack_rc != 0) {
		msgpack_sbuffer_destroy(sb);
		return warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
	}
	*out = sb->data;
	*out_len = sb->size;
	return 0;
}

/* Sets state and a freshly packed value, taking ownership of the sbuffer. */
static int set_packed(schema_result *r, schema_state state, msgpack_sbuffer *sb,
		      int pack_rc, warren_error *err)
{
	char *data = NULL;
	size_t len = 0;
	int rc = finish_sbuffer(sb, pack_rc, &data, &len, err);
	if (rc)
		return rc;
	free(r->result_mp);
	r->result_mp = data;
	r->result_len = len;
	r->state = state;
	return 0;
}

/* ---- result shapes ---- */

int schema_result_set_success(schema_result *r, const void *mp, size_t len, warren_error *err)
{
	int rc = schema_result_set_value(r, mp, len, err);
	if (rc == 0)
		r->state = SCHEMA_STATE_SUCCESS;
	return rc;
}

int schema_result_set_exception_args(schema_result *r, schema_state state,
				     const char *type, const char *module,
				     const void *args_mp, size_t args_len,
				     warren_error *err)
{
	if (!type)
		return warren_error_set(err, WARREN_EINVAL, "result: exception without a type");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* Key order as prepare_exception builds its dict. */
	int prc = msgpack_pack_map(&pk, 3);
	prc |= pack_key(&pk, "exc_type") | pack_cstr(&pk, type);
	prc |= pack_key(&pk, "exc_message");
	prc |= args_mp ? pack_raw(&pk, args_mp, args_len) : msgpack_pack_array(&pk, 0);
	prc |= pack_key(&pk, "exc_module") | pack_cstr(&pk, module);
	return set_packed(r, state, &sb, prc, err);
}

int schema_result_set_exception(schema_result *r, schema_state state,
				const char *type, const char *module,
				const char *message, warren_error *err)
{
	/* Type(message): exc.args is (message,), or () without a message. */
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_array(&pk, message ? 1 : 0);
	if (message)
		prc |= pack_cstr(&pk, message);
	char *args = NULL;
	size_t args_len = 0;
	int rc = finish_sbuffer(&sb, prc, &args, &args_len, err);
	if (rc)
		return rc;
	rc = schema_result_set_exception_args(r, state, type, module, args, args_len, err);
	free(args);
	return rc;
}

int schema_result_set_started(schema_result *r, int64_t pid, const char *hostname,
			      warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* app/trace.py: {'pid': pid, 'hostname': hostname}. */
	int prc = msgpack_pack_map(&pk, 2);
	prc |= pack_key(&pk, "pid") | msgpack_pack_int64(&pk, pid);
	prc |= pack_key(&pk, "hostname") | pack_cstr(&pk, hostname);
	return set_packed(r, SCHEMA_STATE_STARTED, &sb, prc, err);
}

int schema_result_set_revoked(schema_result *r, schema_revoke_reason reason,
			      warren_error *err)
{
	static const char *const reasons[] = {
		[SCHEMA_REVOKED_REVOKED] = "revoked",
		[SCHEMA_REVOKED_EXPIRED] = "expired",
		[SCHEMA_REVOKED_TERMINATED] = "terminated",
	};
	if ((unsigned)reason >= sizeof reasons / sizeof reasons[0])
		return warren_error_set(err, WARREN_EINVAL, "result: revoke reason %d unknown",
					(int)reason);
	return schema_result_set_exception(r, SCHEMA_STATE_REVOKED, "TaskRevokedError",
					   "celery.exceptions", reasons[reason], err);
}

int schema_result_stamp_date_done(schema_result *r, const struct timespec *now,
				  warren_error *err)
{
	if (!schema_state_is_ready(r->state))
		return replace_str(&r->date_done, NULL, err);
	struct timespec ts;
	if (now)
		ts = *now;
	else
		clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	if (!gmtime_r(&ts.tv_sec, &tm))
		return warren_error_set(err, WARREN_EINVAL, "result: date_done out of range");
	/* datetime.isoformat() writes the fraction only when it is nonzero. */
	char buf[64];
	size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	long usec = ts.tv_nsec / 1000;
	if (usec != 0)
		snprintf(buf + n, sizeof buf - n, ".%06ld", usec);
	return replace_str(&r->date_done, buf, err);
}

/* ---- encoding ---- */

static int pack_children(msgpack_packer *pk, const schema_result *r)
{
	if (!r->children_mp)
		return msgpack_pack_array(pk, 0);
	return pack_raw(pk, r->children_mp, r->children_len);
}

int schema_result_encode_rpc(const schema_result *r, char **out, size_t *out_len,
			     warren_error *err)
{
	if (!r->task_id)
		return warren_error_set(err, WARREN_EINVAL, "result: no task_id to encode");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, 5);
	prc |= pack_key(&pk, "task_id") | pack_cstr(&pk, r->task_id);
	prc |= pack_key(&pk, "status") | pack_cstr(&pk, schema_state_name(r->state));
	prc |= pack_key(&pk, "result") | pack_raw(&pk, r->result_mp, r->result_len);
	prc |= pack_key(&pk, "traceback") | pack_cstr(&pk, r->traceback);
	prc |= pack_key(&pk, "children") | pack_children(&pk, r);
	return finish_sbuffer(&sb, prc, out, out_len, err);
}

int schema_result_encode_redis(const schema_result *r, char **out, size_t *out_len,
			       warren_error *err)
{
	if (!r->task_id)
		return warren_error_set(err, WARREN_EINVAL, "result: no task_id to encode");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* _get_result_meta's insertion order, then _store_result's task_id. */
	size_t n = 6 + (r->group_id != NULL) + (r->parent_id != NULL) + (r->extended ? 6 : 0);
	int prc = msgpack_pack_map(&pk, n);
	prc |= pack_key(&pk, "status") | pack_cstr(&pk, schema_state_name(r->state));
	prc |= pack_key(&pk, "result") | pack_raw(&pk, r->result_mp, r->result_len);
	prc |= pack_key(&pk, "traceback") | pack_cstr(&pk, r->traceback);
	prc |= pack_key(&pk, "children") | pack_children(&pk, r);
	prc |= pack_key(&pk, "date_done") | pack_cstr(&pk, r->date_done);
	if (r->group_id)
		prc |= pack_key(&pk, "group_id") | pack_cstr(&pk, r->group_id);
	if (r->parent_id)
		prc |= pack_key(&pk, "parent_id") | pack_cstr(&pk, r->parent_id);
	if (r->extended) {
		prc |= pack_key(&pk, "name") | pack_cstr(&pk, r->name);
		prc |= pack_key(&pk, "args") | pack_raw(&pk, r->args_mp, r->args_len);
		prc |= pack_key(&pk, "kwargs") | pack_raw(&pk, r->kwargs_mp, r->kwargs_len);
		prc |= pack_key(&pk, "worker") | pack_cstr(&pk, r->worker);
		prc |= pack_key(&pk, "retries") | msgpack_pack_int64(&pk, r->retries);
		prc |= pack_key(&pk, "queue") | pack_cstr(&pk, r->queue);
	}
	prc |= pack_key(&pk, "task_id") | pack_cstr(&pk, r->task_id);
	return finish_sbuffer(&sb, prc, out, out_len, err);
}

/* ---- decoding ---- */

/* "an int", "a string", ... for "is X, expected Y" messages. */
static const char *kind_name(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return "nil";
	case MSGPACK_OBJECT_BOOLEAN: return "a bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "a float";
	case MSGPACK_OBJECT_STR: return "a string";
	case MSGPACK_OBJECT_ARRAY: return "a list";
	case MSGPACK_OBJECT_MAP: return "a map";
	case MSGPACK_OBJECT_BIN: return "bytes";
	case MSGPACK_OBJECT_EXT: return "an ext";
	}
	return "an unknown type";
}

static bool key_is(const msgpack_object *k, const char *name)
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
	       memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

static int wrong_kind(const char *what, const char *key, const msgpack_object *v,
		      const char *expected, warren_error *err)
{
	return warren_error_set(err, WARREN_EDECODE, "%s: \"%s\" is %s, expected %s",
				what, key, kind_name(v), expected);
}

/* Copies a str object into a new C string. Embedded NUL bytes would make the
 * C string lie about its content, so they are refused, except in tracebacks
 * (free text nobody parses), which are cut at the first one instead. */
static int copy_str(const char *what, const char *key, const msgpack_object *v,
		    bool nullable, bool allow_nul, char **slot, warren_error *err)
{
	if (v->type == MSGPACK_OBJECT_NIL && nullable)
		return replace_str(slot, NULL, err);
	if (v->type != MSGPACK_OBJECT_STR)
		return wrong_kind(what, key, v, nullable ? "a string or nil" : "a string", err);
	size_t len = v->via.str.size;
	if (!allow_nul && memchr(v->via.str.ptr, '\0', len))
		return warren_error_set(err, WARREN_EDECODE, "%s: \"%s\" contains a NUL byte",
					what, key);
	char *copy = malloc(len + 1);
	if (!copy)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	memcpy(copy, v->via.str.ptr, len);
	copy[len] = '\0';
	free(*slot);
	*slot = copy;
	return 0;
}

/* Re-packs an object into owned bytes (nil: NULL). */
static int copy_packed(const char *what, const msgpack_object *v, char **slot,
		       size_t *slot_len, warren_error *err)
{
	if (v->type == MSGPACK_OBJECT_NIL)
		return replace_bytes(slot, slot_len, NULL, 0, err);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *v) != 0) {
		msgpack_sbuffer_destroy(&sb);
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	}
	free(*slot);
	*slot = sb.data;
	*slot_len = sb.size;
	return 0;
}

static int copy_packed_kind(const char *what, const char *key, const msgpack_object *v,
			    msgpack_object_type kind, const char *expected, char **slot,
			    size_t *slot_len, warren_error *err)
{
	if (v->type != MSGPACK_OBJECT_NIL && v->type != kind)
		return wrong_kind(what, key, v, expected, err);
	return copy_packed(what, v, slot, slot_len, err);
}

static int decode_status(const char *what, const msgpack_object *v, schema_state *out,
			 warren_error *err)
{
	if (v->type != MSGPACK_OBJECT_STR)
		return wrong_kind(what, "status", v, "a string", err);
	if (schema_state_parse(v->via.str.ptr, v->via.str.size, out) != 0)
		return warren_error_set(err, WARREN_EDECODE, "%s: unknown state \"%.*s\"", what,
					(int)(v->via.str.size > 32 ? 32 : v->via.str.size),
					v->via.str.ptr);
	return 0;
}

static int decode_retries(const char *what, const msgpack_object *v, int64_t *out,
			  warren_error *err)
{
	if (v->type == MSGPACK_OBJECT_NIL) {
		*out = 0;
		return 0;
	}
	if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*out = v->via.i64;
		return 0;
	}
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (v->via.u64 > INT64_MAX)
			return warren_error_set(err, WARREN_EDECODE,
						"%s: \"retries\" is out of range", what);
		*out = (int64_t)v->via.u64;
		return 0;
	}
	return wrong_kind(what, "retries", v, "an int or nil", err);
}

/* The result_extended fields: any one of them marks the meta extended. */
static int decode_extended_field(const char *what, const msgpack_object *k,
				 const msgpack_object *v, schema_result *r, warren_error *err)
{
	if (key_is(k, "name")) {
		r->extended = true;
		return copy_str(what, "name", v, true, false, &r->name, err);
	}
	if (key_is(k, "args")) {
		r->extended = true;
		return copy_packed_kind(what, "args", v, MSGPACK_OBJECT_ARRAY, "a list or nil",
					&r->args_mp, &r->args_len, err);
	}
	if (key_is(k, "kwargs")) {
		r->extended = true;
		return copy_packed_kind(what, "kwargs", v, MSGPACK_OBJECT_MAP, "a map or nil",
					&r->kwargs_mp, &r->kwargs_len, err);
	}
	if (key_is(k, "worker")) {
		r->extended = true;
		return copy_str(what, "worker", v, true, false, &r->worker, err);
	}
	if (key_is(k, "retries")) {
		r->extended = true;
		return decode_retries(what, v, &r->retries, err);
	}
	if (key_is(k, "queue")) {
		r->extended = true;
		return copy_str(what, "queue", v, true, false, &r->queue, err);
	}
	return 0;
}

/* One key of a result map. Keys we do not know are ignored, as Celery's
 * clients ignore them, so newer senders can add fields. */
static int decode_field(const char *what, const msgpack_object *k, const msgpack_object *v,
			schema_result *r, bool *seen_status, warren_error *err)
{
	if (key_is(k, "task_id"))
		return copy_str(what, "task_id", v, true, false, &r->task_id, err);
	if (key_is(k, "status")) {
		*seen_status = true;
		return decode_status(what, v, &r->state, err);
	}
	if (key_is(k, "result"))
		return copy_packed(what, v, &r->result_mp, &r->result_len, err);
	if (key_is(k, "traceback"))
		return copy_str(what, "traceback", v, true, true, &r->traceback, err);
	if (key_is(k, "children"))
		return copy_packed_kind(what, "children", v, MSGPACK_OBJECT_ARRAY,
					"a list or nil", &r->children_mp, &r->children_len, err);
	if (key_is(k, "date_done"))
		return copy_str(what, "date_done", v, true, false, &r->date_done, err);
	if (key_is(k, "group_id"))
		return copy_str(what, "group_id", v, true, false, &r->group_id, err);
	if (key_is(k, "parent_id"))
		return copy_str(what, "parent_id", v, true, false, &r->parent_id, err);

	return decode_extended_field(what, k, v, r, err);
}

static int decode_result(const msgpack_object *obj, bool need_task_id, schema_result *out,
			 warren_error *err)
{
	static const char what[] = "result";
	schema_result_release(out);
	if (obj->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "%s: is %s, expected a map", what,
					kind_name(obj));
	bool seen_status = false;
	int rc = 0;
	for (uint32_t i = 0; i < obj->via.map.size && rc == 0; i++) {
		const msgpack_object_kv *kv = &obj->via.map.ptr[i];
		rc = decode_field(what, &kv->key, &kv->val, out, &seen_status, err);
	}
	if (rc == 0 && !seen_status)
		rc = warren_error_set(err, WARREN_EDECODE, "%s: \"status\" is missing", what);
	if (rc == 0 && need_task_id && !out->task_id)
		rc = warren_error_set(err, WARREN_EDECODE, "%s: \"task_id\" is missing", what);
	if (rc != 0)
		schema_result_release(out);
	return rc;
}

int schema_result_decode_rpc_obj(const msgpack_object *obj, schema_result *out,
				 warren_error *err)
{
	return decode_result(obj, true, out, err);
}

int schema_result_decode_redis_obj(const msgpack_object *obj, schema_result *out,
				   warren_error *err)
{
	return decode_result(obj, false, out, err);
}

typedef int (*decode_obj_fn)(const msgpack_object *, schema_result *, warren_error *);

static int decode_bytes(const void *data, size_t len, const schema_limits *lim,
			decode_obj_fn decode, schema_result *out, warren_error *err)
{
	schema_limits defaults;
	if (!lim) {
		schema_limits_default(&defaults);
		lim = &defaults;
	}
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE))
		return warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
	msgpack_object obj;
	int rc = schema_unpack(data, len, lim, "result", &zone, &obj, err);
	if (rc == 0)
		rc = decode(&obj, out, err);
	else
		schema_result_release(out);
	msgpack_zone_destroy(&zone);
	return rc;
}

int schema_result_decode_rpc(const void *data, size_t len, const schema_limits *lim,
			     schema_result *out, warren_error *err)
{
	return decode_bytes(data, len, lim, schema_result_decode_rpc_obj, out, err);
}

int schema_result_decode_redis(const void *data, size_t len, const schema_limits *lim,
			       schema_result *out, warren_error *err)
{
	return decode_bytes(data, len, lim, schema_result_decode_redis_obj, out, err);
}

/* ---- reading exceptions back ---- */

/* A growing string; `failed` latches an allocation failure so the renderer
 * can append freely and check once. */
typedef struct strbuf {
	char *data;
	size_t len, cap;
	bool failed;
} strbuf;

static void sb_append(strbuf *sb, const char *s, size_t n)
{
	if (sb->failed)
		return;
	if (sb->len + n + 1 > sb->cap) {
		size_t cap = sb->cap ? sb->cap : 64;
		while (cap < sb->len + n + 1)
			cap *= 2;
		char *grown = realloc(sb->data, cap);
		if (!grown) {
			sb->failed = true;
			return;
		}
		sb->data = grown;
		sb->cap = cap;
	}
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *s)
{
	sb_append(sb, s, strlen(s));
}

/* Python's repr() of a float: the shortest form that reads back the same,
 * with ".0" when it would look like an int. */
static void render_float(strbuf *sb, double d)
{
	char buf[40];
	if (isnan(d)) {
		sb_puts(sb, "nan");
		return;
	}
	if (isinf(d)) {
		sb_puts(sb, d > 0 ? "inf" : "-inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	sb_puts(sb, buf);
	if (!strpbrk(buf, ".e"))
		sb_puts(sb, ".0");
}

/* Python's repr() of a str or bytes body: single quotes unless the text
 * holds a single quote and no double quote; control bytes escaped. */
static void render_quoted(strbuf *sb, const char *p, size_t n, bool is_bytes)
{
	char quote = (memchr(p, '\'', n) && !memchr(p, '"', n)) ? '"' : '\'';
	if (is_bytes)
		sb_puts(sb, "b");
	sb_append(sb, &quote, 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char esc[8];
		if (c == '\\' || c == (unsigned char)quote) {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_append(sb, esc, 2);
		} else if (c == '\n') {
			sb_puts(sb, "\\n");
		} else if (c == '\r') {
			sb_puts(sb, "\\r");
		} else if (c == '\t') {
			sb_puts(sb, "\\t");
		} else if (c < 0x20 || c == 0x7f || (is_bytes && c >= 0x80)) {
			snprintf(esc, sizeof esc, "\\x%02x", c);
			sb_puts(sb, esc);
		} else {
			sb_append(sb, (const char *)&c, 1);
		}
	}
	sb_append(sb, &quote, 1);
}

/* Python's repr() of a decoded msgpack value (lists for arrays, dicts for
 * maps, as kombu's msgpack decoding gives them). */
static void render_repr(strbuf *sb, const msgpack_object *o)
{
	char buf[32];
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		sb_puts(sb, "None");
		return;
	case MSGPACK_OBJECT_BOOLEAN:
		sb_puts(sb, o->via.boolean ? "True" : "False");
		return;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->via.u64);
		sb_puts(sb, buf);
		return;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof buf, "%lld", (long long)o->via.i64);
		sb_puts(sb, buf);
		return;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		render_float(sb, o->via.f64);
		return;
	case MSGPACK_OBJECT_STR:
		render_quoted(sb, o->via.str.ptr, o->via.str.size, false);
		return;
	case MSGPACK_OBJECT_BIN:
		render_quoted(sb, o->via.bin.ptr, o->via.bin.size, true);
		return;
	case MSGPACK_OBJECT_ARRAY:
		sb_puts(sb, "[");
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				sb_puts(sb, ", ");
			render_repr(sb, &o->via.array.ptr[i]);
		}
		sb_puts(sb, "]");
		return;
	case MSGPACK_OBJECT_MAP:
		sb_puts(sb, "{");
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				sb_puts(sb, ", ");
			render_repr(sb, &o->via.map.ptr[i].key);
			sb_puts(sb, ": ");
			render_repr(sb, &o->via.map.ptr[i].val);
		}
		sb_puts(sb, "}");
		return;
	case MSGPACK_OBJECT_EXT:
		sb_puts(sb, "<ext>");
		return;
	}
}

/* Python's str(): a str as it is, anything else as its repr. */
static void render_str(strbuf *sb, const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_STR)
		sb_append(sb, o->via.str.ptr, o->via.str.size);
	else
		render_repr(sb, o);
}

/* str(exc) for exception_to_python's `cls(*exc_message)` (a list) or
 * `cls(exc_message)` (anything else): BaseException.__str__ gives "" for no
 * args, str(arg) for one, and the repr of the args tuple for more. */
static void render_exc_message(strbuf *sb, const msgpack_object *msg)
{
	if (msg->type != MSGPACK_OBJECT_ARRAY) {
		render_str(sb, msg);
		return;
	}
	uint32_t n = msg->via.array.size;
	if (n == 1) {
		render_str(sb, &msg->via.array.ptr[0]);
		return;
	}
	if (n == 0)
		return;
	sb_puts(sb, "(");
	for (uint32_t i = 0; i < n; i++) {
		if (i)
			sb_puts(sb, ", ");
		render_repr(sb, &msg->via.array.ptr[i]);
	}
	sb_puts(sb, ")");
}

void schema_exc_release(schema_exc *exc)
{
	free(exc->type);
	free(exc->module);
	free(exc->message);
	free(exc->args_mp);
	memset(exc, 0, sizeof *exc);
}

static int read_exc_map(const msgpack_object *map, schema_exc *out, warren_error *err)
{
	static const char what[] = "exception";
	const msgpack_object *message = NULL;
	int rc = 0;
	if (map->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "%s: is %s, expected a map", what,
					kind_name(map));
	for (uint32_t i = 0; i < map->via.map.size && rc == 0; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		const msgpack_object *v = &map->via.map.ptr[i].val;
		if (key_is(k, "exc_type"))
			rc = copy_str(what, "exc_type", v, false, false, &out->type, err);
		else if (key_is(k, "exc_module"))
			rc = copy_str(what, "exc_module", v, true, false, &out->module, err);
		else if (key_is(k, "exc_message"))
			message = v;
	}
	if (rc)
		return rc;
	if (!out->type)
		return warren_error_set(err, WARREN_EDECODE, "%s: \"exc_type\" is missing", what);

	strbuf sb = {0};
	sb_puts(&sb, ""); /* message is never NULL, even for no args */
	if (message) {
		render_exc_message(&sb, message);
		if (!sb.failed)
			rc = copy_packed(what, message, &out->args_mp, &out->args_len, err);
	}
	if (sb.failed) {
		free(sb.data);
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	}
	out->message = sb.data;
	return rc;
}

int schema_exc_read(const void *result_mp, size_t result_len, schema_exc *out,
		    warren_error *err)
{
	memset(out, 0, sizeof *out);
	if (!result_mp)
		return warren_error_set(err, WARREN_EDECODE, "exception: is nil, expected a map");
	/* result_mp is ours (a setter's output, or re-packed by a decoder after
	 * schema_unpack checked it), so the plain unpacker is safe here. */
	msgpack_unpacked unpacked;
	msgpack_unpacked_init(&unpacked);
	size_t off = 0;
	int rc;
	if (msgpack_unpack_next(&unpacked, result_mp, result_len, &off) !=
	    MSGPACK_UNPACK_SUCCESS)
		rc = warren_error_set(err, WARREN_EDECODE, "exception: not one msgpack value");
	else
		rc = read_exc_map(&unpacked.data, out, err);
	msgpack_unpacked_destroy(&unpacked);
	if (rc)
		schema_exc_release(out);
	return rc;
}
