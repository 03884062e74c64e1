/* producer/canvas.c - warren_sig and warren_canvas: building Celery
 * signatures and canvases in C, sending them as Celery's client does, and
 * waiting for their whole result.
 *
 * A warren_sig is the packed signature dict, nothing else: every setter and
 * composer unpacks what it needs into a scratch zone, changes the decoded
 * schema_signature and packs it again. That keeps ownership trivial
 * (composing copies) and guarantees a signature is always something
 * schema_signature_pack wrote, i.e. correct msgpack even for the nestings
 * Celery's own packer corrupts (celery#4710).
 *
 * Sending (warren_canvas_send) works on a fresh decoded copy: ids are
 * assigned (schema_canvas_freeze) so the waits know them, then
 * schema_canvas_apply sends every message through producer_send_msg, with
 * a chord's size written to Redis first (backend_chord_set_size). The
 * client's outcome callback is borrowed for the duration to count refused
 * messages, and every confirm is awaited before returning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer.h"

struct warren_sig {
	char *mp; /* one packed signature map */
	size_t len;
};

struct warren_canvas {
	char *id;          /* what warren_canvas_id gives */
	char **ids;        /* result ids */
	size_t n_ids;
	bool is_list;      /* the result is a list of ids[] results */
};

/* ---- packed <-> decoded ---- */

static int zone_new(msgpack_zone **z, warren_error *err)
{
	*z = msgpack_zone_new(4096);
	return *z ? 0 : warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
}

static int sig_open(const warren_sig *s, msgpack_zone *z, schema_signature *out,
		    warren_error *err)
{
	if (!s)
		return warren_error_set(err, WARREN_EINVAL, "canvas: NULL signature");
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object o;
	int rc = schema_unpack(s->mp, s->len, &lim, "signature", z, &o, err);
	return rc ? rc : schema_signature_decode(&o, z, "signature", out, err);
}

/* Packs sig into s (replacing what it held) or a new warren_sig. */
static int sig_store(warren_sig **s, const schema_signature *sig, warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int rc = schema_signature_pack(&pk, sig, err);
	if (rc) {
		msgpack_sbuffer_destroy(&sb);
		return rc;
	}
	if (!*s && !(*s = calloc(1, sizeof **s))) {
		msgpack_sbuffer_destroy(&sb);
		return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	}
	free((*s)->mp);
	(*s)->mp = sb.data; /* sbuffer memory is malloc'd */
	(*s)->len = sb.size;
	return 0;
}

static int unpack_builder(const warren_args *a, bool is_map, const char *what, msgpack_zone *z,
			  msgpack_object *out, warren_error *err)
{
	const void *p;
	size_t n;
	int rc = producer_args_bytes(a, is_map, what, &p, &n, err);
	if (rc)
		return rc;
	schema_limits lim;
	schema_limits_default(&lim);
	return schema_unpack(p, n, &lim, what, z, out, err);
}

/* ---- building ---- */

int warren_sig_new(const char *task, const warren_args *args, const warren_args *kwargs,
		   warren_sig **out, warren_error *err)
{
	if (!out || !task || !*task)
		return warren_error_set(err, WARREN_EINVAL, "signature: a task name is required");
	*out = NULL;
	msgpack_zone *z;
	int rc = zone_new(&z, err);
	if (rc)
		return rc;
	schema_signature sig = {.task = task};
	sig.options.type = MSGPACK_OBJECT_MAP;
	if (!(rc = unpack_builder(args, false, "args", z, &sig.args, err)) &&
	    !(rc = unpack_builder(kwargs, true, "kwargs", z, &sig.kwargs, err)))
		rc = sig_store(out, &sig, err);
	msgpack_zone_free(z);
	return rc;
}

void warren_sig_free(warren_sig *s)
{
	if (!s)
		return;
	free(s->mp);
	free(s);
}

typedef int (*sig_edit)(schema_signature *sig, msgpack_zone *z, const void *arg,
			warren_error *err);

