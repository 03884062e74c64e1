/* worker/canvas.c - what a warren worker does for canvas, as Celery 5.2's
 * worker does it (celery/app/trace.py build_tracer, backends/base.py
 * mark_as_failure and chord_error_from_stack, backends/redis.py
 * on_chord_part_return): callbacks, the next link of a chain, errbacks,
 * failure propagation down a chain, and the chord join. Loop thread only,
 * except the celery.map/celery.starmap builtins at the bottom, which run in
 * the pool like any task.
 *
 * Order of operations for one finished task, and why:
 *  1. SUCCESS only, before its result is stored: the callbacks (link) are
 *     sent with the result as their first argument, then the next link of
 *     the chain (embed.chain popped from the end, the rest carried along).
 *     Celery sends them before storing so `children` is complete when the
 *     result appears; a client that sees the result may rely on the next
 *     step having been sent.
 *     What they send is recorded as the task's `children` (see "children"
 *     below), stored with its result as Celery's trail does.
 *  2. The result is stored (results.c finish()).
 *  3. After the store (canvas_on_final): a chord header part is added to
 *     the Redis join, and the part that completes the count fires the body
 *     (or fails it with ChordError); a FAILURE/REVOKED is stored under the
 *     id of every remaining step of the chain (so whoever waits on the last
 *     one is released) and counted for a chord a remaining step belongs to;
 *     errbacks run for a FAILURE.
 *  4. Every message sent in 1 and 3 is confirmed by the broker (we wait for
 *     the confirms) before the task's own message is acked (results.c,
 *     acks_late). A worker killed anywhere before the ack gets the task
 *     redelivered and run again, so nothing is lost; what it sent before
 *     dying may be sent twice (as in Celery). The chord join guards its own
 *     count against that: a redelivered header part is added only if the
 *     join holds no part of that task id (backend_chord_add), and the join
 *     keys are deleted right after the body's publish is confirmed, so a
 *     redelivery after that finds no chord (.s is gone) and fires nothing.
 *     The one remaining window is a kill between the body's confirm and the
 *     DEL (a few hundred microseconds): the redelivered part then fires
 *     the body again, with the same body task id.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"

/* Bits 63 (rpc backend), 61 (events) and 60 (control) are taken. */
#define CANVAS_COOKIE_TAG (UINT64_C(1) << 59)
#define CANVAS_CONFIRM_MS 30000
#define TRAIL_MAX_DEPTH 32 /* nesting, as schemas' canvas allows */

struct canvas {
	backend_chord *chord;   /* opened on the first chord part */
	bool chord_refused;     /* the backend cannot join: said once */
	uint64_t seq;
	size_t refused;         /* publishes the broker did not take, since the last flush */
	char reason[256];
};

static struct canvas *state(loop *l)
{
	if (!l->canvas)
		l->canvas = calloc(1, sizeof *l->canvas);
	return l->canvas;
}

void canvas_free(loop *l)
{
	if (!l->canvas)
		return;
	backend_chord_free(l->canvas->chord);
	free(l->canvas);
	l->canvas = NULL;
}

bool canvas_outcome(loop *l, uint64_t cookie, broker_outcome o, const char *reason)
{
	uint64_t others = BACKEND_COOKIE_TAG | (UINT64_C(1) << 61) | (UINT64_C(1) << 60);
	if (!(cookie & CANVAS_COOKIE_TAG) || (cookie & others) || !l->canvas)
		return false;
	if (o != BROKER_CONFIRMED) {
		l->canvas->refused++;
		snprintf(l->canvas->reason, sizeof l->canvas->reason, "%s", reason ? reason : "?");
	}
	return true;
}

/* ---- publishing ---------------------------------------------------------------- */

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Celery's router: options.queue, else task_routes, else the default queue,
 * through the default exchange (direct routing by queue name). */
static void route(const loop *l, const char *task, const char *queue, const char **exchange,
		  const char **key)
{
	*exchange = "";
	const config_route *r = !queue && l->s->cfg ? config_route_task(l->s->cfg, task) : NULL;
	if (queue) {
		*key = queue;
	} else if (r && r->queue) {
		*key = r->queue;
	} else if (r && r->exchange) {
		*exchange = r->exchange;
		*key = r->routing_key ? r->routing_key : "";
	} else {
		*key = l->s->cfg && l->s->cfg->task_default_queue ? l->s->cfg->task_default_queue
								    : "celery";
	}
}

static int set_times(schema_task_msg *msg, const schema_canvas_route *rt, warren_error *err)
{
	char iso[40], ms[32];
	double now = wall_now();
	if (rt->countdown > 0) {
		loop_format_iso8601(now + rt->countdown, iso);
		if (!(msg->eta = schema_task_msg_strdup(msg, iso)))
			return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	}
	if (rt->expires > 0) {
		loop_format_iso8601(now + rt->expires, iso);
		snprintf(ms, sizeof ms, "%lld", (long long)llround(rt->expires * 1000));
		if (!(msg->expires = schema_task_msg_strdup(msg, iso)) ||
		    !(msg->props.expiration = schema_task_msg_strdup(msg, ms)))
			return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	}
	return 0;
}

