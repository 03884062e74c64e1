/* schemas/task.c - Celery protocol v2 task messages: decode, encode, build.
 *
 * The layout follows celery/app/amqp.py as_task_v2 of Celery 5.2.6, see
 * /work/shared/CELERY-WIRE.md §1. Headers cross the module boundary as one
 * msgpack map; broker-adapter/ turns it into an AMQP table, so on encode we
 * use only msgpack types that map onto AMQP S, I/l, t, V, A, F and d
 * (CELERY-WIRE §0.7): strings, non-negative ints, bools, nil, arrays, doubles.
 *
 * Wire format note: a header Celery adds goes into header_specs[] (decode)
 * and pack_headers() (encode, same order as as_task_v2); regenerate the
 * fixtures with tests/interop/gen_celery_fixtures.py. A new embed key goes
 * into decode_embed() and pack_body().
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "schemas.h"

/* ---- decode ---- */

typedef enum header_kind {
	HEADER_STR,      /* str or nil */
	HEADER_REQ_STR,  /* non-empty str, required */
	HEADER_UINT,     /* non-negative int, nil = 0 */
	HEADER_OPT_UINT, /* non-negative int or nil */
	HEADER_BOOL,     /* bool, nil = false */
	HEADER_TIMELIMIT,
} header_kind;

typedef struct header_spec {
	const char *name;
	size_t name_len;
	header_kind kind;
	size_t offset;     /* of the field in schema_task_msg */
	size_t has_offset; /* HEADER_OPT_UINT: of its has_ flag */
} header_spec;

#define FIELD(f) offsetof(schema_task_msg, f)
#define NAME(s) s, sizeof s - 1

static const header_spec header_specs[] = {
	{ NAME("lang"), HEADER_STR, FIELD(lang), 0 },
	{ NAME("task"), HEADER_REQ_STR, FIELD(task), 0 },
	{ NAME("id"), HEADER_REQ_STR, FIELD(id), 0 },
	{ NAME("shadow"), HEADER_STR, FIELD(shadow), 0 },
	{ NAME("eta"), HEADER_STR, FIELD(eta), 0 },
	{ NAME("expires"), HEADER_STR, FIELD(expires), 0 },
	{ NAME("group"), HEADER_STR, FIELD(group), 0 },
	{ NAME("group_index"), HEADER_OPT_UINT, FIELD(group_index), FIELD(has_group_index) },
	{ NAME("retries"), HEADER_UINT, FIELD(retries), 0 },
	{ NAME("timelimit"), HEADER_TIMELIMIT, 0, 0 },
	{ NAME("root_id"), HEADER_STR, FIELD(root_id), 0 },
	{ NAME("parent_id"), HEADER_STR, FIELD(parent_id), 0 },
	{ NAME("argsrepr"), HEADER_STR, FIELD(argsrepr), 0 },
	{ NAME("kwargsrepr"), HEADER_STR, FIELD(kwargsrepr), 0 },
	{ NAME("origin"), HEADER_STR, FIELD(origin), 0 },
	{ NAME("ignore_result"), HEADER_BOOL, FIELD(ignore_result), 0 },
};

/* The header_specs index of a key, or -1: picked by length (and a letter),
 * then one memcmp; this runs for every header of every task. The indices
 * follow header_specs' order; the fixture tests decode every header. */
static int header_index(const char *k, size_t n)
{
	int i;
	switch (n) {
	case 2: i = 2; break;                                       /* id */
	case 3: i = 4; break;                                       /* eta */
	case 4: i = k[0] == 'l' ? 0 : 1; break;                     /* lang, task */
	case 5: i = 6; break;                                       /* group */
	case 6: i = k[0] == 's' ? 3 : 14; break;                    /* shadow, origin */
	case 7: i = k[0] == 'e' ? 5 : k[1] == 'e' ? 8 : 10; break;  /* expires, retries, root_id */
	case 8: i = 12; break;                                      /* argsrepr */
	case 9: i = k[0] == 't' ? 9 : 11; break;                    /* timelimit, parent_id */
	case 10: i = 13; break;                                     /* kwargsrepr */
	case 11: i = 7; break;                                      /* group_index */
	case 13: i = 15; break;                                     /* ignore_result */
	default: return -1;
	}
	return memcmp(header_specs[i].name, k, n) == 0 ? i : -1;
}

