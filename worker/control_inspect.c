/* worker/control_inspect.c - remote control's read-only commands (Celery's
 * worker/control.py `inspect_command`s): ping, stats, active, reserved,
 * scheduled, registered, active_queues, revoked, query_task, conf, clock,
 * report and hello (mingle). Shapes come from schemas/control.c's pack
 * helpers, so they match what `celery inspect` prints for a Celery worker.
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "worker.h"

static int cmd_ping(loop *l, const schema_control_request *req, msgpack_packer *pk,
		    warren_error *err)
{
	(void)l, (void)req;
	return schema_control_pack_ok(pk, "pong", err);
}

static int cmd_clock(loop *l, const schema_control_request *req, msgpack_packer *pk,
		     warren_error *err)
{
	(void)req, (void)err;
	msgpack_pack_map(pk, 1);
	msgpack_pack_str_with_body(pk, "clock", 5);
	return msgpack_pack_uint64(pk, l->control->clock);
}

static int cmd_report(loop *l, const schema_control_request *req, msgpack_packer *pk,
		      warren_error *err)
{
	(void)req;
	char text[600];
	snprintf(text, sizeof text,
		 "software -> warren:%s (celery-compatible, protocol 2)\nnode -> %s\n"
		 "broker -> %s\nresults -> %s\n",
		 WARREN_VERSION, l->s->hostname, broker_conn_url(l->conn),
		 l->s->result_backend ? l->s->result_backend : "disabled");
	return schema_control_pack_ok(pk, text, err);
}

/* ---- tasks: active, reserved, query_task ------------------------------------------
 * Celery's split (worker/state.py): a request is active once the pool has
 * accepted it, i.e. it runs (task_accepted, with time_start and the pool
 * process's pid), and reserved from its receipt until then. A job waits in
 * the pool while every thread or child is busy (prefetch > concurrency), so
 * "in the pool" is not "active": each entry of the active list asks the pool
 * whether its job started (pool_job_started). */

/* When and where an entry's job started; false while it waits in the pool. */
typedef struct task_start {
	double time_start; /* unix seconds */
	int64_t pid;
} task_start;

static bool started(loop *l, const control_active *a, task_start *out)
{
	int64_t start_ns, pid;
	if (!l->pool || !pool_job_started(l->pool, a->seq, &start_ns, &pid))
		return false;
	double ago = (double)(task_monotonic_ns() - start_ns) * 1e-9;
	*out = (task_start){.time_start = control_wall_now() - ago, .pid = pid};
	return true;
}

/* One task's Request.info(); args/kwargs are packed into bufs[0..1], which
 * must outlive the info. safe: argsrepr/kwargsrepr strings instead. st: its
 * start, NULL while reserved. */
static void task_info(const loop *l, const loop_task *t, const task_start *st, bool safe,
		      msgpack_sbuffer bufs[2], schema_control_task_info *out)
{
	const schema_task_msg *tm = t->tm;
	msgpack_packer pk;
	const msgpack_object *objs[2] = {&tm->args, &tm->kwargs};
	for (int i = 0; i < 2; i++) {
		msgpack_sbuffer_init(&bufs[i]);
		msgpack_packer_init(&pk, &bufs[i], msgpack_sbuffer_write);
		if (safe) {
			char repr[SCHEMA_REPR_MAX + 4];
			size_t n = schema_repr(objs[i], i == 0, repr, sizeof repr);
			msgpack_pack_str_with_body(&pk, repr, n < sizeof repr ? n : strlen(repr));
		} else if (objs[i]->type == MSGPACK_OBJECT_NIL && i == 0) {
			msgpack_pack_array(&pk, 0);
		} else if (objs[i]->type == MSGPACK_OBJECT_NIL) {
			msgpack_pack_map(&pk, 0);
		} else {
			msgpack_pack_object(&pk, *objs[i]);
		}
	}
	*out = (schema_control_task_info){
		.id = tm->id, .name = tm->task,
		.args_mp = bufs[0].data, .args_len = bufs[0].size,
		.kwargs_mp = bufs[1].data, .kwargs_len = bufs[1].size,
		.hostname = l->s->hostname,
		.has_time_start = st != NULL, .time_start = st ? st->time_start : 0,
		.acknowledged = t->acked,
		.exchange = t->msg->exchange ? t->msg->exchange : "",
		.routing_key = t->msg->routing_key ? t->msg->routing_key : "",
		.has_priority = t->msg->priority != BROKER_UNSET,
		.priority = t->msg->priority,
		.redelivered = t->msg->redelivered,
		.has_worker_pid = st != NULL,
		.worker_pid = st ? st->pid : 0,
	};
}