/* Decodes s, lets edit change it, packs it back. */
static int sig_update(warren_sig *s, sig_edit edit, const void *arg, warren_error *err)
{
	msgpack_zone *z;
	int rc = zone_new(&z, err);
	if (rc)
		return rc;
	schema_signature sig;
	if (!(rc = sig_open(s, z, &sig, err)) && !(rc = edit(&sig, z, arg, err)))
		rc = sig_store(&s, &sig, err);
	msgpack_zone_free(z);
	return rc;
}

static int edit_immutable(schema_signature *sig, msgpack_zone *z, const void *arg,
			  warren_error *err)
{
	(void)z;
	(void)err;
	sig->immutable = *(const bool *)arg;
	return 0;
}

int warren_sig_set_immutable(warren_sig *s, bool immutable, warren_error *err)
{
	return sig_update(s, edit_immutable, &immutable, err);
}

typedef struct opt_value {
	const char *key;
	msgpack_object val;   /* when json is NULL */
	const char *json;
} opt_value;

static int edit_option(schema_signature *sig, msgpack_zone *z, const void *arg,
		       warren_error *err)
{
	const opt_value *ov = arg;
	msgpack_object val = ov->val;
	if (ov->json) {
		warren_args *a = warren_args_new();
		int rc = a ? warren_args_json(a, ov->json) : WARREN_ENOMEM;
		const void *p;
		size_t n;
		if (!rc)
			rc = producer_args_bytes(a, false, "option", &p, &n, err);
		schema_limits lim;
		schema_limits_default(&lim);
		msgpack_object list;
		if (!rc && !(rc = schema_unpack(p, n, &lim, "option", z, &list, err)))
			val = list.via.array.ptr[0];
		warren_args_free(a);
		if (rc)
			return warren_error_set(err, rc, "signature option '%s': not JSON: %s",
						ov->key, ov->json);
	} else if (val.type == MSGPACK_OBJECT_STR) {
		char *copy = schema_zone_strndup(z, val.via.str.ptr, val.via.str.size);
		if (!copy)
			return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
		val.via.str.ptr = copy;
	}
	return schema_canvas_opt_set(sig, ov->key, val, z, err);
}

static int set_str_option(warren_sig *s, const char *key, const char *value, warren_error *err)
{
	if (!value)
		return warren_error_set(err, WARREN_EINVAL, "signature option '%s': NULL", key);
	opt_value ov = {.key = key, .val = {.type = MSGPACK_OBJECT_STR}};
	ov.val.via.str.ptr = value;
	ov.val.via.str.size = (uint32_t)strlen(value);
	return sig_update(s, edit_option, &ov, err);
}

int warren_sig_set_queue(warren_sig *s, const char *queue, warren_error *err)
{
	return set_str_option(s, "queue", queue, err);
}

int warren_sig_set_task_id(warren_sig *s, const char *id, warren_error *err)
{
	if (id && (!*id || strlen(id) >= WARREN_TASK_ID_MAX))
		return warren_error_set(err, WARREN_EINVAL, "signature: task id must be 1 to %d bytes",
					WARREN_TASK_ID_MAX - 1);
	return set_str_option(s, "task_id", id, err);
}

int warren_sig_set_countdown(warren_sig *s, double seconds, warren_error *err)
{
	if (!(seconds >= 0))
		return warren_error_set(err, WARREN_EINVAL, "signature: negative countdown");
	opt_value ov = {.key = "countdown", .val = {.type = MSGPACK_OBJECT_FLOAT64}};
	ov.val.via.f64 = seconds;
	return sig_update(s, edit_option, &ov, err);
}

int warren_sig_set_option(warren_sig *s, const char *key, const char *json, warren_error *err)
{
	if (!key || !*key || !json)
		return warren_error_set(err, WARREN_EINVAL, "signature: option needs a key and a value");
	opt_value ov = {.key = key, .json = json};
	return sig_update(s, edit_option, &ov, err);
}

typedef struct link_arg {
	const char *key;
	const warren_sig *cb;
} link_arg;

