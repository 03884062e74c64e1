/* schemas/signature.c - Celery signature dicts: decode and pack.
 *
 * A signature (celery/canvas.py Signature, a dict subclass) travels inside a
 * task body's embed (callbacks, errbacks, chain, chord) and inside other
 * signatures' options (link, link_error). Composites are signatures of the
 * tasks celery.group, celery.chain and celery.chord whose kwargs hold their
 * members; a client expands them (Signature.from_dict), they never run as
 * named tasks.
 *
 * Wire format note: the six keys and the composite kwargs layouts are those
 * of Celery 5.2.6. A new key is ignored on decode and lost on re-encode; add
 * it to schema_signature and to pack/decode here when a peer starts relying
 * on it. Celery's own msgpack packing of a group is corrupt (celery#4710:
 * the map length comes from group.__len__); ours counts the keys it writes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "schemas.h"

#define PATH_MAX_LEN 160

/* Error paths are cut when too long, which is fine for a message; going
 * through vsnprintf says so to the compiler's truncation warning. */
WARREN_PRINTF(3, 4)
static void path_format(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, cap, fmt, ap);
	va_end(ap);
}

static int fail_type(warren_error *err, const char *path, const char *key,
		     const char *want, const msgpack_object *got)
{
	return warren_error_set(err, WARREN_EDECODE,
				"%s: signature '%s' is %s, not %s", path, key,
				schema_obj_type_name(got), want);
}

/* A NUL-free str copied into zone, or NULL (nil); other types are errors. */
static int take_name(const msgpack_object *v, bool nil_ok, msgpack_zone *zone,
		     const char *path, const char *key, const char **out,
		     warren_error *err)
{
	*out = NULL;
	if (!v || v->type == MSGPACK_OBJECT_NIL) {
		if (nil_ok)
			return 0;
		return warren_error_set(err, WARREN_EDECODE,
					"%s: signature has no '%s'", path, key);
	}
	if (v->type != MSGPACK_OBJECT_STR)
		return fail_type(err, path, key, "str", v);
	if (memchr(v->via.str.ptr, '\0', v->via.str.size))
		return warren_error_set(err, WARREN_EDECODE,
					"%s: signature '%s' holds a NUL byte", path, key);
	*out = schema_zone_strndup(zone, v->via.str.ptr, v->via.str.size);
	if (!*out)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", path);
	return 0;
}

/* Copies a container member, or an empty one of `type` when absent/nil. */
static int take_container(const msgpack_object *v, msgpack_object_type type,
			  const char *path, const char *key, msgpack_object *out,
			  warren_error *err)
{
	memset(out, 0, sizeof *out);
	out->type = type;
	if (!v || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != type)
		return fail_type(err, path, key,
				 type == MSGPACK_OBJECT_ARRAY ? "array" : "map", v);
	*out = *v;
	return 0;
}

/* Decodes an array of signatures into a new zone array. */
static int decode_list(const msgpack_object *list, msgpack_zone *zone,
		       const char *path, schema_signature **out, size_t *n_out,
		       warren_error *err)
{
	*out = NULL;
	*n_out = 0;
	if (list->type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE, "%s: is %s, not an array of signatures",
					path, schema_obj_type_name(list));
	size_t n = list->via.array.size;
	if (n == 0)
		return 0;
	schema_signature *sigs = msgpack_zone_malloc(zone, n * sizeof *sigs);
	if (!sigs)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++) {
		char sub[PATH_MAX_LEN];
		path_format(sub, sizeof sub, "%s[%zu]", path, i);
		int rc = schema_signature_decode(&list->via.array.ptr[i], zone, sub, &sigs[i], err);
		if (rc)
			return rc;
	}
	*out = sigs;
	*n_out = n;
	return 0;
}