typedef struct task_list {
	schema_control_task_info *infos;
	msgpack_sbuffer *bufs;
	size_t n, cap;
} task_list;

static bool list_add(const loop *l, task_list *tl, const loop_task *t, const task_start *st,
		     bool safe)
{
	if (tl->n == tl->cap) {
		size_t cap = tl->cap ? tl->cap * 2 : 16;
		schema_control_task_info *i = realloc(tl->infos, cap * sizeof *i);
		if (!i)
			return false;
		tl->infos = i;
		msgpack_sbuffer *b = realloc(tl->bufs, cap * 2 * sizeof *b);
		if (!b)
			return false;
		tl->bufs = b;
		tl->cap = cap;
	}
	task_info(l, t, st, safe, &tl->bufs[2 * tl->n], &tl->infos[tl->n]);
	tl->n++;
	return true;
}

static void list_release(task_list *tl)
{
	for (size_t i = 0; i < 2 * tl->n; i++)
		msgpack_sbuffer_destroy(&tl->bufs[i]);
	free(tl->bufs);
	free(tl->infos);
}

static int pack_list(task_list *tl, msgpack_packer *pk, bool ok, warren_error *err)
{
	int rc = ok ? schema_control_pack_tasks(pk, tl->infos, tl->n, err)
		    : warren_error_set(err, WARREN_ENOMEM, "out of memory");
	list_release(tl);
	return rc;
}

static int cmd_active(loop *l, const schema_control_request *req, msgpack_packer *pk,
		      warren_error *err)
{
	bool safe = control_arg_bool(req, "safe", false), ok = true;
	task_list tl = {0};
	const control *c = l->control;
	task_start st;
	for (size_t i = 0; i < c->n_active && ok; i++)
		if (started(l, &c->active[i], &st))
			ok = list_add(l, &tl, c->active[i].t, &st, safe);
	return pack_list(&tl, pk, ok, err);
}

/* Reserved: received and not running yet, waiting in the pool for a thread
 * or child, or for a rate-limit token. */
static int cmd_reserved(loop *l, const schema_control_request *req, msgpack_packer *pk,
			warren_error *err)
{
	(void)req;
	bool ok = true;
	task_list tl = {0};
	const control *c = l->control;
	task_start st;
	for (size_t i = 0; i < c->n_active && ok; i++)
		if (!started(l, &c->active[i], &st))
			ok = list_add(l, &tl, c->active[i].t, NULL, false);
	for (const loop_limiter *q = l->limiters; q && ok; q = q->next)
		for (const loop_task *t = q->head; t && ok; t = t->next)
			ok = list_add(l, &tl, t, NULL, false);
	return pack_list(&tl, pk, ok, err);
}

/* ETA tasks are parked in the broker (delayed delivery), not held here. */
static int cmd_scheduled(loop *l, const schema_control_request *req, msgpack_packer *pk,
			 warren_error *err)
{
	(void)l, (void)req, (void)err;
	return msgpack_pack_array(pk, 0);
}

static bool id_wanted(const schema_control_request *req, const char *id)
{
	const msgpack_object *o = schema_control_arg(req, "ids");
	if (!o)
		return false;
	const msgpack_object *items = o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.ptr : o;
	uint32_t n = o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 1;
	for (uint32_t i = 0; i < n; i++)
		if (items[i].type == MSGPACK_OBJECT_STR && items[i].via.str.size == strlen(id) &&
		    !memcmp(items[i].via.str.ptr, id, strlen(id)))
			return true;
	return false;
}

