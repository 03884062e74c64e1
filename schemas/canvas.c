/* schemas/canvas.c - Celery 5.2's apply_async for signatures of every kind,
 * with the publishing left to the caller (schema_canvas_env).
 *
 * One implementation serves both sides, because both run canvases: the
 * producer sends a chain, group or chord it built; the worker sends a
 * task's callbacks, the next link of a chain, a group or chord it popped
 * from a chain, and a chord's body once the header joined. The rules are
 * those of celery/canvas.py (v5.2.6):
 *  - a plain task: options merged as Signature._merge (the call wins, except
 *    a group_id the signature already has), partial args prepended unless
 *    the signature is immutable; link/link_error become embed.callbacks and
 *    embed.errbacks, the call's chain embed.chain, options.chord embed.chord;
 *  - a group: the id is options.task_id (or the call's, or new); nested
 *    groups are unrolled; each member is applied with group_id = gid and no
 *    group_index (Celery leaves it null for plain groups);
 *  - a chain: nested chains are spliced, a group followed by a step becomes
 *    chord(group, step), every step gets an id, the last one the call's
 *    task_id, group_id, group_index and chord; the chain's link_error goes
 *    onto every step; the first step is sent with the rest, reversed, as
 *    embed.chain (the outer call's chain kept below it);
 *  - a chord: the header id is the header group's task_id (or new); the
 *    body takes the chord's and the call's options (its chain included, so
 *    a chain goes on after a chord), and an id; the header size
 *    (_chord._descend: a task counts 1, a group its members, a chain its
 *    last step, a chord its body) is recorded through env->chord_size
 *    before the members go out with group, group_index and embed.chord.
 * Every structure made here lives in the caller's zone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas.h"

#define CANVAS_MAX_DEPTH 32

static int nomem(warren_error *err)
{
	return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
}

static bool key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

msgpack_object schema_canvas_str(msgpack_zone *zone, const char *s)
{
	msgpack_object o = {.type = MSGPACK_OBJECT_NIL};
	size_t n = strlen(s);
	char *copy = schema_zone_strndup(zone, s, n);
	if (!copy)
		return o;
	o.type = MSGPACK_OBJECT_STR;
	o.via.str.ptr = copy;
	o.via.str.size = (uint32_t)n;
	return o;
}

const char *schema_canvas_opt_str(const schema_signature *sig, const char *key,
				  msgpack_zone *zone)
{
	const msgpack_object *v = schema_map_get(&sig->options, key);
	if (!v || v->type != MSGPACK_OBJECT_STR)
		return NULL;
	return schema_zone_strndup(zone, v->via.str.ptr, v->via.str.size);
}

static bool opt_num(const schema_signature *sig, const char *key, double *out)
{
	const msgpack_object *v = schema_map_get(&sig->options, key);
	if (!v)
		return false;
	switch (v->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)v->via.u64; return true;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)v->via.i64; return true;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: *out = v->via.f64; return true;
	default: return false;
	}
}

int schema_canvas_opt_set(schema_signature *sig, const char *key, msgpack_object val,
			  msgpack_zone *zone, warren_error *err)
{
	msgpack_object *map = &sig->options;
	uint32_t n = map->type == MSGPACK_OBJECT_MAP ? map->via.map.size : 0;
	msgpack_object_kv *kv = msgpack_zone_malloc(zone, (n + 1) * sizeof *kv);
	if (!kv)
		return nomem(err);
	uint32_t m = 0;
	bool replaced = false;
	for (uint32_t i = 0; i < n; i++) {
		kv[m] = map->via.map.ptr[i];
		if (key_is(&kv[m].key, key)) {
			kv[m].val = val;
			replaced = true;
		}
		m++;
	}
	if (!replaced) {
		kv[m].key = schema_canvas_str(zone, key);
		kv[m].val = val;
		if (kv[m].key.type == MSGPACK_OBJECT_NIL)
			return nomem(err);
		m++;
	}
	map->type = MSGPACK_OBJECT_MAP;
	map->via.map.ptr = kv;
	map->via.map.size = m;
	return 0;
}

static int opt_set_str(schema_signature *sig, const char *key, const char *s,
		       msgpack_zone *zone, warren_error *err)
{
	msgpack_object v = schema_canvas_str(zone, s);
	if (v.type == MSGPACK_OBJECT_NIL)
		return nomem(err);
	return schema_canvas_opt_set(sig, key, v, zone, err);
}

static int opt_set_int(schema_signature *sig, const char *key, int64_t i, msgpack_zone *zone,
		       warren_error *err)
{
	msgpack_object v = {.type = i < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER
					  : MSGPACK_OBJECT_POSITIVE_INTEGER};
	v.via.i64 = i;
	return schema_canvas_opt_set(sig, key, v, zone, err);
}

static bool skipped(const msgpack_object *k, const char *const *skip)
{
	for (size_t i = 0; skip && skip[i]; i++)
		if (key_is(k, skip[i]))
			return true;
	return false;
}

/* A new map in zone: base's pairs, then over's replacing or adding, both
 * without the keys in skip (NULL-terminated). base/over may be NULL or nil. */