static int publish(void *arg, schema_task_msg *msg, const schema_canvas_route *rt,
		   warren_error *err)
{
	loop *l = arg;
	struct canvas *cv = state(l);
	if (!cv)
		return warren_error_set(err, WARREN_ENOMEM, "canvas: out of memory");
	msgpack_sbuffer hb, bb;
	msgpack_sbuffer_init(&hb);
	msgpack_sbuffer_init(&bb);
	schema_task_props sp;
	int rc = set_times(msg, rt, err);
	if (!rc)
		rc = schema_task_encode(msg, &hb, &bb, &sp, err);
	if (rc)
		goto out_buffers;
	broker_props bp = {.content_type = sp.content_type, .content_encoding = sp.content_encoding,
			   .correlation_id = sp.correlation_id, .reply_to = sp.reply_to,
			   .expiration = sp.expiration, .delivery_mode = sp.delivery_mode,
			   .priority = sp.has_priority ? sp.priority : BROKER_UNSET,
			   .headers = hb.data, .headers_len = hb.size};
	const char *exchange, *key;
	route(l, msg->task, rt->queue, &exchange, &key);
	cv->seq = (cv->seq + 1) & (CANVAS_COOKIE_TAG - 1);
	uint64_t cookie = CANVAS_COOKIE_TAG | cv->seq;
	if (rt->countdown > 0)
		rc = broker_publish_delayed(l->conn, exchange, key,
					    (int64_t)ceil(rt->countdown * 1000), &bp, bb.data,
					    bb.size, cookie, err);
	else
		rc = broker_publish(l->conn, exchange, key, &bp, bb.data, bb.size, cookie, err);
	if (!rc) {
		log_fields f = {msg->id, msg->task, NULL, -1};
		log_at(CONFIG_LOG_DEBUG, &f, "canvas: sent %s[%s] to '%s'", msg->task, msg->id, key);
	}
out_buffers:
	msgpack_sbuffer_destroy(&hb);
	msgpack_sbuffer_destroy(&bb);
	return rc;
}

static int chord_size(void *arg, const char *group_id, int64_t size, warren_error *err);

static void env_init(loop *l, schema_canvas_env *env)
{
	*env = (schema_canvas_env){.publish = publish, .arg = l,
				   .chord_size = backend_chord_supported(l->s->result_backend)
							 ? chord_size : NULL};
}

/* Waits for the broker's verdict on everything sent so far; `what` names
 * the work in the log line when something was refused. */
static void flush(loop *l, const schema_task_msg *tm, const char *what)
{
	struct canvas *cv = l->canvas;
	if (!cv)
		return;
	warren_error err = {0};
	int rc = broker_publish_flush(l->conn, CANVAS_CONFIRM_MS, &err);
	log_fields f = {tm->id, tm->task, NULL, -1};
	if (rc)
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: %s: confirms: %s", tm->task, tm->id, what,
		       err.msg);
	else if (cv->refused)
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: %s: %zu message(s) refused: %s",
		       tm->task, tm->id, what, cv->refused, cv->reason);
	cv->refused = 0;
}

/* ---- children: what a task sent, as Celery records it -------------------------------
 * Celery's worker sends callbacks and the next chain link with the task's
 * request on the stack, so each apply_async made there appends its result
 * to request.children (app/base.py send_task, canvas.py group.apply_async:
 * Task.add_trail), and the store writes them as `children`, each as
 * result.as_tuple() (backends/base.py current_task_children):
 * AsyncResult [[id, parent], nil], GroupResult [[id, parent], [results]].
 * What one apply_async appends (its "trail", celery/canvas.py 5.2):
 *  - a task: a new AsyncResult(id), no parent;
 *  - a group: a new GroupResult(gid, [each member frozen]), members of
 *    nested groups unrolled, no parent; a group of one member whose frozen
 *    result is a GroupResult appends that one instead;
 *  - a chain: what its first step appends (chain.run applies only it);
 *  - a chord: its header's GroupResult (chord.run calls header(...)), or
 *    its body's trail when the header is empty (body.delay([])).
 * A frozen member (freeze()) is the same for a task and a group; a chain
 * gives its last step's result with parents back to its first step
 * (prepare_steps: each step's result gets the one before it as parent,
 * unless it has one; after a chord the chord's root-most node takes that
 * place); a chord gives its body's result, whose root-most node gets the
 * header GroupResult as parent (chord.freeze).
 * The ids must be known before sending, so the signature is frozen first
 * (schema_canvas_freeze), with the ids freeze leaves to apply time, or sets
 * otherwise than Celery, pinned here: a chord's header id (always new, as on
 * a Celery worker, where chord.from_dict keeps the header's tasks and drops
 * the group's options, so header() gets a fresh uuid), unless
 * options.header_id carries one already (a chord warren made from
 * `group | step`); the id of a chord body that is a chain (the chain's
 * options.task_id, so apply gives its last step the id freeze gave); and
 * the rule that a task keeps an id it has (pin_last_ids). */