/* {id: [state, info]} for the ids that are active or reserved here. */
static int cmd_query_task(loop *l, const schema_control_request *req, msgpack_packer *pk,
			  warren_error *err)
{
	task_list tl = {0};
	const char *states[256];
	bool ok = true;
	const control *c = l->control;
	task_start st;
	for (size_t i = 0; i < c->n_active && ok && tl.n < 256; i++) {
		if (!id_wanted(req, c->active[i].t->tm->id))
			continue;
		bool running = started(l, &c->active[i], &st);
		if ((ok = list_add(l, &tl, c->active[i].t, running ? &st : NULL, false)))
			states[tl.n - 1] = running ? "active" : "reserved";
	}
	for (const loop_limiter *q = l->limiters; q && ok; q = q->next)
		for (const loop_task *t = q->head; t && ok && tl.n < 256; t = t->next)
			if (id_wanted(req, t->tm->id) && (ok = list_add(l, &tl, t, NULL, false)))
				states[tl.n - 1] = "reserved";
	int rc = ok ? 0 : warren_error_set(err, WARREN_ENOMEM, "out of memory");
	if (rc == 0) {
		msgpack_pack_map(pk, (uint32_t)tl.n);
		for (size_t i = 0; i < tl.n && rc == 0; i++) {
			msgpack_pack_str_with_body(pk, tl.infos[i].id, strlen(tl.infos[i].id));
			msgpack_pack_array(pk, 2);
			msgpack_pack_str_with_body(pk, states[i], strlen(states[i]));
			rc = schema_control_pack_tasks(pk, &tl.infos[i], 1, err);
		}
	}
	list_release(&tl);
	return rc;
}

/* ---- the worker: registered, active_queues, revoked, stats, conf --------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names sorted, celery.* builtins left out, a rate limit shown as Celery's
 * "name [rate_limit=10/s]". */
static int cmd_registered(loop *l, const schema_control_request *req, msgpack_packer *pk,
			  warren_error *err)
{
	(void)req;
	size_t n = registry_count(l->s->reg), k = 0;
	char **names = calloc(n + 1, sizeof *names);
	if (!names)
		return warren_error_set(err, WARREN_ENOMEM, "registered: out of memory");
	for (size_t i = 0; i < n; i++) {
		const registry_entry *e = registry_at(l->s->reg, i);
		if (!strncmp(e->name, "celery.", 7))
			continue;
		const control_override *o = control_override_for(l->control, e, false);
		char text[400];
		if (o && o->rate > 0)
			snprintf(text, sizeof text, "%s [rate_limit=%g/s]", e->name, o->rate);
		else if (!o && e->opts.rate_limit)
			snprintf(text, sizeof text, "%s [rate_limit=%s]", e->name, e->opts.rate_limit);
		else
			snprintf(text, sizeof text, "%s", e->name);
		names[k] = strdup(text);
		if (names[k])
			k++;
	}
	qsort(names, k, sizeof *names, cmp_str);
	int rc = schema_control_pack_strings(pk, (const char *const *)names, k, err);
	for (size_t i = 0; i < k; i++)
		free(names[i]);
	free(names);
	return rc;
}

static const char *type_name(config_exchange_type t)
{
	switch (t) {
	case CONFIG_EXCHANGE_TOPIC: return "topic";
	case CONFIG_EXCHANGE_FANOUT: return "fanout";
	case CONFIG_EXCHANGE_HEADERS: return "headers";
	default: return "direct";
	}
}

/* A settings queue as loop.c declares it: Celery's defaults unless the
 * config's queues section describes it. */
static void settings_queue(const loop *l, const char *name, schema_control_queue_info *q)
{
	*q = (schema_control_queue_info){.name = name, .exchange = name,
					 .exchange_type = "direct", .exchange_durable = true,
					 .routing_key = name, .durable = true};
	const config_queue *cq = l->s->cfg ? config_queue_find(l->s->cfg, name) : NULL;
	if (!cq)
		return;
	const config_exchange *ce = config_exchange_find(l->s->cfg, cq->exchange);
	q->exchange = cq->exchange;
	q->exchange_type = type_name(ce ? ce->type : cq->exchange_type);
	q->exchange_durable = ce ? ce->durable : true;
	q->routing_key = cq->routing_key;
	q->durable = cq->durable;
	q->has_max_priority = cq->max_priority > 0;
	q->max_priority = cq->max_priority;
	q->has_message_ttl = cq->message_ttl_ms >= 0;
	q->message_ttl = cq->message_ttl_ms / 1000.0;
	q->has_expires = cq->expires_ms >= 0;
	q->expires = cq->expires_ms / 1000.0;
	q->queue_type = cq->type == CONFIG_QUEUE_QUORUM ? "quorum" : NULL;
}