/* group/chain: kwargs.tasks; chord: kwargs.header (list or group) + body. */
static int decode_members(schema_signature *sig, msgpack_zone *zone,
			  const char *path, warren_error *err)
{
	char sub[PATH_MAX_LEN];
	const char *key = strcmp(sig->subtask_type, "chord") == 0 ? "header" : "tasks";
	const msgpack_object *members = schema_map_get(&sig->kwargs, key);
	path_format(sub, sizeof sub, "%s[\"kwargs\"][\"%s\"]", path, key);
	if (!members)
		return warren_error_set(err, WARREN_EDECODE, "%s: %s signature has no kwargs '%s'",
					path, sig->subtask_type, key);
	if (members->type == MSGPACK_OBJECT_MAP) { /* a chord header given as a group */
		schema_signature group;
		int rc = schema_signature_decode(members, zone, sub, &group, err);
		if (rc)
			return rc;
		sig->tasks = group.tasks;
		sig->n_tasks = group.n_tasks;
	} else {
		int rc = decode_list(members, zone, sub, &sig->tasks, &sig->n_tasks, err);
		if (rc)
			return rc;
	}
	if (strcmp(sig->subtask_type, "chord") != 0)
		return 0;
	const msgpack_object *body = schema_map_get(&sig->kwargs, "body");
	path_format(sub, sizeof sub, "%s[\"kwargs\"][\"body\"]", path);
	if (!body || body->type == MSGPACK_OBJECT_NIL)
		return warren_error_set(err, WARREN_EDECODE, "%s: chord signature has no kwargs 'body'", path);
	sig->body = msgpack_zone_malloc(zone, sizeof *sig->body);
	if (!sig->body)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", path);
	return schema_signature_decode(body, zone, sub, sig->body, err);
}

static bool is_composite(const char *subtask_type)
{
	return subtask_type && (strcmp(subtask_type, "group") == 0 ||
				strcmp(subtask_type, "chain") == 0 ||
				strcmp(subtask_type, "chord") == 0);
}

int schema_signature_decode(const msgpack_object *obj, msgpack_zone *zone,
			    const char *path, schema_signature *out,
			    warren_error *err)
{
	memset(out, 0, sizeof *out);
	if (obj->type != MSGPACK_OBJECT_MAP)
		return warren_error_set(err, WARREN_EDECODE, "%s: signature is %s, not a map",
					path, schema_obj_type_name(obj));
	int rc = take_name(schema_map_get(obj, "task"), false, zone, path, "task", &out->task, err);
	if (!rc)
		rc = take_container(schema_map_get(obj, "args"), MSGPACK_OBJECT_ARRAY, path, "args", &out->args, err);
	if (!rc)
		rc = take_container(schema_map_get(obj, "kwargs"), MSGPACK_OBJECT_MAP, path, "kwargs", &out->kwargs, err);
	if (!rc)
		rc = take_container(schema_map_get(obj, "options"), MSGPACK_OBJECT_MAP, path, "options", &out->options, err);
	if (!rc)
		rc = take_name(schema_map_get(obj, "subtask_type"), true, zone, path, "subtask_type",
			       &out->subtask_type, err);
	if (rc)
		return rc;
	const msgpack_object *immutable = schema_map_get(obj, "immutable");
	if (immutable && immutable->type == MSGPACK_OBJECT_BOOLEAN)
		out->immutable = immutable->via.boolean;
	else if (immutable && immutable->type != MSGPACK_OBJECT_NIL)
		return fail_type(err, path, "immutable", "bool", immutable);
	if (is_composite(out->subtask_type))
		return decode_members(out, zone, path, err);
	return 0;
}

/* ---- packing ---- */

static int pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0)
		return -1;
	return 0;
}