typedef struct rnode {
	const char *id;
	struct rnode *parent;
	struct rnode **results; /* GroupResult: its results; NULL: AsyncResult */
	size_t n;
} rnode;

typedef struct trail {
	rnode **v;
	size_t n, cap;
} trail;

static rnode *rnode_new(msgpack_zone *z, const char *id, bool group, size_t n)
{
	rnode *r = id ? msgpack_zone_malloc(z, sizeof *r) : NULL;
	if (!r)
		return NULL;
	*r = (rnode){.id = id, .n = n};
	if (group && !(r->results = msgpack_zone_malloc(z, (n ? n : 1) * sizeof *r->results)))
		return NULL;
	return r;
}

static rnode *root_of(rnode *r)
{
	while (r->parent)
		r = r->parent;
	return r;
}

static int set_str_opt(schema_signature *sig, const char *key, const char *val,
		       msgpack_zone *z)
{
	msgpack_object v = schema_canvas_str(z, val);
	if (v.type == MSGPACK_OBJECT_NIL)
		return WARREN_ENOMEM;
	return schema_canvas_opt_set(sig, key, v, z, NULL);
}

/* The chord's header id: options.header_id, set to a new uuid if absent. */
static const char *header_id(schema_signature *sig, msgpack_zone *z)
{
	const char *gid = schema_canvas_opt_str(sig, "header_id", z);
	char fresh[37];
	if (gid || schema_uuid4(fresh, NULL) != 0 || set_str_opt(sig, "header_id", fresh, z))
		return gid;
	return schema_canvas_opt_str(sig, "header_id", z);
}

/* The signature whose result a freeze returns last: a chain's last step, a
 * chord's body, down to a task or a group. */
static schema_signature *last_result_sig(schema_signature *sig, unsigned depth)
{
	for (; depth <= TRAIL_MAX_DEPTH; depth++) {
		schema_canvas_kind k = schema_canvas_kind_of(sig);
		if (k == SCHEMA_CANVAS_CHAIN && sig->n_tasks)
			sig = &sig->tasks[sig->n_tasks - 1];
		else if (k == SCHEMA_CANVAS_CHORD && sig->body)
			sig = sig->body;
		else
			return k == SCHEMA_CANVAS_TASK ? sig : NULL;
	}
	return NULL;
}

/* Before freezing, the ids Celery's freeze(_id) keeps: a task that has an
 * id keeps it, whatever id its chain or chord passes down. So a chord's own
 * task_id goes only to the last task of its body that has none
 * (chord.freeze(_id) -> body.freeze(_id)), and a chain's own task_id only to
 * a last task that has none: a chain whose last task has an id takes that
 * as its own (schemas' freeze and apply would give the chain's to it). */
static int pin_last_ids(schema_signature *sig, msgpack_zone *z, unsigned depth)
{
	if (depth > TRAIL_MAX_DEPTH)
		return WARREN_ELIMIT;
	int rc = 0;
	schema_canvas_kind k = schema_canvas_kind_of(sig);
	const char *own = k == SCHEMA_CANVAS_CHORD || k == SCHEMA_CANVAS_CHAIN
				  ? schema_canvas_opt_str(sig, "task_id", z) : NULL;
	if (own && k == SCHEMA_CANVAS_CHORD && sig->body) {
		schema_signature *last = last_result_sig(sig->body, depth + 1);
		if (last && !schema_map_get(&last->options, "task_id"))
			rc = set_str_opt(last, "task_id", own, z);
	} else if (own) {
		schema_signature *last = last_result_sig(sig, depth);
		const char *kept = last ? schema_canvas_opt_str(last, "task_id", z) : NULL;
		if (kept && strcmp(kept, own) != 0)
			rc = set_str_opt(sig, "task_id", kept, z);
	}
	for (size_t i = 0; !rc && i < sig->n_tasks; i++)
		rc = pin_last_ids(&sig->tasks[i], z, depth + 1);
	if (!rc && sig->body)
		rc = pin_last_ids(sig->body, z, depth + 1);
	return rc;
}

static rnode *frozen(schema_signature *sig, msgpack_zone *z, unsigned depth);