static int overlay(msgpack_zone *zone, const msgpack_object *base, const msgpack_object *over,
		   const char *const *skip, msgpack_object *out, warren_error *err)
{
	schema_signature tmp = {.options = {.type = MSGPACK_OBJECT_MAP}};
	const msgpack_object *maps[2] = {base, over};
	for (int m = 0; m < 2; m++) {
		const msgpack_object *map = maps[m];
		for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size;
		     i++) {
			const msgpack_object_kv *kv = &map->via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR || skipped(&kv->key, skip))
				continue;
			char key[64];
			snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size,
				 kv->key.via.str.ptr);
			int rc = schema_canvas_opt_set(&tmp, key, kv->val, zone, err);
			if (rc)
				return rc;
		}
	}
	*out = tmp.options;
	return 0;
}

/* Signature._merge of options: the call's over the signature's, except a
 * group_id the signature already has. */
static int merge_options(schema_signature *sig, const msgpack_object *extra, msgpack_zone *zone,
			 warren_error *err)
{
	if (!extra || extra->type != MSGPACK_OBJECT_MAP || extra->via.map.size == 0)
		return 0;
	static const char *const keep_group[] = {"group_id", NULL};
	const char *const *skip = schema_map_get(&sig->options, "group_id") ? keep_group : NULL;
	msgpack_object merged;
	int rc = overlay(zone, &sig->options, extra, skip, &merged, err);
	if (!rc)
		sig->options = merged;
	return rc;
}