static int pack_list(msgpack_packer *pk, const schema_signature *sigs, size_t n,
		     warren_error *err)
{
	if (msgpack_pack_array(pk, n) != 0)
		return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = schema_signature_pack(pk, &sigs[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

static bool key_is(const msgpack_object *k, const char *name)
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
	       memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

/* A composite's kwargs: members from the structs, then every other key the
 * kwargs object holds (a chord's own "kwargs": {}), as received. */
static int pack_composite_kwargs(msgpack_packer *pk, const schema_signature *sig,
				 warren_error *err)
{
	bool chord = strcmp(sig->subtask_type, "chord") == 0;
	const char *members = chord ? "header" : "tasks";
	if (chord && !sig->body)
		return warren_error_set(err, WARREN_EINVAL,
					"signature '%s': chord without a body", sig->task);
	size_t extra = 0;
	const msgpack_object *kw = &sig->kwargs;
	bool kw_is_map = kw->type == MSGPACK_OBJECT_MAP;
	for (uint32_t i = 0; kw_is_map && i < kw->via.map.size; i++) {
		const msgpack_object *k = &kw->via.map.ptr[i].key;
		if (!key_is(k, members) && !(chord && key_is(k, "body")))
			extra++;
	}
	int bad = msgpack_pack_map(pk, (chord ? 2 : 1) + extra) || pack_str(pk, members);
	int rc = bad ? warren_error_set(err, WARREN_ENOMEM, "signature: out of memory") :
		pack_list(pk, sig->tasks, sig->n_tasks, err);
	if (rc)
		return rc;
	if (chord) {
		if (pack_str(pk, "body"))
			return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
		rc = schema_signature_pack(pk, sig->body, err);
		if (rc)
			return rc;
	}
	for (uint32_t i = 0; kw_is_map && i < kw->via.map.size; i++) {
		const msgpack_object_kv *kv = &kw->via.map.ptr[i];
		if (key_is(&kv->key, members) || (chord && key_is(&kv->key, "body")))
			continue;
		if (msgpack_pack_object(pk, kv->key) || msgpack_pack_object(pk, kv->val))
			return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
	}
	return 0;
}

/* A zeroed (nil) member packs as the empty container; other non-matching
 * types are the caller's bug. */
static int pack_container(msgpack_packer *pk, const msgpack_object *v,
			  msgpack_object_type type, const char *task,
			  const char *key, warren_error *err)
{
	int bad;
	if (v->type == MSGPACK_OBJECT_NIL)
		bad = type == MSGPACK_OBJECT_ARRAY ? msgpack_pack_array(pk, 0) : msgpack_pack_map(pk, 0);
	else if (v->type == type)
		bad = msgpack_pack_object(pk, *v);
	else
		return warren_error_set(err, WARREN_EINVAL, "signature '%s': %s is %s, not %s",
					task, key, schema_obj_type_name(v),
					type == MSGPACK_OBJECT_ARRAY ? "an array" : "a map");
	return bad ? warren_error_set(err, WARREN_ENOMEM, "signature: out of memory") : 0;
}

int schema_signature_pack(msgpack_packer *pk, const schema_signature *sig,
			  warren_error *err)
{
	if (!sig->task)
		return warren_error_set(err, WARREN_EINVAL, "signature: no task name");
	if (msgpack_pack_map(pk, 6) || pack_str(pk, "task") || pack_str(pk, sig->task) ||
	    pack_str(pk, "args"))
		return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
	int rc = pack_container(pk, &sig->args, MSGPACK_OBJECT_ARRAY, sig->task, "args", err);
	if (rc)
		return rc;
	if (pack_str(pk, "kwargs"))
		return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
	if (is_composite(sig->subtask_type))
		rc = pack_composite_kwargs(pk, sig, err);
	else
		rc = pack_container(pk, &sig->kwargs, MSGPACK_OBJECT_MAP, sig->task, "kwargs", err);
	if (rc)
		return rc;
	if (pack_str(pk, "options"))
		return warren_error_set(err, WARREN_ENOMEM, "signature: out of memory");
	rc = pack_container(pk, &sig->options, MSGPACK_OBJECT_MAP, sig->task, "options", err);
	if (rc)
		return rc;
	int bad = pack_str(pk, "subtask_type") ||
		  (sig->subtask_type ? pack_str(pk, sig->subtask_type) : msgpack_pack_nil(pk)) ||
		  pack_str(pk, "immutable") ||
		  (sig->immutable ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
	return bad ? warren_error_set(err, WARREN_ENOMEM, "signature: out of memory") : 0;
}