static int fail_header_type(warren_error *err, const char *name, const char *want,
			    const msgpack_object *v)
{
	return warren_error_set(err, WARREN_EDECODE, "header '%s' is %s, not %s",
				name, schema_obj_type_name(v), want);
}

/* A header str as a C string, refusing embedded NULs (a task name "add\0x"
 * must not silently become "add"). No copy: schema_unpack put the bytes in
 * msg->zone already, NUL-terminated. */
static int take_str(const msgpack_object *v, const char *name, const char **out,
		    warren_error *err)
{
	if (memchr(v->via.str.ptr, '\0', v->via.str.size))
		return warren_error_set(err, WARREN_EDECODE, "header '%s' holds a NUL byte", name);
	*out = v->via.str.ptr;
	return 0;
}

/* One timelimit element: nil, or a non-negative int or float. */
static int read_limit(const msgpack_object *v, bool *has, double *out, warren_error *err)
{
	*has = true;
	switch (v->type) {
	case MSGPACK_OBJECT_NIL:
		*has = false;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		*out = (double)v->via.u64;
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (isfinite(v->via.f64) && v->via.f64 >= 0) {
			*out = v->via.f64;
			return 0;
		}
		break;
	default:
		break;
	}
	return fail_header_type(err, "timelimit", "[hard, soft] of nil or non-negative numbers", v);
}

static int decode_timelimit(schema_task_msg *msg, const msgpack_object *v, warren_error *err)
{
	if (v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2)
		return fail_header_type(err, "timelimit", "an array [hard, soft]", v);
	int rc = read_limit(&v->via.array.ptr[0], &msg->has_time_limit, &msg->time_limit, err);
	if (rc)
		return rc;
	return read_limit(&v->via.array.ptr[1], &msg->has_soft_time_limit, &msg->soft_time_limit, err);
}

static int decode_header(schema_task_msg *msg, const header_spec *spec,
			 const msgpack_object *v, warren_error *err)
{
	char *field = (char *)msg + spec->offset;
	bool absent = !v || v->type == MSGPACK_OBJECT_NIL;
	switch (spec->kind) {
	case HEADER_REQ_STR:
		if (absent)
			return warren_error_set(err, WARREN_EDECODE, "header '%s' is missing", spec->name);
		if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 0)
			return warren_error_set(err, WARREN_EDECODE, "header '%s' is empty", spec->name);
		/* fall through */
	case HEADER_STR:
		if (absent)
			return 0;
		if (v->type != MSGPACK_OBJECT_STR)
			return fail_header_type(err, spec->name, "str", v);
		return take_str(v, spec->name, (const char **)field, err);
	case HEADER_UINT:
	case HEADER_OPT_UINT:
		if (absent)
			return 0;
		if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > INT64_MAX)
			return fail_header_type(err, spec->name, "a non-negative int", v);
		*(int64_t *)field = (int64_t)v->via.u64;
		if (spec->kind == HEADER_OPT_UINT)
			*(bool *)((char *)msg + spec->has_offset) = true;
		return 0;
	case HEADER_BOOL:
		if (absent)
			return 0;
		if (v->type != MSGPACK_OBJECT_BOOLEAN)
			return fail_header_type(err, spec->name, "bool", v);
		*(bool *)field = v->via.boolean;
		return 0;
	case HEADER_TIMELIMIT:
		return absent ? 0 : decode_timelimit(msg, v, err);
	}
	return 0;
}