/* Appends cb to options[key] (a list). */
static int edit_link(schema_signature *sig, msgpack_zone *z, const void *arg, warren_error *err)
{
	const link_arg *la = arg;
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object cb;
	int rc = la->cb ? schema_unpack(la->cb->mp, la->cb->len, &lim, "signature", z, &cb, err)
			: warren_error_set(err, WARREN_EINVAL, "signature: NULL callback");
	if (rc)
		return rc;
	const msgpack_object *old = schema_map_get(&sig->options, la->key);
	uint32_t n = old && old->type == MSGPACK_OBJECT_ARRAY ? old->via.array.size : 0;
	msgpack_object list = {.type = MSGPACK_OBJECT_ARRAY};
	list.via.array.ptr = msgpack_zone_malloc(z, (n + 1) * sizeof cb);
	if (!list.via.array.ptr)
		return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	if (n)
		memcpy(list.via.array.ptr, old->via.array.ptr, n * sizeof cb);
	list.via.array.ptr[n] = cb;
	list.via.array.size = n + 1;
	return schema_canvas_opt_set(sig, la->key, list, z, err);
}

int warren_sig_link(warren_sig *s, const warren_sig *cb, warren_error *err)
{
	link_arg la = {"link", cb};
	return sig_update(s, edit_link, &la, err);
}

int warren_sig_link_error(warren_sig *s, const warren_sig *eb, warren_error *err)
{
	link_arg la = {"link_error", eb};
	return sig_update(s, edit_link, &la, err);
}

/* ---- composites ---- */

static int compose(const char *task, const char *type, const warren_sig *const *members,
		   size_t n, const warren_sig *body, warren_sig **out, warren_error *err)
{
	if (!out || (n && !members))
		return warren_error_set(err, WARREN_EINVAL, "%s: NULL argument", type);
	*out = NULL;
	msgpack_zone *z;
	int rc = zone_new(&z, err);
	if (rc)
		return rc;
	schema_signature sig = {.task = task, .subtask_type = type};
	sig.args.type = MSGPACK_OBJECT_ARRAY;
	sig.kwargs.type = MSGPACK_OBJECT_MAP;
	sig.options.type = MSGPACK_OBJECT_MAP;
	sig.tasks = n ? msgpack_zone_malloc(z, n * sizeof *sig.tasks) : NULL;
	sig.n_tasks = n;
	if (n && !sig.tasks)
		rc = warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	for (size_t i = 0; !rc && i < n; i++)
		rc = sig_open(members[i], z, &sig.tasks[i], err);
	if (!rc && body) {
		if (!(sig.body = msgpack_zone_malloc(z, sizeof *sig.body)))
			rc = warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
		else
			rc = sig_open(body, z, sig.body, err);
	}
	if (!rc)
		rc = sig_store(out, &sig, err);
	msgpack_zone_free(z);
	return rc;
}

int warren_chain(const warren_sig *const *steps, size_t n, warren_sig **out, warren_error *err)
{
	return compose("celery.chain", "chain", steps, n, NULL, out, err);
}

int warren_group(const warren_sig *const *members, size_t n, warren_sig **out,
		 warren_error *err)
{
	return compose("celery.group", "group", members, n, NULL, out, err);
}

int warren_chord(const warren_sig *const *header, size_t n, const warren_sig *body,
		 warren_sig **out, warren_error *err)
{
	if (!body)
		return warren_error_set(err, WARREN_EINVAL, "chord: a body is required");
	return compose("celery.chord", "chord", header, n, body, out, err);
}