int schema_canvas_opt_sigs(const schema_signature *sig, const char *key, msgpack_zone *zone,
			   schema_signature **out, size_t *n, warren_error *err)
{
	*out = NULL;
	*n = 0;
	const msgpack_object *v = schema_map_get(&sig->options, key);
	if (!v || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	bool one = v->type == MSGPACK_OBJECT_MAP;
	if (!one && v->type != MSGPACK_OBJECT_ARRAY)
		return warren_error_set(err, WARREN_EDECODE, "signature '%s': options '%s' is %s",
					sig->task, key, schema_obj_type_name(v));
	size_t count = one ? 1 : v->via.array.size;
	if (count == 0)
		return 0;
	schema_signature *sigs = msgpack_zone_malloc(zone, count * sizeof *sigs);
	if (!sigs)
		return nomem(err);
	for (size_t i = 0; i < count; i++) {
		const msgpack_object *o = one ? v : &v->via.array.ptr[i];
		int rc = schema_signature_decode(o, zone, key, &sigs[i], err);
		if (rc)
			return rc;
	}
	*out = sigs;
	*n = count;
	return 0;
}

schema_canvas_kind schema_canvas_kind_of(const schema_signature *sig)
{
	const char *t = sig->subtask_type;
	if (t && strcmp(t, "group") == 0)
		return SCHEMA_CANVAS_GROUP;
	if (t && strcmp(t, "chain") == 0)
		return SCHEMA_CANVAS_CHAIN;
	if (t && strcmp(t, "chord") == 0)
		return SCHEMA_CANVAS_CHORD;
	return SCHEMA_CANVAS_TASK;
}

bool schema_canvas_has_chord(const schema_signature *sig)
{
	schema_canvas_kind k = schema_canvas_kind_of(sig);
	if (k == SCHEMA_CANVAS_CHORD)
		return true;
	for (size_t i = 0; k != SCHEMA_CANVAS_TASK && i < sig->n_tasks; i++)
		if (schema_canvas_has_chord(&sig->tasks[i]))
			return true;
	return false;
}

/* ---- signatures as msgpack objects ---- */

/* Packs sig and unpacks it into zone: a signature that can sit in an
 * options map (chord, chain) and be packed again later. */
static int sig_to_obj(const schema_signature *sig, msgpack_zone *zone, msgpack_object *out,
		      warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int rc = schema_signature_pack(&pk, sig, err);
	if (!rc) {
		schema_limits lim;
		schema_limits_default(&lim);
		rc = schema_unpack(sb.data, sb.size, &lim, "signature", zone, out, err);
	}
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int sigs_to_array(const schema_signature *sigs, size_t n, msgpack_zone *zone,
			 msgpack_object *out, warren_error *err)
{
	out->type = MSGPACK_OBJECT_ARRAY;
	out->via.array.size = (uint32_t)n;
	out->via.array.ptr = n ? msgpack_zone_malloc(zone, n * sizeof *out->via.array.ptr) : NULL;
	if (n && !out->via.array.ptr)
		return nomem(err);
	for (size_t i = 0; i < n; i++) {
		int rc = sig_to_obj(&sigs[i], zone, &out->via.array.ptr[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

/* partial ++ sig->args, or sig->args alone when immutable or no partial. */
static int merged_args(const schema_signature *sig, const msgpack_object *partial,
		       msgpack_zone *zone, msgpack_object *out, warren_error *err)
{
	*out = sig->args;
	if (out->type != MSGPACK_OBJECT_ARRAY) {
		out->type = MSGPACK_OBJECT_ARRAY;
		out->via.array.size = 0;
		out->via.array.ptr = NULL;
	}
	if (!partial || sig->immutable || partial->type != MSGPACK_OBJECT_ARRAY ||
	    partial->via.array.size == 0)
		return 0;
	uint32_t a = partial->via.array.size, b = out->via.array.size;
	msgpack_object *items = msgpack_zone_malloc(zone, (a + b) * sizeof *items);
	if (!items)
		return nomem(err);
	memcpy(items, partial->via.array.ptr, a * sizeof *items);
	if (b)
		memcpy(items + a, out->via.array.ptr, b * sizeof *items);
	out->via.array.ptr = items;
	out->via.array.size = a + b;
	return 0;
}

static const char *new_id(msgpack_zone *zone, warren_error *err)
{
	char id[37];
	if (schema_uuid4(id, err))
		return NULL;
	const char *copy = schema_zone_strndup(zone, id, 36);
	if (!copy)
		nomem(err);
	return copy;
}

/* options.task_id, assigned a new uuid when missing. */
static const char *ensure_task_id(schema_signature *sig, msgpack_zone *zone, warren_error *err)
{
	const char *id = schema_canvas_opt_str(sig, "task_id", zone);
	if (id)
		return id;
	if (!(id = new_id(zone, err)) || opt_set_str(sig, "task_id", id, zone, err))
		return NULL;
	return id;
}

/* ---- unrolling ---- */

/* Appends the members of group g (nested groups unrolled) to *list. */
static int unroll_group(schema_signature *g, msgpack_zone *zone, schema_signature ***list,
			size_t *n, size_t *cap, warren_error *err)
{
	for (size_t i = 0; i < g->n_tasks; i++) {
		schema_signature *m = &g->tasks[i];
		if (schema_canvas_kind_of(m) == SCHEMA_CANVAS_GROUP) {
			int rc = unroll_group(m, zone, list, n, cap, err);
			if (rc)
				return rc;
			continue;
		}
		if (*n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 16;
			schema_signature **p = msgpack_zone_malloc(zone, ncap * sizeof *p);
			if (!p)
				return nomem(err);
			if (*n)
				memcpy(p, *list, *n * sizeof *p);
			*list = p;
			*cap = ncap;
		}
		(*list)[(*n)++] = m;
	}
	return 0;
}

static int members_of(schema_signature *g, msgpack_zone *zone, schema_signature ***list,
		      size_t *n, warren_error *err)
{
	size_t cap = 0;
	*list = NULL;
	*n = 0;
	return unroll_group(g, zone, list, n, &cap, err);
}

/* Celery's _chord._descend: how many parts a header member adds. */
static int64_t descend(const schema_signature *sig)
{
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_GROUP: {
		int64_t sum = 0;
		for (size_t i = 0; i < sig->n_tasks; i++)
			sum += descend(&sig->tasks[i]);
		return sum;
	}
	case SCHEMA_CANVAS_CHAIN:
		for (size_t i = sig->n_tasks; i-- > 0;) {
			int64_t d = descend(&sig->tasks[i]);
			if (d > 0)
				return d;
		}
		return 0;
	case SCHEMA_CANVAS_CHORD:
		return sig->body ? descend(sig->body) : 0;
	default:
		return 1;
	}
}

/* ---- chains ---- */

/* A chord(group, body) signature in zone, as prepare_steps upgrades
 * `group | body`. */
static int make_chord(schema_signature *group, schema_signature *body, msgpack_zone *zone,
		      schema_signature *out, warren_error *err)
{
	memset(out, 0, sizeof *out);
	out->task = "celery.chord";
	out->subtask_type = "chord";
	out->args.type = MSGPACK_OBJECT_ARRAY;
	out->kwargs.type = MSGPACK_OBJECT_MAP;
	out->options.type = MSGPACK_OBJECT_MAP;
	out->tasks = group->tasks;
	out->n_tasks = group->n_tasks;
	out->body = msgpack_zone_malloc(zone, sizeof *out->body);
	if (!out->body)
		return nomem(err);
	*out->body = *body;
	/* The group's id, when it has one, becomes the header's: the caller
	 * keeps it in options.header_id (Celery keeps it in the header group's
	 * options, which the decoded struct does not hold). */
	const char *gid = schema_canvas_opt_str(group, "task_id", zone);
	return gid ? opt_set_str(out, "header_id", gid, zone, err) : 0;
}

/* Flattens nested chains and upgrades `group | step` to a chord, in place. */
static int normalize_chain(schema_signature *chain, msgpack_zone *zone, unsigned depth,
			   warren_error *err)
{
	if (depth > CANVAS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "canvas: nested deeper than %d",
					CANVAS_MAX_DEPTH);
	size_t cap = 0;
	for (size_t i = 0; i < chain->n_tasks; i++)
		cap += schema_canvas_kind_of(&chain->tasks[i]) == SCHEMA_CANVAS_CHAIN
			       ? chain->tasks[i].n_tasks + 1 : 1;
	schema_signature *steps = msgpack_zone_malloc(zone, (cap ? cap : 1) * sizeof *steps);
	if (!steps)
		return nomem(err);
	size_t n = 0;
	for (size_t i = 0; i < chain->n_tasks; i++) {
		schema_signature *s = &chain->tasks[i];
		if (schema_canvas_kind_of(s) == SCHEMA_CANVAS_CHAIN) {
			int rc = normalize_chain(s, zone, depth + 1, err);
			if (rc)
				return rc;
			/* the inner chain's own args go to its first step */
			memcpy(steps + n, s->tasks, s->n_tasks * sizeof *steps);
			n += s->n_tasks;
			continue;
		}
		steps[n++] = *s;
	}
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (schema_canvas_kind_of(&steps[i]) == SCHEMA_CANVAS_GROUP && i + 1 < n) {
			schema_signature ch;
			int rc = make_chord(&steps[i], &steps[i + 1], zone, &ch, err);
			if (rc)
				return rc;
			steps[m++] = ch;
			i++;
			continue;
		}
		steps[m++] = steps[i];
	}
	chain->tasks = steps;
	chain->n_tasks = m;
	return 0;
}

/* ---- freezing ---- */

static int freeze(schema_signature *sig, msgpack_zone *zone, unsigned depth, warren_error *err)
{
	if (depth > CANVAS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "canvas: nested deeper than %d",
					CANVAS_MAX_DEPTH);
	int rc = 0;
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_TASK:
		return ensure_task_id(sig, zone, err) ? 0 : err ? err->code : WARREN_ENOMEM;
	case SCHEMA_CANVAS_CHAIN: {
		rc = normalize_chain(sig, zone, depth, err);
		/* chain(task_id=X) is the last step's id (apply's mark_last_step) */
		const char *own = rc || !sig->n_tasks ? NULL : schema_canvas_opt_str(sig, "task_id", zone);
		if (own) {
			schema_signature *last = &sig->tasks[sig->n_tasks - 1];
			if (schema_canvas_kind_of(last) == SCHEMA_CANVAS_CHORD && last->body)
				last = last->body;
			rc = opt_set_str(last, "task_id", own, zone, err);
		}
		for (size_t i = 0; !rc && i < sig->n_tasks; i++)
			rc = freeze(&sig->tasks[i], zone, depth + 1, err);
		return rc;
	}
	case SCHEMA_CANVAS_GROUP:
		if (!ensure_task_id(sig, zone, err))
			return err ? err->code : WARREN_ENOMEM;
		for (size_t i = 0; !rc && i < sig->n_tasks; i++)
			rc = freeze(&sig->tasks[i], zone, depth + 1, err);
		return rc;
	case SCHEMA_CANVAS_CHORD:
		for (size_t i = 0; !rc && i < sig->n_tasks; i++)
			rc = freeze(&sig->tasks[i], zone, depth + 1, err);
		if (!rc && sig->body)
			rc = freeze(sig->body, zone, depth + 1, err);
		return rc;
	}
	return 0;
}

int schema_canvas_freeze(schema_signature *sig, msgpack_zone *zone, warren_error *err)
{
	return freeze(sig, zone, 0, err);
}

/* ---- applying ---- */

typedef struct apply_ctx {
	const schema_canvas_env *env;
	msgpack_zone *zone;
	unsigned depth;
} apply_ctx;

static int apply(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		 warren_error *err);

static int decode_opt_sig(const schema_signature *sig, const char *key, msgpack_zone *zone,
			  schema_signature **out, warren_error *err)
{
	size_t n = 0;
	int rc = schema_canvas_opt_sigs(sig, key, zone, out, &n, err);
	if (!rc && n == 0)
		*out = NULL;
	return rc;
}

/* The embed and the headers a plain task's options and the call give. */
static int fill_message(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
			schema_task_msg *msg, warren_error *err)
{
	msgpack_zone *z = a->zone;
	const char *s;
	int rc;
	if ((s = call->task_id) || (s = schema_canvas_opt_str(sig, "task_id", z)))
		msg->id = s;
	msg->root_id = call->root_id ? call->root_id : schema_canvas_opt_str(sig, "root_id", z);
	if (!msg->root_id)
		msg->root_id = msg->id;
	msg->parent_id = call->parent_id ? call->parent_id
					 : schema_canvas_opt_str(sig, "parent_id", z);
	msg->group = schema_canvas_opt_str(sig, "group_id", z);
	if (!msg->group)
		msg->group = call->group_id;
	double num;
	if (call->has_group_index) {
		msg->has_group_index = true;
		msg->group_index = call->group_index;
	} else if (opt_num(sig, "group_index", &num)) {
		msg->has_group_index = true;
		msg->group_index = (int64_t)num;
	}
	s = schema_canvas_opt_str(sig, "reply_to", z);
	msg->props.reply_to = s ? s : a->env->reply_to;
	if (opt_num(sig, "priority", &num) && num >= 0 && num <= 255)
		msg->props.priority = (uint8_t)num;
	if ((msg->has_time_limit = opt_num(sig, "time_limit", &num)))
		msg->time_limit = num;
	if ((msg->has_soft_time_limit = opt_num(sig, "soft_time_limit", &num)))
		msg->soft_time_limit = num;
	const msgpack_object *ign = schema_map_get(&sig->options, "ignore_result");
	msg->ignore_result = ign && ign->type == MSGPACK_OBJECT_BOOLEAN && ign->via.boolean;
	if ((rc = schema_canvas_opt_sigs(sig, "link", z, &msg->callbacks, &msg->n_callbacks, err)) ||
	    (rc = schema_canvas_opt_sigs(sig, "link_error", z, &msg->errbacks, &msg->n_errbacks,
					 err)))
		return rc;
	if (call->n_chain) {
		msg->chain = call->chain;
		msg->n_chain = call->n_chain;
	} else if ((rc = schema_canvas_opt_sigs(sig, "chain", z, &msg->chain, &msg->n_chain, err))) {
		return rc;
	}
	if (call->chord)
		msg->chord = call->chord;
	else if ((rc = decode_opt_sig(sig, "chord", z, &msg->chord, err)))
		return rc;
	return 0;
}

static int send_task(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		     warren_error *err)
{
	schema_signature merged = *sig;
	int rc = merge_options(&merged, call->options, a->zone, err);
	if (rc)
		return rc;
	sig = &merged;
	schema_task_msg *msg = NULL;
	if ((rc = schema_task_msg_new(sig->task, &msg, err)))
		return rc;
	msgpack_object args;
	if ((rc = merged_args(sig, call->args, a->zone, &args, err)) ||
	    (rc = fill_message(a, sig, call, msg, err)))
		goto out_msg;
	msg->args = args;
	msg->kwargs = sig->kwargs.type == MSGPACK_OBJECT_MAP ? sig->kwargs : msg->kwargs;
	char repr[SCHEMA_REPR_MAX + 4];
	schema_repr(&msg->args, true, repr, sizeof repr);
	msg->argsrepr = schema_task_msg_strdup(msg, repr);
	schema_repr(&msg->kwargs, false, repr, sizeof repr);
	msg->kwargsrepr = schema_task_msg_strdup(msg, repr);
	schema_canvas_route route = {.queue = schema_canvas_opt_str(sig, "queue", a->zone)};
	opt_num(sig, "countdown", &route.countdown);
	opt_num(sig, "expires", &route.expires);
	rc = a->env->publish(a->env->arg, msg, &route, err);
out_msg:
	schema_task_msg_free(msg);
	return rc;
}

static int apply_group(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		       warren_error *err)
{
	const char *gid = call->task_id ? call->task_id : schema_canvas_opt_str(sig, "task_id", a->zone);
	if (!gid && !(gid = new_id(a->zone, err)))
		return err ? err->code : WARREN_ENOMEM;
	static const char *const skip[] = {"task_id", "group_id", "link", "link_error", NULL};
	msgpack_object down;
	int rc = overlay(a->zone, &sig->options, call->options, skip, &down, err);
	schema_signature **members = NULL;
	size_t n = 0;
	if (!rc)
		rc = members_of(sig, a->zone, &members, &n, err);
	for (size_t i = 0; !rc && i < n; i++) {
		schema_canvas_call c = *call;
		c.task_id = NULL;
		c.group_id = gid;
		c.options = &down;
		rc = apply(a, members[i], &c, err);
	}
	return rc;
}

/* Writes what belongs to the last step of a chain into its options. */
static int mark_last_step(apply_ctx *a, schema_signature *last, const schema_canvas_call *call,
			  warren_error *err)
{
	msgpack_zone *z = a->zone;
	int rc = 0;
	schema_signature *target = last;
	if (schema_canvas_kind_of(last) == SCHEMA_CANVAS_CHORD && last->body)
		target = last->body; /* a chain ending in a chord ends with its body */
	if (call->task_id && (rc = opt_set_str(target, "task_id", call->task_id, z, err)))
		return rc;
	if (call->group_id && !schema_map_get(&target->options, "group_id") &&
	    (rc = opt_set_str(target, "group_id", call->group_id, z, err)))
		return rc;
	if (call->has_group_index &&
	    (rc = opt_set_int(target, "group_index", call->group_index, z, err)))
		return rc;
	if (call->chord) {
		msgpack_object body;
		if ((rc = sig_to_obj(call->chord, z, &body, err)) ||
		    (rc = schema_canvas_opt_set(target, "chord", body, z, err)))
			return rc;
	}
	return 0;
}

/* Appends the chain's link_error signatures to one step's options. */
static int copy_link_error(schema_signature *step, const msgpack_object *errbacks,
			   msgpack_zone *zone, warren_error *err)
{
	const msgpack_object *own = schema_map_get(&step->options, "link_error");
	uint32_t a = own && own->type == MSGPACK_OBJECT_ARRAY ? own->via.array.size
		     : own && own->type == MSGPACK_OBJECT_MAP ? 1 : 0;
	uint32_t b = errbacks->type == MSGPACK_OBJECT_ARRAY ? errbacks->via.array.size : 1;
	msgpack_object list = {.type = MSGPACK_OBJECT_ARRAY};
	list.via.array.ptr = msgpack_zone_malloc(zone, (a + b) * sizeof *list.via.array.ptr);
	if (!list.via.array.ptr)
		return nomem(err);
	if (a == 1 && own->type == MSGPACK_OBJECT_MAP)
		list.via.array.ptr[0] = *own;
	else if (a)
		memcpy(list.via.array.ptr, own->via.array.ptr, a * sizeof *list.via.array.ptr);
	if (errbacks->type == MSGPACK_OBJECT_ARRAY)
		memcpy(list.via.array.ptr + a, errbacks->via.array.ptr,
		       b * sizeof *list.via.array.ptr);
	else
		list.via.array.ptr[a] = *errbacks;
	list.via.array.size = a + b;
	return schema_canvas_opt_set(step, "link_error", list, zone, err);
}

/* embed.chain for the first step: the outer call's chain below the rest of
 * this one, reversed (the worker pops from the end). */
static int chain_rest(apply_ctx *a, schema_signature *steps, size_t n,
		      const schema_canvas_call *call, schema_signature **out, size_t *n_out,
		      warren_error *err)
{
	size_t total = call->n_chain + (n - 1);
	*out = NULL;
	*n_out = total;
	if (!total)
		return 0;
	schema_signature *rest = msgpack_zone_malloc(a->zone, total * sizeof *rest);
	if (!rest)
		return nomem(err);
	if (call->n_chain)
		memcpy(rest, call->chain, call->n_chain * sizeof *rest);
	for (size_t i = 1; i < n; i++)
		rest[call->n_chain + (n - 1 - i)] = steps[i];
	*out = rest;
	return 0;
}

static int apply_chain(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		       warren_error *err)
{
	int rc = normalize_chain(sig, a->zone, a->depth, err);
	if (rc || sig->n_tasks == 0)
		return rc;
	schema_signature *steps = sig->tasks;
	size_t n = sig->n_tasks;
	const char *own_id = schema_canvas_opt_str(sig, "task_id", a->zone);
	schema_canvas_call last = *call;
	if (!last.task_id)
		last.task_id = own_id;
	if ((rc = mark_last_step(a, &steps[n - 1], &last, err)))
		return rc;
	const msgpack_object *errbacks = schema_map_get(&sig->options, "link_error");
	for (size_t i = 0; !rc && i < n; i++) {
		if (schema_canvas_kind_of(&steps[i]) == SCHEMA_CANVAS_TASK &&
		    !ensure_task_id(&steps[i], a->zone, err))
			return err ? err->code : WARREN_ENOMEM;
		if (errbacks && errbacks->type != MSGPACK_OBJECT_NIL)
			rc = copy_link_error(&steps[i], errbacks, a->zone, err);
	}
	msgpack_object args;
	if (rc || (rc = merged_args(sig, call->args, a->zone, &args, err)))
		return rc;
	static const char *const skip[] = {"task_id", "link", "link_error", "chain", "chord",
					   "group_id", "group_index", NULL};
	msgpack_object down;
	if ((rc = overlay(a->zone, &sig->options, call->options, skip, &down, err)))
		return rc;
	schema_canvas_call first = {.args = &args, .parent_id = call->parent_id,
				    .root_id = call->root_id, .options = &down};
	if ((rc = chain_rest(a, steps, n, call, &first.chain, &first.n_chain, err)))
		return rc;
	return apply(a, &steps[0], &first, err);
}

/* The chord's body with the chord's and the call's options merged in. */
static int prepare_body(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
			schema_signature *body, warren_error *err)
{
	msgpack_zone *z = a->zone;
	*body = *sig->body;
	int rc = 0;
	const msgpack_object *opts = &sig->options;
	for (uint32_t i = 0; opts->type == MSGPACK_OBJECT_MAP && i < opts->via.map.size; i++) {
		const msgpack_object_kv *kv = &opts->via.map.ptr[i];
		if (key_is(&kv->key, "task_id") || key_is(&kv->key, "header_id") ||
		    kv->key.type != MSGPACK_OBJECT_STR)
			continue;
		char key[64];
		snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
		if ((rc = schema_canvas_opt_set(body, key, kv->val, z, err)))
			return rc;
	}
	const char *id = schema_canvas_opt_str(body, "task_id", z);
	if (!id)
		id = call->task_id ? call->task_id : schema_canvas_opt_str(sig, "task_id", z);
	if (!id && !(id = new_id(z, err)))
		return err ? err->code : WARREN_ENOMEM;
	if ((rc = opt_set_str(body, "task_id", id, z, err)) ||
	    (call->parent_id && (rc = opt_set_str(body, "parent_id", call->parent_id, z, err))) ||
	    (call->root_id && (rc = opt_set_str(body, "root_id", call->root_id, z, err))))
		return rc;
	if (call->n_chain) {
		msgpack_object chain;
		if ((rc = sigs_to_array(call->chain, call->n_chain, z, &chain, err)) ||
		    (rc = schema_canvas_opt_set(body, "chain", chain, z, err)))
			return rc;
	}
	schema_canvas_call outer = {.group_id = call->group_id,
				    .has_group_index = call->has_group_index,
				    .group_index = call->group_index, .chord = call->chord};
	return mark_last_step(a, body, &outer, err);
}

/* chord.run: group_id = header.options.task_id, else a new one. */
static const char *header_id(const schema_signature *sig, msgpack_zone *zone)
{
	const char *gid = schema_canvas_opt_str(sig, "header_id", zone);
	const msgpack_object *header = schema_map_get(&sig->kwargs, "header");
	if (gid || !header || header->type != MSGPACK_OBJECT_MAP)
		return gid;
	const msgpack_object *opts = schema_map_get(header, "options");
	const msgpack_object *id = opts ? schema_map_get(opts, "task_id") : NULL;
	if (!id || id->type != MSGPACK_OBJECT_STR)
		return NULL;
	return schema_zone_strndup(zone, id->via.str.ptr, id->via.str.size);
}

static int apply_chord(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		       warren_error *err)
{
	if (!sig->body)
		return warren_error_set(err, WARREN_EINVAL, "chord: no body");
	if (!a->env->chord_size)
		return warren_error_set(err, WARREN_EINVAL,
					"chord: the result backend cannot join a chord "
					"(Celery refuses chords on rpc:// too); use redis://");
	const char *gid = header_id(sig, a->zone);
	if (!gid && !(gid = new_id(a->zone, err)))
		return err ? err->code : WARREN_ENOMEM;
	schema_signature *body = msgpack_zone_malloc(a->zone, sizeof *body);
	if (!body)
		return nomem(err);
	int rc = prepare_body(a, sig, call, body, err);
	schema_signature **members = NULL;
	size_t n = 0;
	if (!rc)
		rc = members_of(sig, a->zone, &members, &n, err);
	if (rc)
		return rc;
	if (n == 0) { /* body.delay([]) */
		msgpack_object empty = {.type = MSGPACK_OBJECT_ARRAY};
		msgpack_object one = {.type = MSGPACK_OBJECT_ARRAY};
		one.via.array.ptr = &empty;
		one.via.array.size = 1;
		schema_canvas_call c = {.args = &one};
		return apply(a, body, &c, err);
	}
	int64_t size = 0;
	for (size_t i = 0; i < n; i++)
		size += descend(members[i]);
	static const char *const skip[] = {"task_id", "header_id", "link", "link_error", "chain",
					   "chord", "group_id", "group_index", NULL};
	msgpack_object down;
	if ((rc = overlay(a->zone, &sig->options, call->options, skip, &down, err)) ||
	    (rc = a->env->chord_size(a->env->arg, gid, size, err)))
		return rc;
	for (size_t i = 0; !rc && i < n; i++) {
		schema_canvas_call c = {.args = call->args, .parent_id = call->parent_id,
					.root_id = call->root_id, .group_id = gid,
					.has_group_index = true, .group_index = (int64_t)i,
					.chord = body, .options = &down};
		rc = apply(a, members[i], &c, err);
	}
	return rc;
}

static int apply(apply_ctx *a, schema_signature *sig, const schema_canvas_call *call,
		 warren_error *err)
{
	if (a->depth >= CANVAS_MAX_DEPTH)
		return warren_error_set(err, WARREN_ELIMIT, "canvas: nested deeper than %d",
					CANVAS_MAX_DEPTH);
	a->depth++;
	int rc;
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_GROUP: rc = apply_group(a, sig, call, err); break;
	case SCHEMA_CANVAS_CHAIN: rc = apply_chain(a, sig, call, err); break;
	case SCHEMA_CANVAS_CHORD: rc = apply_chord(a, sig, call, err); break;
	default: rc = send_task(a, sig, call, err); break;
	}
	a->depth--;
	return rc;
}

int schema_canvas_apply(const schema_canvas_env *env, schema_signature *sig,
			const schema_canvas_call *call, msgpack_zone *zone, warren_error *err)
{
	schema_canvas_call none = {0};
	apply_ctx a = {.env = env, .zone = zone};
	return apply(&a, sig, call ? call : &none, err);
}

/* ---- exceptions ---- */

/* Appends repr(v) to buf at *off. */
static void repr_append(const msgpack_object *v, char *buf, size_t cap, size_t *off)
{
	char one[SCHEMA_REPR_MAX + 4];
	schema_repr(v, false, one, sizeof one);
	int n = snprintf(buf + *off, cap - *off, "%s", one);
	*off += n < 0 ? 0 : (size_t)n < cap - *off ? (size_t)n : cap - *off - 1;
}

void schema_canvas_exc_repr(const void *result_mp, size_t len, char *buf, size_t cap)
{
	schema_exc exc;
	if (cap < 8)
		return;
	if (!result_mp || schema_exc_read(result_mp, len, &exc, NULL) != 0) {
		snprintf(buf, cap, "Exception()");
		return;
	}
	int n = snprintf(buf, cap, "%s(", exc.type);
	size_t off = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
	msgpack_zone zone;
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object args;
	if (exc.args_mp && msgpack_zone_init(&zone, 256)) {
		if (schema_unpack(exc.args_mp, exc.args_len, &lim, "exc", &zone, &args, NULL) == 0) {
			if (args.type != MSGPACK_OBJECT_ARRAY)
				repr_append(&args, buf, cap, &off);
			for (uint32_t i = 0; args.type == MSGPACK_OBJECT_ARRAY &&
					     i < args.via.array.size; i++) {
				if (i && off + 2 < cap)
					off += (size_t)snprintf(buf + off, cap - off, ", ");
				repr_append(&args.via.array.ptr[i], buf, cap, &off);
			}
		}
		msgpack_zone_destroy(&zone);
	}
	if (off + 1 < cap)
		snprintf(buf + off, cap - off, ")");
	schema_exc_release(&exc);
}