/* Appends the frozen results of g's members, nested groups unrolled. */
static int freeze_members(schema_signature *g, msgpack_zone *z, unsigned depth, rnode ***v,
			  size_t *n, size_t *cap)
{
	if (depth > TRAIL_MAX_DEPTH)
		return WARREN_ELIMIT;
	for (size_t i = 0; i < g->n_tasks; i++) {
		schema_signature *m = &g->tasks[i];
		if (schema_canvas_kind_of(m) == SCHEMA_CANVAS_GROUP) {
			int rc = freeze_members(m, z, depth + 1, v, n, cap);
			if (rc)
				return rc;
			continue;
		}
		if (*n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 8;
			rnode **grown = msgpack_zone_malloc(z, ncap * sizeof *grown);
			if (!grown)
				return WARREN_ENOMEM;
			if (*n)
				memcpy(grown, *v, *n * sizeof *grown);
			*v = grown;
			*cap = ncap;
		}
		if (!((*v)[(*n)++] = frozen(m, z, depth + 1)))
			return WARREN_ENOMEM;
	}
	return 0;
}

/* GroupResult(gid, [members of g frozen]). */
static rnode *group_result(schema_signature *g, const char *gid, msgpack_zone *z,
			   unsigned depth)
{
	rnode **v = NULL;
	size_t n = 0, cap = 0;
	if (!gid || freeze_members(g, z, depth, &v, &n, &cap) != 0)
		return NULL;
	rnode *r = rnode_new(z, gid, true, n);
	if (r && n)
		memcpy(r->results, v, n * sizeof *v);
	return r;
}

/* What sig.freeze() returns, for a signature schema_canvas_freeze froze. */
static rnode *frozen(schema_signature *sig, msgpack_zone *z, unsigned depth)
{
	if (depth > TRAIL_MAX_DEPTH)
		return NULL;
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_GROUP:
		return group_result(sig, schema_canvas_opt_str(sig, "task_id", z), z, depth);
	case SCHEMA_CANVAS_CHAIN: {
		rnode *last = NULL, *later = NULL;
		for (size_t i = sig->n_tasks; i-- > 0;) {
			rnode *r = frozen(&sig->tasks[i], z, depth + 1);
			if (!r)
				return NULL;
			if (!last)
				last = r;
			if (later && !later->parent)
				later->parent = r;
			later = schema_canvas_kind_of(&sig->tasks[i]) == SCHEMA_CANVAS_CHORD
					? root_of(r) : r;
		}
		return last;
	}
	case SCHEMA_CANVAS_CHORD: {
		rnode *header = group_result(sig, header_id(sig, z), z, depth);
		rnode *body = header && sig->body ? frozen(sig->body, z, depth + 1) : NULL;
		if (body)
			root_of(body)->parent = header;
		return body;
	}
	case SCHEMA_CANVAS_TASK:
		break;
	}
	return rnode_new(z, schema_canvas_opt_str(sig, "task_id", z), false, 0);
}

/* After freezing: a chord body that is a chain gets its last step's id as
 * its own task_id, which apply then gives that step (instead of a new one). */
static int pin_body_chains(schema_signature *sig, msgpack_zone *z, unsigned depth)
{
	if (depth > TRAIL_MAX_DEPTH)
		return WARREN_ELIMIT;
	int rc = 0;
	if (schema_canvas_kind_of(sig) == SCHEMA_CANVAS_CHORD && sig->body &&
	    schema_canvas_kind_of(sig->body) == SCHEMA_CANVAS_CHAIN &&
	    !schema_map_get(&sig->body->options, "task_id")) {
		rnode *last = frozen(sig->body, z, depth + 1);
		rc = last ? set_str_opt(sig->body, "task_id", last->id, z) : WARREN_ENOMEM;
	}
	for (size_t i = 0; !rc && i < sig->n_tasks; i++)
		rc = pin_body_chains(&sig->tasks[i], z, depth + 1);
	if (!rc && sig->body)
		rc = pin_body_chains(sig->body, z, depth + 1);
	return rc;
}

/* What sig.apply_async() appends to the sender's children. */
static rnode *trail_of(schema_signature *sig, msgpack_zone *z, unsigned depth)
{
	if (depth > TRAIL_MAX_DEPTH)
		return NULL;
	switch (schema_canvas_kind_of(sig)) {
	case SCHEMA_CANVAS_GROUP: {
		rnode *g = group_result(sig, schema_canvas_opt_str(sig, "task_id", z), z, depth);
		if (g && g->n == 1 && g->results[0]->results)
			return g->results[0];
		return g;
	}
	case SCHEMA_CANVAS_CHAIN:
		return sig->n_tasks ? trail_of(&sig->tasks[0], z, depth + 1) : NULL;
	case SCHEMA_CANVAS_CHORD:
		if (sig->n_tasks == 0)
			return sig->body ? trail_of(sig->body, z, depth + 1) : NULL;
		return group_result(sig, header_id(sig, z), z, depth);
	case SCHEMA_CANVAS_TASK:
		break;
	}
	return rnode_new(z, schema_canvas_opt_str(sig, "task_id", z), false, 0);
}

/* Freezes sig (ids assigned as apply will use them) and returns its trail,
 * or NULL when that fails (sig is then sent anyway, unrecorded). */
static rnode *prepare_trail(schema_signature *sig, msgpack_zone *z)
{
	if (pin_last_ids(sig, z, 0) != 0 || schema_canvas_freeze(sig, z, NULL) != 0 ||
	    pin_body_chains(sig, z, 0) != 0)
		return NULL;
	return trail_of(sig, z, 0);
}