/* One signature per item: task(item) or task(*item). */
static int map_as_group(const char *task, const msgpack_object *items, bool star,
			warren_sig **out, warren_error *err)
{
	size_t n = items->via.array.size;
	warren_sig **sigs = calloc(n ? n : 1, sizeof *sigs);
	if (!sigs)
		return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	int rc = 0;
	msgpack_zone *z = NULL;
	if ((rc = zone_new(&z, err)))
		goto out_sigs;
	for (size_t i = 0; !rc && i < n; i++) {
		const msgpack_object *item = &items->via.array.ptr[i];
		if (star && item->type != MSGPACK_OBJECT_ARRAY) {
			rc = warren_error_set(err, WARREN_EINVAL, "starmap: item %zu is not a list", i);
			break;
		}
		schema_signature sig = {.task = task};
		sig.kwargs.type = MSGPACK_OBJECT_MAP;
		sig.options.type = MSGPACK_OBJECT_MAP;
		if (star) {
			sig.args = *item;
		} else {
			sig.args.type = MSGPACK_OBJECT_ARRAY;
			sig.args.via.array.ptr = (msgpack_object *)item;
			sig.args.via.array.size = 1;
		}
		rc = sig_store(&sigs[i], &sig, err);
	}
	if (!rc)
		rc = warren_group((const warren_sig *const *)sigs, n, out, err);
	msgpack_zone_free(z);
out_sigs:
	for (size_t i = 0; i < n; i++)
		warren_sig_free(sigs[i]);
	free(sigs);
	return rc;
}

/* Celery's xmap/xstarmap: task "celery.map" with kwargs {task, it}, immutable. */
static int map_inline(const char *task, const msgpack_object *items, bool star, msgpack_zone *z,
		      warren_sig **out, warren_error *err)
{
	schema_signature inner = {.task = task};
	inner.args.type = MSGPACK_OBJECT_ARRAY;
	inner.kwargs.type = MSGPACK_OBJECT_MAP;
	inner.options.type = MSGPACK_OBJECT_MAP;
	warren_sig *packed = NULL;
	int rc = sig_store(&packed, &inner, err);
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object inner_obj;
	if (!rc)
		rc = schema_unpack(packed->mp, packed->len, &lim, "signature", z, &inner_obj, err);
	msgpack_object_kv *kv = msgpack_zone_malloc(z, 2 * sizeof *kv);
	if (!rc && !kv)
		rc = warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	if (!rc) {
		kv[0].key = schema_canvas_str(z, "task");
		kv[0].val = inner_obj;
		kv[1].key = schema_canvas_str(z, "it");
		kv[1].val = *items;
		schema_signature sig = {.task = star ? "celery.starmap" : "celery.map",
					.immutable = true};
		sig.args.type = MSGPACK_OBJECT_ARRAY;
		sig.options.type = MSGPACK_OBJECT_MAP;
		sig.kwargs.type = MSGPACK_OBJECT_MAP;
		sig.kwargs.via.map.ptr = kv;
		sig.kwargs.via.map.size = 2;
		rc = sig_store(out, &sig, err);
	}
	warren_sig_free(packed);
	return rc;
}

static int map_common(const char *task, const warren_args *items, bool star, warren_sig **out,
		      warren_error *err)
{
	if (!out || !task || !*task || !items)
		return warren_error_set(err, WARREN_EINVAL, "map: a task and items are required");
	*out = NULL;
	msgpack_zone *z;
	int rc = zone_new(&z, err);
	if (rc)
		return rc;
	msgpack_object list;
	if (!(rc = unpack_builder(items, false, "items", z, &list, err))) {
		if (list.via.array.size > WARREN_MAP_INLINE_MAX)
			rc = map_as_group(task, &list, star, out, err);
		else
			rc = map_inline(task, &list, star, z, out, err);
	}
	msgpack_zone_free(z);
	return rc;
}

int warren_map(const char *task, const warren_args *items, warren_sig **out, warren_error *err)
{
	return map_common(task, items, false, out, err);
}

int warren_starmap(const char *task, const warren_args *items, warren_sig **out,
		   warren_error *err)
{
	return map_common(task, items, true, out, err);
}

/* ---- sending ---- */

typedef struct send_state {
	warren_client *c;
	backend_chord *chord;
	uint64_t seq;
	size_t refused;
	char reason[WARREN_ERROR_MSG_MAX];
} send_state;

static int publish(void *arg, schema_task_msg *msg, const schema_canvas_route *rt,
		   warren_error *err)
{
	send_state *st = arg;
	return producer_send_msg(st->c, msg, rt->queue, rt->countdown, rt->expires, ++st->seq, err);
}