static int cmd_active_queues(loop *l, const schema_control_request *req, msgpack_packer *pk,
			     warren_error *err)
{
	(void)req;
	const control *c = l->control;
	schema_control_queue_info *qs = calloc(l->s->n_queues + c->n_added + 1, sizeof *qs);
	if (!qs)
		return warren_error_set(err, WARREN_ENOMEM, "active_queues: out of memory");
	size_t n = 0;
	for (size_t i = 0; i < l->s->n_queues; i++)
		if (!c->cancelled[i])
			settings_queue(l, l->s->queues[i], &qs[n++]);
	for (size_t i = 0; i < c->n_added; i++)
		if (!c->added[i].cancelled)
			qs[n++] = (schema_control_queue_info){
				.name = c->added[i].name, .exchange = c->added[i].exchange,
				.exchange_type = c->added[i].exchange_type,
				.exchange_durable = true, .routing_key = c->added[i].routing_key,
				.durable = true};
	int rc = schema_control_pack_queues(pk, qs, n, err);
	free(qs);
	return rc;
}

static int cmd_revoked(loop *l, const schema_control_request *req, msgpack_packer *pk,
		       warren_error *err)
{
	(void)req;
	revoke_set *s = l->control->revoked;
	revoke_purge(s, control_wall_now());
	size_t n = revoke_count(s);
	const char **ids = calloc(n + 1, sizeof *ids);
	if (!ids)
		return warren_error_set(err, WARREN_ENOMEM, "revoked: out of memory");
	for (size_t i = 0; i < n; i++)
		ids[i] = revoke_at(s, i, NULL);
	int rc = schema_control_pack_strings(pk, ids, n, err);
	free(ids);
	return rc;
}

static void stats_broker(const loop *l, broker_url *u, schema_control_stats *st)
{
	const char *url = broker_conn_url(l->conn);
	if (broker_url_parse(url, u, NULL) != 0)
		memset(u, 0, sizeof *u);
	st->broker_hostname = u->host ? u->host : "";
	st->broker_userid = u->user ? u->user : "";
	st->broker_vhost = u->vhost ? u->vhost : "/";
	st->broker_port = u->port;
	st->broker_ssl = u->tls;
	st->broker_transport = "amqp";
	st->broker_connect_timeout = l->s->cfg ? l->s->cfg->broker.connect_timeout : 4;
	st->broker_heartbeat = broker_conn_heartbeat(l->conn);
}

static void stats_rusage(schema_control_stats *st)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return;
	st->has_rusage = true;
	st->utime = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	st->stime = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	st->maxrss = ru.ru_maxrss, st->ixrss = ru.ru_ixrss, st->idrss = ru.ru_idrss;
	st->isrss = ru.ru_isrss, st->minflt = ru.ru_minflt, st->majflt = ru.ru_majflt;
	st->nswap = ru.ru_nswap, st->inblock = ru.ru_inblock, st->oublock = ru.ru_oublock;
	st->msgsnd = ru.ru_msgsnd, st->msgrcv = ru.ru_msgrcv, st->nsignals = ru.ru_nsignals;
	st->nvcsw = ru.ru_nvcsw, st->nivcsw = ru.ru_nivcsw;
}