static void trail_add(trail *tr, rnode *r, msgpack_zone *z)
{
	if (tr->n == tr->cap) {
		size_t cap = tr->cap ? tr->cap * 2 : 4;
		rnode **v = msgpack_zone_malloc(z, cap * sizeof *v);
		if (!v)
			return;
		if (tr->n)
			memcpy(v, tr->v, tr->n * sizeof *v);
		tr->v = v;
		tr->cap = cap;
	}
	tr->v[tr->n++] = r;
}

/* r.as_tuple(): ((id, parent.as_tuple() or None), None | [results]). */
static int pack_rnode(msgpack_packer *pk, const rnode *r)
{
	size_t len = strlen(r->id);
	int rc = msgpack_pack_array(pk, 2) | msgpack_pack_array(pk, 2) |
		 msgpack_pack_str_with_body(pk, r->id, len);
	rc |= r->parent ? pack_rnode(pk, r->parent) : msgpack_pack_nil(pk);
	if (!r->results)
		return rc | msgpack_pack_nil(pk);
	rc |= msgpack_pack_array(pk, r->n);
	for (size_t i = 0; i < r->n; i++)
		rc |= pack_rnode(pk, r->results[i]);
	return rc;
}

/* Sets r's children to the list of tuples, in the order they were sent. */
static void set_children(schema_result *r, const trail *tr)
{
	if (!r || tr->n == 0)
		return;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int rc = msgpack_pack_array(&pk, tr->n);
	for (size_t i = 0; i < tr->n; i++)
		rc |= pack_rnode(&pk, tr->v[i]);
	if (rc == 0)
		schema_result_set_children(r, sb.data, sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
}

/* Sends sig; with tr, first freezes it and records its trail once sent. */
static void apply_logged(loop *l, const schema_task_msg *tm, schema_signature *sig,
			 const schema_canvas_call *call, const char *what, trail *tr)
{
	schema_canvas_env env;
	env_init(l, &env);
	warren_error err = {0};
	rnode *mine = tr ? prepare_trail(sig, tm->zone) : NULL;
	if (schema_canvas_apply(&env, sig, call, tm->zone, &err) != 0) {
		log_fields f = {tm->id, tm->task, NULL, -1};
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: %s '%s' could not be sent: %s", tm->task,
		       tm->id, what, sig->task, err.msg);
	} else if (mine) {
		trail_add(tr, mine, tm->zone);
	} else if (tr) {
		log_fields f = {tm->id, tm->task, NULL, -1};
		log_at(CONFIG_LOG_WARNING, &f, "Task %s[%s]: %s '%s' sent, not recorded in children",
		       tm->task, tm->id, what, sig->task);
	}
}

/* [value] in zone, the value unpacked from packed bytes (nil if none). */
static int one_arg(msgpack_zone *zone, const void *mp, size_t len, msgpack_object *out)
{
	msgpack_object *item = msgpack_zone_malloc(zone, sizeof *item);
	if (!item)
		return WARREN_ENOMEM;
	item->type = MSGPACK_OBJECT_NIL;
	schema_limits lim;
	schema_limits_default(&lim);
	if (mp && len && schema_unpack(mp, len, &lim, "result", zone, item, NULL) != 0)
		return WARREN_EDECODE;
	out->type = MSGPACK_OBJECT_ARRAY;
	out->via.array.ptr = item;
	out->via.array.size = 1;
	return 0;
}

/* ---- success: callbacks and the next link ---------------------------------------- */

/* More than one callback: plain ones go as one group, groups each on their
 * own (trace.py: "groups are called inline ... Issue #1936"). */
static void apply_callbacks(loop *l, schema_task_msg *tm, const schema_canvas_call *call,
			    trail *tr)
{
	if (tm->n_callbacks == 1) {
		apply_logged(l, tm, &tm->callbacks[0], call, "callback", tr);
		return;
	}
	schema_signature *plain = msgpack_zone_malloc(tm->zone, tm->n_callbacks * sizeof *plain);
	size_t n = 0;
	for (size_t i = 0; i < tm->n_callbacks; i++) {
		if (schema_canvas_kind_of(&tm->callbacks[i]) == SCHEMA_CANVAS_GROUP || !plain)
			apply_logged(l, tm, &tm->callbacks[i], call, "callback", tr);
		else
			plain[n++] = tm->callbacks[i];
	}
	if (n == 0)
		return;
	schema_signature group = {.task = "celery.group", .subtask_type = "group",
				  .tasks = plain, .n_tasks = n};
	group.args.type = MSGPACK_OBJECT_ARRAY;
	group.kwargs.type = MSGPACK_OBJECT_MAP;
	group.options.type = MSGPACK_OBJECT_MAP;
	apply_logged(l, tm, &group, call, "callbacks", tr);
}