static int chord_size(void *arg, const char *group_id, int64_t size, warren_error *err)
{
	send_state *st = arg;
	if (!st->chord) {
		backend_options o;
		backend_options_default(&o);
		if (st->c->cfg)
			o.result_expires = st->c->cfg->result_backend.result_expires;
		int rc = backend_chord_open(st->c->backend_url, &o, &st->chord, err);
		if (rc)
			return rc;
	}
	return backend_chord_set_size(st->chord, group_id, size, err);
}

static void on_sent(void *arg, uint64_t cookie, warren_send_outcome o, const char *reason)
{
	send_state *st = arg;
	(void)cookie;
	if (o != WARREN_SEND_CONFIRMED) {
		st->refused++;
		snprintf(st->reason, sizeof st->reason, "%s", reason ? reason : "?");
	}
}

/* ---- result ids ---- */

static int add_id(warren_canvas *cv, const char *id)
{
	char **p = realloc(cv->ids, (cv->n_ids + 1) * sizeof *p);
	if (!p)
		return WARREN_ENOMEM;
	cv->ids = p;
	if (!(cv->ids[cv->n_ids] = strdup(id)))
		return WARREN_ENOMEM;
	cv->n_ids++;
	return 0;
}

/* The id whose result stands for sig: a task's, a chain's last step's, a
 * chord's body's. A group has none (NULL). */
static const schema_signature *result_sig(const schema_signature *sig)
{
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_CHAIN:
		return sig->n_tasks ? result_sig(&sig->tasks[sig->n_tasks - 1]) : NULL;
	case SCHEMA_CANVAS_CHORD:
		return sig->body ? result_sig(sig->body) : NULL;
	default:
		return sig;
	}
}

static int collect_ids(warren_canvas *cv, const schema_signature *sig, msgpack_zone *z)
{
	const schema_signature *r = result_sig(sig);
	if (!r)
		return 0;
	if (schema_canvas_kind_of(r) == SCHEMA_CANVAS_GROUP) {
		cv->is_list = true;
		for (size_t i = 0; i < r->n_tasks; i++) {
			const schema_signature *m = result_sig(&r->tasks[i]);
			const char *id = m ? schema_canvas_opt_str(m, "task_id", z) : NULL;
			if (m && schema_canvas_kind_of(m) == SCHEMA_CANVAS_GROUP) {
				int rc = collect_ids(cv, m, z); /* nested groups are unrolled */
				if (rc)
					return rc;
				continue;
			}
			if (id && add_id(cv, id))
				return WARREN_ENOMEM;
		}
		const char *gid = schema_canvas_opt_str(r, "task_id", z);
		cv->id = gid && !cv->id ? strdup(gid) : cv->id;
		return 0;
	}
	const char *id = schema_canvas_opt_str(r, "task_id", z);
	if (id && (add_id(cv, id) || !(cv->id = strdup(id))))
		return WARREN_ENOMEM;
	return 0;
}

void warren_canvas_free(warren_canvas *cv)
{
	if (!cv)
		return;
	for (size_t i = 0; i < cv->n_ids; i++)
		free(cv->ids[i]);
	free(cv->ids);
	free(cv->id);
	free(cv);
}

static int send_tree(warren_client *c, schema_signature *sig, msgpack_zone *z, warren_error *err)
{
	if (schema_canvas_has_chord(sig) && !backend_chord_supported(c->backend_url))
		return warren_error_set(err, WARREN_EINVAL,
					"chord: result backend '%s' cannot join a chord (Celery "
					"refuses chords on it too); use redis://",
					c->backend_url ? c->backend_url : "none");
	const char *reply_to;
	int rc = producer_reply_to(c, &reply_to, err);
	if (rc)
		return rc;
	send_state st = {.c = c};
	schema_canvas_env env = {.publish = publish, .chord_size = chord_size, .arg = &st,
				 .reply_to = reply_to};
	warren_send_fn saved = c->on_send;
	void *saved_arg = c->on_send_arg;
	c->on_send = on_sent;
	c->on_send_arg = &st;
	rc = schema_canvas_apply(&env, sig, NULL, z, err);
	if (!rc && c->conn)
		rc = broker_publish_flush(c->conn, c->opts.reconnect_timeout_ms + 30000, err);
	c->on_send = saved;
	c->on_send_arg = saved_arg;
	backend_chord_free(st.chord);
	if (!rc && st.refused)
		rc = warren_error_set(err, WARREN_EBROKER, "canvas: %zu message(s) not confirmed: %s",
				      st.refused, st.reason);
	return rc;
}