static int decode_headers(schema_task_msg *msg, const void *headers, size_t len,
			  const schema_limits *lim, warren_error *err)
{
	msgpack_object map;
	int rc = schema_unpack(headers, len, lim, "headers", msg->zone, &map, err);
	if (rc)
		return rc;
	if (map.type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "headers: %s, not a map",
					schema_obj_type_name(&map));
	/* One pass over the map (the first of duplicate keys wins, as with
	 * schema_map_get), then each header in spec order, so errors come in the
	 * same order whatever the sender's key order. */
	enum { N_SPECS = sizeof header_specs / sizeof header_specs[0] };
	const msgpack_object *found[N_SPECS] = {0};
	for (uint32_t k = 0; k < map.via.map.size; k++) {
		const msgpack_object *key = &map.via.map.ptr[k].key;
		int i = key->type == MSGPACK_OBJECT_STR
				? header_index(key->via.str.ptr, key->via.str.size) : -1;
		if (i >= 0 && !found[i])
			found[i] = &map.via.map.ptr[k].val;
	}
	for (size_t i = 0; i < N_SPECS; i++) {
		rc = decode_header(msg, &header_specs[i], found[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Copies a property string; NULL stays NULL. */
static int copy_prop(schema_task_msg *msg, const char *value, const char **out,
		     warren_error *err)
{
	*out = NULL;
	if (!value)
		return 0;
	*out = schema_zone_strndup(msg->zone, value, strlen(value));
	return *out ? 0 : warren_error_set(err, WARREN_ENOMEM, "properties: out of memory");
}

static int decode_props(schema_task_msg *msg, const schema_task_props *in, warren_error *err)
{
	/* Only msgpack: never hand pickle or anything else to a decoder. */
	if (!in->content_type || strcmp(in->content_type, SCHEMA_CONTENT_TYPE) != 0)
		return warren_error_set(err, WARREN_EDECODE, "content type '%s' is not '%s'",
					in->content_type ? in->content_type : "", SCHEMA_CONTENT_TYPE);
	schema_task_props *p = &msg->props;
	*p = *in;
	int rc = copy_prop(msg, in->correlation_id, &p->correlation_id, err);
	if (!rc)
		rc = copy_prop(msg, in->content_type, &p->content_type, err);
	if (!rc)
		rc = copy_prop(msg, in->content_encoding, &p->content_encoding, err);
	if (!rc)
		rc = copy_prop(msg, in->reply_to, &p->reply_to, err);
	if (!rc)
		rc = copy_prop(msg, in->expiration, &p->expiration, err);
	return rc;
}

/* embed[key]: nil (n = 0) or an array of signatures. */
static int decode_embed_list(schema_task_msg *msg, const msgpack_object *embed,
			     const char *key, schema_signature **out, size_t *n_out,
			     warren_error *err)
{
	*out = NULL;
	*n_out = 0;
	const msgpack_object *list = schema_map_get(embed, key);
	if (!list || list->type == MSGPACK_OBJECT_NIL)
		return 0;
	char path[64];
	snprintf(path, sizeof path, "body[2][\"%s\"]", key);
	if (list->type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE, "%s: is %s, not an array of signatures",
					path, schema_obj_type_name(list));
	size_t n = list->via.array.size;
	if (n == 0)
		return 0;
	schema_signature *sigs = msgpack_zone_malloc(msg->zone, n * sizeof *sigs);
	if (!sigs)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++) {
		char sub[96];
		snprintf(sub, sizeof sub, "body[2][\"%s\"][%zu]", key, i);
		int rc = schema_signature_decode(&list->via.array.ptr[i], msg->zone, sub, &sigs[i], err);
		if (rc)
			return rc;
	}
	*out = sigs;
	*n_out = n;
	return 0;
}

/* The embed may be nil or {} (CELERY-WIRE §1.3); unknown keys are ignored. */
static int decode_embed(schema_task_msg *msg, const msgpack_object *embed, warren_error *err)
{
	if (embed->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (embed->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "body[2]: embed is %s, not a map",
					schema_obj_type_name(embed));
	int rc = decode_embed_list(msg, embed, "callbacks", &msg->callbacks, &msg->n_callbacks, err);
	if (!rc)
		rc = decode_embed_list(msg, embed, "errbacks", &msg->errbacks, &msg->n_errbacks, err);
	if (!rc)
		rc = decode_embed_list(msg, embed, "chain", &msg->chain, &msg->n_chain, err);
	if (rc)
		return rc;
	const msgpack_object *chord = schema_map_get(embed, "chord");
	if (!chord || chord->type == MSGPACK_OBJECT_NIL)
		return 0;
	msg->chord = msgpack_zone_malloc(msg->zone, sizeof *msg->chord);
	if (!msg->chord)
		return warren_error_set(err, WARREN_ENOMEM, "body: out of memory");
	return schema_signature_decode(chord, msg->zone, "body[2][\"chord\"]", msg->chord, err);
}

static int decode_body(schema_task_msg *msg, const void *body, size_t len,
		       const schema_limits *lim, warren_error *err)
{
	msgpack_object root;
	schema_span spans[2] = {{0, 0}, {0, 0}};
	int rc = schema_unpack_spans(body, len, lim, "body", msg->zone, &root, spans, 2, err);
	if (rc)
		return rc;
	/* A Python worker unpacks `args, kwargs, embed = body`; anything but
	 * three elements is refused here rather than guessed at. */
	if (root.type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE, "body: %s, not [args, kwargs, embed]",
					schema_obj_type_name(&root));
	if (root.via.array.size != 3)
		return warren_error_set(err, WARREN_EDECODE,
					"body: array of %u, not [args, kwargs, embed]",
					(unsigned)root.via.array.size);
	const msgpack_object *parts = root.via.array.ptr;
	if (parts[0].type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE, "body[0]: args is %s, not an array",
					schema_obj_type_name(&parts[0]));
	if (parts[1].type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "body[1]: kwargs is %s, not a map",
					schema_obj_type_name(&parts[1]));
	msg->args = parts[0];
	msg->kwargs = parts[1];
	msg->args_span = spans[0];
	msg->kwargs_span = spans[1];
	return decode_embed(msg, &parts[2], err);
}

static schema_task_msg *msg_alloc(void)
{
	schema_task_msg *msg = calloc(1, sizeof *msg);
	if (!msg)
		return NULL;
	if (!msgpack_zone_init(&msg->zone_store, MSGPACK_ZONE_CHUNK_SIZE)) {
		free(msg);
		return NULL;
	}
	msg->zone = &msg->zone_store;
	return msg;
}

int schema_task_decode(const schema_task_props *props, const void *headers,
		       size_t headers_len, const void *body, size_t body_len,
		       const schema_limits *lim, schema_task_msg **out,
		       warren_error *err)
{
	schema_task_msg *msg = msg_alloc();
	if (!msg)
		return warren_error_set(err, WARREN_ENOMEM, "task message: out of memory");
	int rc = decode_props(msg, props, err);
	if (!rc)
		rc = decode_headers(msg, headers, headers_len, lim, err);
	if (!rc)
		rc = decode_body(msg, body, body_len, lim, err);
	if (rc) {
		schema_task_msg_free(msg);
		return rc;
	}
	*out = msg;
	return 0;
}

void schema_task_msg_free(schema_task_msg *msg)
{
	if (!msg)
		return;
	msgpack_zone_destroy(&msg->zone_store);
	free(msg);
}

/* ---- encode ---- */

#define PACK_OR_NOMEM(expr) \
	do { \
		if ((expr) != 0) \
			return warren_error_set(err, WARREN_ENOMEM, "task message: out of memory"); \
	} while (0)

/* A short string (every header key and most values) goes out as one write
 * of its fixstr/str8 header and bytes: the same bytes msgpack_pack_str and
 * msgpack_pack_str_body write, in half the buffer calls. */
static int pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	if (n > 255)
		return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
	char b[2 + 255];
	size_t h = 0;
	if (n < 32) {
		b[h++] = (char)(0xa0 | n);
	} else {
		b[h++] = (char)0xd9;
		b[h++] = (char)n;
	}
	memcpy(b + h, s, n);
	return pk->callback(pk->data, b, h + n);
}

static int pack_opt_str(msgpack_packer *pk, const char *key, const char *value)
{
	return pack_cstr(pk, key) || (value ? pack_cstr(pk, value) : msgpack_pack_nil(pk));
}

/* A time limit: an int when whole (AMQP I/l), else a double (d). */
static int pack_limit(msgpack_packer *pk, bool has, double v, const char *which,
		      warren_error *err)
{
	if (!has)
		PACK_OR_NOMEM(msgpack_pack_nil(pk));
	else if (!isfinite(v) || v < 0)
		return warren_error_set(err, WARREN_EINVAL,
					"timelimit %s %g is not a finite non-negative number", which, v);
	else if (v == floor(v) && v < 9.0e18)
		PACK_OR_NOMEM(msgpack_pack_uint64(pk, (uint64_t)v));
	else
		PACK_OR_NOMEM(msgpack_pack_double(pk, v));
	return 0;
}

/* Packs a repr header from a precomputed value or computed from obj now. */
static int pack_repr(msgpack_packer *pk, const char *key, const char *value,
		     const msgpack_object *obj, bool as_tuple)
{
	if (value)
		return pack_opt_str(pk, key, value);
	char buf[SCHEMA_REPR_MAX + 4];
	schema_repr(obj, as_tuple, buf, sizeof buf);
	return pack_opt_str(pk, key, buf);
}

static int pack_headers(const schema_task_msg *msg, msgpack_packer *pk, warren_error *err)
{
	PACK_OR_NOMEM(msgpack_pack_map(pk, 16));
	PACK_OR_NOMEM(pack_opt_str(pk, "lang", msg->lang) || pack_opt_str(pk, "task", msg->task) ||
		      pack_opt_str(pk, "id", msg->id) || pack_opt_str(pk, "shadow", msg->shadow) ||
		      pack_opt_str(pk, "eta", msg->eta) || pack_opt_str(pk, "expires", msg->expires) ||
		      pack_opt_str(pk, "group", msg->group) || pack_cstr(pk, "group_index"));
	if (msg->has_group_index)
		PACK_OR_NOMEM(msgpack_pack_uint64(pk, (uint64_t)msg->group_index));
	else
		PACK_OR_NOMEM(msgpack_pack_nil(pk));
	PACK_OR_NOMEM(pack_cstr(pk, "retries") || msgpack_pack_uint64(pk, (uint64_t)msg->retries));
	/* [hard, soft]: the order the code uses, not the one protocol.rst gives. */
	PACK_OR_NOMEM(pack_cstr(pk, "timelimit") || msgpack_pack_array(pk, 2));
	int rc = pack_limit(pk, msg->has_time_limit, msg->time_limit, "hard", err);
	if (!rc)
		rc = pack_limit(pk, msg->has_soft_time_limit, msg->soft_time_limit, "soft", err);
	if (rc)
		return rc;
	PACK_OR_NOMEM(pack_opt_str(pk, "root_id", msg->root_id ? msg->root_id : msg->id) ||
		      pack_opt_str(pk, "parent_id", msg->parent_id) ||
		      pack_repr(pk, "argsrepr", msg->argsrepr, &msg->args, true) ||
		      pack_repr(pk, "kwargsrepr", msg->kwargsrepr, &msg->kwargs, false) ||
		      pack_opt_str(pk, "origin", msg->origin) || pack_cstr(pk, "ignore_result") ||
		      (msg->ignore_result ? msgpack_pack_true(pk) : msgpack_pack_false(pk)));
	return 0;
}

static int pack_sig_list(msgpack_packer *pk, const char *key, const schema_signature *sigs,
			 size_t n, warren_error *err)
{
	PACK_OR_NOMEM(pack_cstr(pk, key));
	if (n == 0) {
		PACK_OR_NOMEM(msgpack_pack_nil(pk));
		return 0;
	}
	PACK_OR_NOMEM(msgpack_pack_array(pk, n));
	for (size_t i = 0; i < n; i++) {
		int rc = schema_signature_pack(pk, &sigs[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Always [args, kwargs, {callbacks, errbacks, chain, chord}]: a 2-element
 * body kills a Python 5.2 worker (CELERY-WIRE §0.4). */
static int pack_body(const schema_task_msg *msg, msgpack_packer *pk, warren_error *err)
{
	PACK_OR_NOMEM(msgpack_pack_array(pk, 3));
	if (msg->args.type == MSGPACK_OBJECT_NIL)
		PACK_OR_NOMEM(msgpack_pack_array(pk, 0));
	else
		PACK_OR_NOMEM(msgpack_pack_object(pk, msg->args));
	if (msg->kwargs.type == MSGPACK_OBJECT_NIL)
		PACK_OR_NOMEM(msgpack_pack_map(pk, 0));
	else
		PACK_OR_NOMEM(msgpack_pack_object(pk, msg->kwargs));
	PACK_OR_NOMEM(msgpack_pack_map(pk, 4));
	int rc = pack_sig_list(pk, "callbacks", msg->callbacks, msg->n_callbacks, err);
	if (!rc)
		rc = pack_sig_list(pk, "errbacks", msg->errbacks, msg->n_errbacks, err);
	if (!rc)
		rc = pack_sig_list(pk, "chain", msg->chain, msg->n_chain, err);
	if (rc)
		return rc;
	PACK_OR_NOMEM(pack_cstr(pk, "chord"));
	if (!msg->chord)
		PACK_OR_NOMEM(msgpack_pack_nil(pk));
	else
		return schema_signature_pack(pk, msg->chord, err);
	return 0;
}

static int check_encodable(const schema_task_msg *msg, warren_error *err)
{
	if (!msg->task || !msg->task[0])
		return warren_error_set(err, WARREN_EINVAL, "task message: no task name");
	if (!msg->id || !msg->id[0])
		return warren_error_set(err, WARREN_EINVAL, "task '%s': no task id", msg->task);
	if (msg->args.type != MSGPACK_OBJECT_NIL && msg->args.type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': args is %s, not an array",
					msg->task, schema_obj_type_name(&msg->args));
	if (msg->kwargs.type != MSGPACK_OBJECT_NIL && msg->kwargs.type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': kwargs is %s, not a map",
					msg->task, schema_obj_type_name(&msg->kwargs));
	if (msg->retries < 0 || (msg->has_group_index && msg->group_index < 0))
		return warren_error_set(err, WARREN_EINVAL, "task '%s': negative retries or group_index",
					msg->task);
	return 0;
}

static void fill_props(const schema_task_msg *msg, schema_task_props *out)
{
	const schema_task_props *in = &msg->props;
	out->correlation_id = in->correlation_id ? in->correlation_id : msg->id;
	out->content_type = SCHEMA_CONTENT_TYPE;
	out->content_encoding = SCHEMA_CONTENT_ENCODING;
	out->reply_to = in->reply_to ? in->reply_to : "";
	out->expiration = in->expiration;
	out->has_priority = true;
	out->priority = in->has_priority ? in->priority : 0;
	out->has_delivery_mode = true;
	out->delivery_mode = in->has_delivery_mode ? in->delivery_mode : 2;
}

int schema_task_encode(const schema_task_msg *msg, msgpack_sbuffer *headers,
		       msgpack_sbuffer *body, schema_task_props *props_out,
		       warren_error *err)
{
	int rc = check_encodable(msg, err);
	if (rc)
		return rc;
	msgpack_packer pk;
	msgpack_packer_init(&pk, headers, msgpack_sbuffer_write);
	rc = pack_headers(msg, &pk, err);
	if (rc)
		return rc;
	msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
	rc = pack_body(msg, &pk, err);
	if (rc)
		return rc;
	fill_props(msg, props_out);
	return 0;
}

/* ---- building ---- */

/* Random bytes for uuid4, taken from a per-thread pool refilled 4 KiB at a
 * time: one getrandom() per 256 ids instead of one per id (a syscall per
 * message was a visible share of `warren send --from`). The pool is
 * per-thread so no lock is needed, and emptied in a forked child (see
 * random_atfork) so a prefork child never repeats its parent's ids. */
#define RANDOM_POOL 4096
static _Thread_local uint8_t random_pool[RANDOM_POOL];
static _Thread_local size_t random_left;
static pthread_once_t random_once = PTHREAD_ONCE_INIT;

/* After fork() only the forking thread exists in the child: emptying its
 * pool (and its cached origin, which names the pid) is enough. */
static _Thread_local char origin_cache[300];
static void random_atfork_child(void)
{
	random_left = 0;
	origin_cache[0] = '\0';
}

static void random_register(void)
{
	pthread_atfork(NULL, NULL, random_atfork_child);
}

static int random_bytes(uint8_t *out, size_t n, warren_error *err)
{
	pthread_once(&random_once, random_register);
	if (random_left < n) {
		size_t got = 0;
		while (got < RANDOM_POOL) {
			ssize_t r = getrandom(random_pool + got, RANDOM_POOL - got, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return warren_error_set(err, WARREN_EIO, "uuid: getrandom: %s",
							strerror(errno));
			got += (size_t)r;
		}
		random_left = RANDOM_POOL;
	}
	/* Take from the end and wipe what was taken: no byte is used twice. */
	random_left -= n;
	memcpy(out, random_pool + random_left, n);
	memset(random_pool + random_left, 0, n);
	return 0;
}

int schema_uuid4(char buf[37], warren_error *err)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	int rc = random_bytes(b, sizeof b, err);
	if (rc)
		return rc;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	/* 8-4-4-4-12 hex digits, formatted by hand (snprintf's 16 %02x cost
	 * more than the rest of building the message). */
	char *p = buf;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[b[i] >> 4];
		*p++ = hex[b[i] & 0x0f];
	}
	*p = '\0';
	return 0;
}

const char *schema_task_msg_strdup(schema_task_msg *msg, const char *s)
{
	return s ? schema_zone_strndup(msg->zone, s, strlen(s)) : NULL;
}

/* Celery's anon_nodename(): "gen<pid>@<host>". Computed once per thread
 * (two syscalls and a snprintf per message otherwise) and forgotten in a
 * forked child, whose pid differs (random_atfork_child). */
static const char *make_origin(schema_task_msg *msg)
{
	if (!origin_cache[0]) {
		pthread_once(&random_once, random_register);
		char host[256] = "localhost";
		if (gethostname(host, sizeof host) != 0)
			strcpy(host, "localhost");
		host[sizeof host - 1] = '\0';
		snprintf(origin_cache, sizeof origin_cache, "gen%ld@%s", (long)getpid(), host);
	}
	return schema_task_msg_strdup(msg, origin_cache);
}

int schema_task_msg_new(const char *task, schema_task_msg **out, warren_error *err)
{
	char id[37];
	int rc = schema_uuid4(id, err);
	if (rc)
		return rc;
	schema_task_msg *msg = msg_alloc();
	if (!msg)
		return warren_error_set(err, WARREN_ENOMEM, "task '%s': out of memory", task);
	msg->lang = "c";
	msg->task = schema_task_msg_strdup(msg, task);
	msg->id = schema_task_msg_strdup(msg, id);
	msg->root_id = msg->id;
	msg->origin = make_origin(msg);
	msg->argsrepr = "()";
	msg->kwargsrepr = "{}";
	msg->args.type = MSGPACK_OBJECT_ARRAY;
	msg->kwargs.type = MSGPACK_OBJECT_MAP;
	msg->props.content_type = SCHEMA_CONTENT_TYPE;
	msg->props.content_encoding = SCHEMA_CONTENT_ENCODING;
	msg->props.has_priority = true;
	msg->props.has_delivery_mode = true;
	msg->props.delivery_mode = 2;
	if (!msg->task || !msg->id || !msg->origin) {
		schema_task_msg_free(msg);
		return warren_error_set(err, WARREN_ENOMEM, "task '%s': out of memory", task);
	}
	*out = msg;
	return 0;
}

/* Unpacks a caller's packed value of `type` into msg's zone and refreshes
 * its repr header. */
static int set_packed(schema_task_msg *msg, const void *packed, size_t len,
		      msgpack_object_type type, msgpack_object *field,
		      const char **repr, warren_error *err)
{
	const char *what = type == MSGPACK_OBJECT_ARRAY ? "args" : "kwargs";
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object obj;
	int rc = schema_unpack(packed, len, &lim, what, msg->zone, &obj, err);
	if (rc)
		return rc;
	if (obj.type != type)
		return warren_error_set(err, WARREN_EINVAL, "%s: %s, not %s", what,
					schema_obj_type_name(&obj),
					type == MSGPACK_OBJECT_ARRAY ? "an array" : "a map");
	char buf[SCHEMA_REPR_MAX + 4];
	size_t n = schema_repr(&obj, type == MSGPACK_OBJECT_ARRAY, buf, sizeof buf);
	const char *copy = schema_zone_strndup(msg->zone, buf, n);
	if (!copy)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", what);
	*field = obj;
	*repr = copy;
	return 0;
}

int schema_task_msg_set_args(schema_task_msg *msg, const void *packed, size_t len,
			     warren_error *err)
{
	return set_packed(msg, packed, len, MSGPACK_OBJECT_ARRAY, &msg->args, &msg->argsrepr, err);
}

int schema_task_msg_set_kwargs(schema_task_msg *msg, const void *packed, size_t len,
			       warren_error *err)
{
	return set_packed(msg, packed, len, MSGPACK_OBJECT_MAP, &msg->kwargs, &msg->kwargsrepr, err);
}