void canvas_on_success(loop *l, loop_task *t, const void *result, size_t len, schema_result *r)
{
	schema_task_msg *tm = t->tm;
	if (tm->n_callbacks == 0 && tm->n_chain == 0)
		return;
	msgpack_object args;
	if (one_arg(tm->zone, result, len, &args) != 0) {
		log_fields f = {tm->id, tm->task, NULL, -1};
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: result unreadable: canvas not run",
		       tm->task, tm->id);
		return;
	}
	schema_canvas_call call = {.args = &args, .parent_id = tm->id,
				   .root_id = tm->root_id ? tm->root_id : tm->id};
	trail tr = {0};
	if (tm->n_callbacks)
		apply_callbacks(l, tm, &call, &tr);
	if (tm->n_chain) {
		call.chain = tm->chain;
		call.n_chain = tm->n_chain - 1;
		apply_logged(l, tm, &tm->chain[tm->n_chain - 1], &call, "chain link", &tr);
	}
	flush(l, tm, "canvas");
	set_children(r, &tr);
}

/* ---- chords ------------------------------------------------------------------------ */

static backend_chord *chord_handle(loop *l, const schema_task_msg *tm)
{
	struct canvas *cv = state(l);
	if (!cv)
		return NULL;
	if (cv->chord || cv->chord_refused)
		return cv->chord;
	backend_options o;
	backend_options_default(&o);
	o.result_expires = l->s->result_expires;
	warren_error err = {0};
	if (backend_chord_open(l->s->result_backend, &o, &cv->chord, &err) != 0) {
		cv->chord_refused = true;
		log_fields f = {tm->id, tm->task, NULL, -1};
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s] is a chord part: %s (the chord never joins)",
		       tm->task, tm->id, err.msg);
	}
	return cv->chord;
}

static int chord_size(void *arg, const char *group_id, int64_t size, warren_error *err)
{
	loop *l = arg;
	schema_task_msg dummy = {.task = "celery.chord", .id = group_id};
	backend_chord *ch = chord_handle(l, &dummy);
	if (!ch)
		return warren_error_set(err, WARREN_EINVAL, "chord: the result backend cannot join");
	return backend_chord_set_size(ch, group_id, size, err);
}

/* Stores FAILURE `exc` (a packed exc_* map) under id. */
static void store_exc(loop *l, const char *id, const schema_result *like)
{
	schema_result r;
	schema_result_init(&r);
	r.state = like->state;
	if (schema_result_set_value(&r, like->result_mp, like->result_len, NULL) == 0 &&
	    (!like->traceback || schema_result_set_traceback(&r, like->traceback, NULL) == 0))
		loop_store(l, id, NULL, NULL, &r);
	schema_result_release(&r);
}

static void run_errbacks(loop *l, schema_task_msg *tm, schema_signature *ebs, size_t n,
			 const char *failed_id, const char *root_id);
static void propagate(loop *l, schema_task_msg *tm, schema_signature *chain, size_t n,
		      const schema_result *r, bool redelivered);

/* backends/base.py chord_error_from_stack: the body fails with ChordError,
 * its errbacks run (old style, with the body's id). */
static void chord_error(loop *l, schema_task_msg *tm, schema_signature *body,
			const backend_chord_result *bad)
{
	const char *body_id = schema_canvas_opt_str(body, "task_id", tm->zone);
	char exc[900], msg[1100];
	schema_canvas_exc_repr(bad->result_mp, bad->result_len, exc, sizeof exc);
	snprintf(msg, sizeof msg, "Dependency %s raised %s", bad->task_id, exc);
	log_fields f = {body_id, body->task, "FAILURE", -1};
	log_at(CONFIG_LOG_ERROR, &f, "Chord callback %s[%s] raised ChordError: %s", body->task,
	       body_id ? body_id : "?", msg);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "ChordError", "celery.exceptions", msg,
				    NULL);
	if (body_id)
		loop_store(l, body_id, NULL, NULL, &r);
	schema_signature *ebs = NULL, *rest = NULL;
	size_t n_ebs = 0, n_rest = 0;
	/* Beyond Celery: a chain that goes on after the chord is failed too,
	 * so a client waiting on its last step is not left hanging. */
	if (schema_canvas_opt_sigs(body, "chain", tm->zone, &rest, &n_rest, NULL) == 0 && n_rest)
		propagate(l, tm, rest, n_rest, &r, false);
	if (body_id &&
	    schema_canvas_opt_sigs(body, "link_error", tm->zone, &ebs, &n_ebs, NULL) == 0 && n_ebs)
		run_errbacks(l, tm, ebs, n_ebs, body_id, schema_canvas_opt_str(body, "root_id",
									      tm->zone));
	schema_result_release(&r);
}