static int cmd_stats(loop *l, const schema_control_request *req, msgpack_packer *pk,
		     warren_error *err)
{
	(void)req;
	control *c = l->control;
	schema_control_task_count *total = calloc(c->n_counts + 1, sizeof *total);
	if (!total)
		return warren_error_set(err, WARREN_ENOMEM, "stats: out of memory");
	for (size_t i = 0; i < c->n_counts; i++)
		total[i] = (schema_control_task_count){c->counts[i].entry->name, c->counts[i].count};
	long prefetch = control_prefetch(l);
	int64_t self = (int64_t)getpid();
	schema_control_stats st = {
		.total = total, .n_total = c->n_counts,
		.pid = self, .clock = c->clock,
		.uptime = (int64_t)(control_wall_now() - c->started),
		.max_concurrency = control_concurrency(l), /* after pool_grow/shrink */
		.processes = l->s->pool.kind == POOL_THREADS ? &self : NULL,
		.n_processes = l->s->pool.kind == POOL_THREADS ? 1 : 0,
		.max_tasks_per_child = l->s->pool.max_tasks_per_child,
		.prefetch_count = prefetch > 65535 ? 65535 : prefetch,
	};
	broker_url u;
	stats_broker(l, &u, &st);
	stats_rusage(&st);
	int rc = schema_control_pack_stats(pk, &st, err);
	broker_url_release(&u);
	free(total);
	return rc;
}

static void pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
	msgpack_pack_str_with_body(pk, k, strlen(k));
	if (v)
		msgpack_pack_str_with_body(pk, v, strlen(v));
	else
		msgpack_pack_nil(pk);
}

/* A minimal app.conf table: the settings a Celery peer would compare. */
static int cmd_conf(loop *l, const schema_control_request *req, msgpack_packer *pk,
		    warren_error *err)
{
	(void)req, (void)err;
	msgpack_pack_map(pk, 8);
	pack_kv(pk, "broker_url", broker_conn_url(l->conn));
	pack_kv(pk, "result_backend", l->s->result_backend);
	pack_kv(pk, "task_serializer", "msgpack");
	pack_kv(pk, "result_serializer", "msgpack");
	msgpack_pack_str_with_body(pk, "accept_content", 14);
	msgpack_pack_array(pk, 1);
	msgpack_pack_str_with_body(pk, "msgpack", 7);
	pack_kv(pk, "worker_pool", l->s->pool.kind == POOL_PREFORK ? "prefork" : "threads");
	msgpack_pack_str_with_body(pk, "worker_concurrency", 18);
	msgpack_pack_int(pk, l->s->pool.concurrency);
	msgpack_pack_str_with_body(pk, "worker_prefetch_multiplier", 26);
	return msgpack_pack_int(pk, l->s->prefetch_multiplier);
}

/* Celery's hello: merge the peer's revokes, answer with ours; None to
 * ourselves (our own mingle reaches our own queue too). */
static int cmd_hello(loop *l, const schema_control_request *req, msgpack_packer *pk,
		     warren_error *err)
{
	(void)err;
	char from[256] = "";
	control_arg_string(req, "from_node", from, sizeof from);
	if (!strcmp(from, l->s->hostname))
		return msgpack_pack_nil(pk);
	log_at(CONFIG_LOG_INFO, NULL, "sync with %s", from);
	const msgpack_object *revoked = schema_control_arg(req, "revoked");
	if (revoked)
		control_merge_revoked(l, revoked);
	return control_pack_hello(l, pk);
}

control_fn control_inspect_find(const char *method)
{
	static const struct { const char *name; control_fn fn; } cmds[] = {
		{"ping", cmd_ping},
		{"stats", cmd_stats},
		{"active", cmd_active},
		{"dump_active", cmd_active},
		{"reserved", cmd_reserved},
		{"dump_reserved", cmd_reserved},
		{"scheduled", cmd_scheduled},
		{"dump_schedule", cmd_scheduled},
		{"registered", cmd_registered},
		{"dump_tasks", cmd_registered},
		{"active_queues", cmd_active_queues},
		{"revoked", cmd_revoked},
		{"dump_revoked", cmd_revoked},
		{"query_task", cmd_query_task},
		{"conf", cmd_conf},
		{"dump_conf", cmd_conf},
		{"clock", cmd_clock},
		{"report", cmd_report},
		{"hello", cmd_hello},
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (!strcmp(cmds[i].name, method))
			return cmds[i].fn;
	return NULL;
}