int warren_canvas_send(warren_client *c, const warren_sig *sig, warren_canvas **out,
		       warren_error *err)
{
	if (!c || !sig || !out)
		return warren_error_set(err, WARREN_EINVAL, "canvas: NULL argument");
	*out = NULL;
	msgpack_zone *z;
	int rc = zone_new(&z, err);
	if (rc)
		return rc;
	schema_signature tree;
	warren_canvas *cv = calloc(1, sizeof *cv);
	if (!cv)
		rc = warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	if (!rc && !(rc = sig_open(sig, z, &tree, err)) &&
	    !(rc = schema_canvas_freeze(&tree, z, err))) {
		if (collect_ids(cv, &tree, z))
			rc = warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
		else
			rc = send_tree(c, &tree, z, err);
	}
	msgpack_zone_free(z);
	if (rc) {
		warren_canvas_free(cv);
		return rc;
	}
	*out = cv;
	return 0;
}

const char *warren_canvas_id(const warren_canvas *cv)
{
	return cv && cv->id ? cv->id : "";
}

size_t warren_canvas_ids(const warren_canvas *cv, const char *const **ids)
{
	*ids = (const char *const *)cv->ids;
	return cv->n_ids;
}

/* ---- waiting ---- */

/* The members' values packed as one list, as a SUCCESS result. */
static int list_result(warren_result **rs, size_t n, const char *id, warren_result **out,
		       warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int bad = msgpack_pack_array(&pk, n);
	for (size_t i = 0; !bad && i < n; i++) {
		size_t len = 0;
		const void *p = warren_result_packed(rs[i], &len);
		bad = p ? msgpack_sbuffer_write(&sb, p, len) : msgpack_pack_nil(&pk);
	}
	schema_result r;
	schema_result_init(&r);
	int rc = bad ? warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory") : 0;
	if (!rc && !(rc = schema_result_set_task_id(&r, id, err)) &&
	    !(rc = schema_result_set_success(&r, sb.data, sb.size, err)))
		rc = producer_result_from(&r, out, err);
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int wait_list(warren_client *c, const warren_canvas *cv, int timeout_ms,
		     warren_result **out, warren_error *err)
{
	size_t n = cv->n_ids;
	warren_result **rs = calloc(n ? n : 1, sizeof *rs);
	if (!rs)
		return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	int rc = n ? warren_result_wait_many(c, (const char *const *)cv->ids, n, timeout_ms, rs,
					     NULL, err)
		   : 0;
	size_t failed = n;
	for (size_t i = 0; !rc && i < n && failed == n; i++)
		if (warren_result_state(rs[i]) != WARREN_STATE_SUCCESS)
			failed = i;
	if (!rc && failed < n) {
		*out = rs[failed];
		rs[failed] = NULL;
	} else if (!rc) {
		rc = list_result(rs, n, warren_canvas_id(cv), out, err);
	}
	for (size_t i = 0; i < n; i++)
		warren_result_free(rs[i]);
	free(rs);
	return rc;
}

int warren_canvas_wait(warren_client *c, const warren_canvas *cv, int timeout_ms,
		       warren_result **out, warren_error *err)
{
	if (!c || !cv || !out)
		return warren_error_set(err, WARREN_EINVAL, "canvas: NULL argument");
	*out = NULL;
	if (cv->is_list)
		return wait_list(c, cv, timeout_ms, out, err);
	if (cv->n_ids == 0)
		return warren_error_set(err, WARREN_EINVAL, "canvas: nothing to wait for");
	return warren_result_wait(c, cv->ids[0], timeout_ms, out, err);
}