/* body.delay(results): the values in index order as the first argument. */
static void fire_body(loop *l, schema_task_msg *tm, schema_signature *body,
		      const backend_chord_result *parts, size_t n)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int bad = msgpack_pack_array(&pk, 1) || msgpack_pack_array(&pk, n);
	for (size_t i = 0; !bad && i < n; i++)
		bad = msgpack_sbuffer_write(&sb, parts[i].result_mp, parts[i].result_len);
	msgpack_object args;
	schema_limits lim;
	schema_limits_default(&lim);
	if (!bad && schema_unpack(sb.data, sb.size, &lim, "chord results", tm->zone, &args,
				  NULL) == 0) {
		schema_canvas_call call = {.args = &args};
		apply_logged(l, tm, body, &call, "chord body", NULL);
	}
	msgpack_sbuffer_destroy(&sb);
}

static void join(loop *l, schema_task_msg *tm, backend_chord *ch, const char *gid,
		 schema_signature *body)
{
	backend_chord_result *parts = NULL;
	size_t n = 0;
	warren_error err = {0};
	log_fields f = {tm->id, tm->task, NULL, -1};
	if (backend_chord_read(ch, gid, &parts, &n, &err) != 0) {
		log_at(CONFIG_LOG_ERROR, &f, "Chord %s: join failed: %s", gid, err.msg);
		return;
	}
	const backend_chord_result *failed = NULL;
	for (size_t i = 0; !failed && i < n; i++)
		if (schema_state_is_propagate(parts[i].state))
			failed = &parts[i];
	if (failed)
		chord_error(l, tm, body, failed);
	else
		fire_body(l, tm, body, parts, n);
	flush(l, tm, "chord body");
	log_at(CONFIG_LOG_INFO, &f, "Chord %s joined: %zu part(s), body %s %s", gid, n, body->task,
	       failed ? "failed" : "sent");
	if (backend_chord_forget(ch, gid, &err) != 0)
		log_at(CONFIG_LOG_ERROR, &f, "Chord %s: %s", gid, err.msg);
	backend_chord_results_free(parts, n);
}

static void chord_part(loop *l, schema_task_msg *tm, const backend_chord_part *p,
		       schema_signature *body)
{
	backend_chord *ch = chord_handle(l, tm);
	if (!ch || !body)
		return;
	bool complete = false;
	warren_error err = {0};
	if (backend_chord_add(ch, p, &complete, &err) != 0) {
		log_fields f = {tm->id, tm->task, NULL, -1};
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: chord %s part not counted: %s", tm->task,
		       tm->id, p->group_id, err.msg);
		return;
	}
	if (complete)
		join(l, tm, ch, p->group_id, body);
}

/* ---- failure: the rest of the chain, errbacks ---------------------------------------- */

/* mark_as_failure: every remaining step stores the failure; a step that is
 * a chord part counts it there. */
static void propagate(loop *l, schema_task_msg *tm, schema_signature *chain, size_t n,
		      const schema_result *r, bool redelivered)
{
	for (size_t i = 0; i < n; i++) {
		schema_signature *s = &chain[i];
		const char *id = schema_canvas_opt_str(s, "task_id", tm->zone);
		if (!id)
			continue;
		store_exc(l, id, r);
		schema_signature *body = NULL;
		size_t nb = 0;
		const char *gid = schema_canvas_opt_str(s, "group_id", tm->zone);
		if (!gid || schema_canvas_opt_sigs(s, "chord", tm->zone, &body, &nb, NULL) || !nb)
			continue;
		const msgpack_object *gi = schema_map_get(&s->options, "group_index");
		backend_chord_part p = {.group_id = gid, .task_id = id, .state = r->state,
					.result_mp = r->result_mp, .result_len = r->result_len,
					.redelivered = redelivered};
		if (gi && (gi->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
			   gi->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)) {
			p.has_index = true;
			p.index = gi->via.i64;
		}
		chord_part(l, tm, &p, body);
	}
}

/* Old-style errbacks: errback.apply_async((failed_id,)). */
static void run_errbacks(loop *l, schema_task_msg *tm, schema_signature *ebs, size_t n,
			 const char *failed_id, const char *root_id)
{
	msgpack_object id = schema_canvas_str(tm->zone, failed_id);
	msgpack_object args = {.type = MSGPACK_OBJECT_ARRAY};
	args.via.array.ptr = msgpack_zone_malloc(tm->zone, sizeof id);
	if (id.type == MSGPACK_OBJECT_NIL || !args.via.array.ptr)
		return;
	args.via.array.ptr[0] = id;
	args.via.array.size = 1;
	schema_canvas_call call = {.args = &args, .parent_id = failed_id,
				   .root_id = root_id ? root_id : failed_id};
	for (size_t i = 0; i < n; i++)
		apply_logged(l, tm, &ebs[i], &call, "errback", NULL);
}

void canvas_on_final(loop *l, loop_task *t, const schema_result *r)
{
	schema_task_msg *tm = t->tm;
	bool failed = schema_state_is_propagate(r->state);
	bool redelivered = t->msg && t->msg->redelivered;
	if (tm->chord && tm->group) {
		backend_chord_part p = {.group_id = tm->group, .task_id = tm->id,
					.has_index = tm->has_group_index, .index = tm->group_index,
					.state = r->state, .result_mp = r->result_mp,
					.result_len = r->result_len, .redelivered = redelivered};
		chord_part(l, tm, &p, tm->chord);
	}
	if (!failed)
		return;
	if (tm->n_chain)
		propagate(l, tm, tm->chain, tm->n_chain, r, redelivered);
	if (tm->n_errbacks && r->state == SCHEMA_STATE_FAILURE)
		run_errbacks(l, tm, tm->errbacks, tm->n_errbacks, tm->id, tm->root_id);
	flush(l, tm, "errbacks");
}

/* ---- builtins: celery.map, celery.starmap ----------------------------------------------
 * Celery's xmap/xstarmap (app/builtins.py): one task that runs another task
 * inline over a list, `[task(item) for item in it]` / `[task(*item) ...]`.
 * The registry is filled before any thread or child starts and read-only
 * after, so the handlers may read it through this pointer from any thread. */

static const registry *builtin_registry;

static int map_fail(task_ctx *ctx, const char *type, const char *msg)
{
	return warren_task_fail(&ctx->base, type, "%s", msg);
}

/* task and it, from kwargs {task, it} or args [task, it]. */
static int map_inputs(task_ctx *ctx, const msgpack_object **task, const msgpack_object **it)
{
	*task = schema_map_get(&ctx->kwargs, "task");
	*it = schema_map_get(&ctx->kwargs, "it");
	const msgpack_object *a = &ctx->args;
	if (!*task && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= 1)
		*task = &a->via.array.ptr[0];
	if (!*it && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= 2)
		*it = &a->via.array.ptr[1];
	if (!*task || (*task)->type != MSGPACK_OBJECT_MAP || !*it ||
	    (*it)->type != MSGPACK_OBJECT_ARRAY)
		return map_fail(ctx, "TypeError", "expected task (a signature) and it (a list)");
	return 0;
}

/* Runs entry once on args into ctx's result; copies a failure to ctx. */
static int map_one(task_ctx *ctx, const registry_entry *entry, const msgpack_object *args)
{
	task_ctx sub;
	task_ctx_init(&sub);
	sub.id = ctx->id;
	sub.headers = ctx->headers;
	sub.args = *args;
	sub.soft_deadline_ns = ctx->soft_deadline_ns;
	int rc = 0;
	if (task_run(&sub, entry) != TASK_SUCCESS) {
		char type[2 * TASK_EXC_TYPE_MAX + 2];
		bool qualified = sub.exc_module[0] && strcmp(sub.exc_module, "builtins") != 0;
		snprintf(type, sizeof type, "%s%s%s", qualified ? sub.exc_module : "",
			 qualified ? "." : "", sub.exc_type);
		rc = map_fail(ctx, type, sub.exc_message);
	} else {
		size_t len;
		const char *bytes = task_result_bytes(&sub, &len);
		msgpack_sbuffer_write(&ctx->result, bytes, len);
	}
	task_ctx_release(&sub);
	return rc;
}

static int run_map(warren_task *t, bool star)
{
	task_ctx *ctx = (task_ctx *)t;
	const msgpack_object *task, *it;
	if (map_inputs(ctx, &task, &it))
		return -1;
	const msgpack_object *name = schema_map_get(task, "task");
	const registry_entry *entry = name && name->type == MSGPACK_OBJECT_STR
		? registry_lookup(builtin_registry, name->via.str.ptr, name->via.str.size) : NULL;
	if (!entry)
		return map_fail(ctx, "celery.exceptions.NotRegistered", "task of map not registered");
	msgpack_pack_array(&ctx->packer, it->via.array.size);
	for (uint32_t i = 0; i < it->via.array.size; i++) {
		msgpack_object *item = &it->via.array.ptr[i];
		msgpack_object one = {.type = MSGPACK_OBJECT_ARRAY};
		one.via.array.ptr = item;
		one.via.array.size = 1;
		if (star && item->type != MSGPACK_OBJECT_ARRAY)
			return map_fail(ctx, "TypeError", "starmap: an item is not a list");
		if (map_one(ctx, entry, star ? item : &one))
			return -1;
	}
	return 0;
}

static int builtin_map(warren_task *t)
{
	return run_map(t, false);
}

static int builtin_starmap(warren_task *t)
{
	return run_map(t, true);
}

int canvas_register_builtins(registry *reg, warren_error *err)
{
	static const warren_task_options opts = {0};
	builtin_registry = reg;
	int rc = 0;
	if (!registry_lookup(reg, "celery.map", 10))
		rc = registry_add(reg, "celery.map", builtin_map, &opts, err);
	if (!rc && !registry_lookup(reg, "celery.starmap", 14))
		rc = registry_add(reg, "celery.starmap", builtin_starmap, &opts, err);
	return rc;
}
