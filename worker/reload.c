/* worker/reload.c - SIGHUP: re-read the --config file and apply what can
 * change under a running worker. Loop thread only.
 *
 * The file is read, the environment applied (WARREN_BROKER_URL, ...) and
 * checked as at start (the threads pool still refuses a hard time limit).
 * A file that does not load is logged with its file:line:column error and
 * nothing changes. Otherwise:
 *
 * - applied: worker.log_level and worker.log_format (unless given as flags:
 *   flags keep winning, as at start), and every per-task setting (rate,
 *   soft/hard time limits, retries and backoff, acks_late, ...) for tasks
 *   received from now on: consume.c resolves a task against
 *   reload_config(). A changed rate also retunes the live bucket (the path
 *   the remote `rate_limit` command takes), and a changed rate or time limit
 *   replaces a remote rate_limit/time_limit override of that task: the
 *   latest action wins. Tasks already received keep what they resolved.
 * - kept: everything the loop built at start from the settings (broker,
 *   queues, pool and concurrency, plugins, result backend, hostname,
 *   metrics, prefetch, statedb, ...): one line each names it and the value
 *   kept: "reload: worker.concurrency changed (4 -> 8): needs a restart;
 *   kept 4".
 *
 * Lifetimes. loop_settings (queues, URLs, hostname) and the topology point
 * into main's config, which is never replaced: only the per-task settings
 * move to the new one. A received task's loop_task_conf may point into the
 * config it resolved against (conf.schema is &config_task.schema), so an
 * old reloaded config is not freed when the next reload replaces it: it is
 * retired, and reload_tick frees the retired ones at the first turn where
 * the loop holds no task at all (none in the pool, waiting for a rate
 * token, or awaiting a publish confirm). Re-resolving the held tasks instead
 * would change the settings of tasks received before the reload. A worker
 * that is never idle keeps one small config per reload until it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

typedef struct reload {
	warren_config *current;  /* what tasks resolve against; NULL: main's (l->s->cfg) */
	warren_config **retired; /* replaced, maybe still pointed into by held tasks */
	size_t n_retired;
} reload;

/* ---- the diff (pure) ---------------------------------------------------------- */

typedef struct diff {
	reload_change *out;
	size_t cap, n;
} diff;

static void add(diff *d, bool restart, const char *key, const char *before, const char *after)
{
	if (strcmp(before, after) == 0)
		return;
	if (d->n < d->cap) {
		reload_change *c = &d->out[d->n];
		snprintf(c->key, sizeof c->key, "%s", key);
		snprintf(c->before, sizeof c->before, "%s", before);
		snprintf(c->after, sizeof c->after, "%s", after);
		c->restart = restart;
	}
	d->n++;
}

static void add_int(diff *d, bool restart, const char *key, long long a, long long b)
{
	char x[32], y[32];
	snprintf(x, sizeof x, "%lld", a);
	snprintf(y, sizeof y, "%lld", b);
	add(d, restart, key, x, y);
}

static void add_num(diff *d, bool restart, const char *key, double a, double b, const char *unit)
{
	char x[48], y[48];
	snprintf(x, sizeof x, "%g%s", a, unit);
	snprintf(y, sizeof y, "%g%s", b, unit);
	add(d, restart, key, x, y);
}

static void add_bool(diff *d, bool restart, const char *key, int a, int b)
{
	add(d, restart, key, a ? "true" : "false", b ? "true" : "false");
}

static void add_str(diff *d, bool restart, const char *key, const char *a, const char *b)
{
	add(d, restart, key, a ? a : "(unset)", b ? b : "(unset)");
}

/* "scheme://user:password@host" as "scheme://user:****@host" (logs). */
static void mask_url(const char *url, char *buf, size_t cap)
{
	const char *auth = strstr(url, "://");
	const char *at = auth ? strchr(auth + 3, '@') : NULL;
	const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - (auth + 3))) : NULL;
	if (!colon)
		snprintf(buf, cap, "%s", url);
	else
		snprintf(buf, cap, "%.*s:****%s", (int)(colon - url), url, at);
}

/* items joined with ',' (URLs masked), truncated to cap. */
static void join(const char *const *items, size_t n, bool urls, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && len + 1 < cap; i++) {
		char one[512];
		if (urls)
			mask_url(items[i], one, sizeof one);
		else
			snprintf(one, sizeof one, "%s", items[i]);
		int w = snprintf(buf + len, cap - len, "%s%s", i ? "," : "", one);
		if (w < 0)
			break;
		len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
	}
	if (n == 0)
		snprintf(buf, cap, "(none)");
}

static void add_list(diff *d, const char *key, const char *const *a, size_t na,
		     const char *const *b, size_t nb, bool urls)
{
	char x[160], y[160];
	join(a, na, urls, x, sizeof x);
	join(b, nb, urls, y, sizeof y);
	add(d, true, key, x, y);
}

static void describe_queue(const config_queue *q, char *buf, size_t cap)
{
	if (!q) {
		snprintf(buf, cap, "(undeclared)");
		return;
	}
	snprintf(buf, cap,
		 "exchange=%s/%s routing_key=%s durable=%d type=%s max_priority=%d dlx=%s "
		 "dlrk=%s delivery_limit=%d ttl_ms=%lld expires_ms=%lld",
		 q->exchange, config_exchange_type_name(q->exchange_type), q->routing_key,
		 q->durable, config_queue_type_name(q->type), q->max_priority,
		 q->dead_letter_exchange ? q->dead_letter_exchange : "-",
		 q->dead_letter_routing_key ? q->dead_letter_routing_key : "-", q->delivery_limit,
		 q->message_ttl_ms, q->expires_ms);
}

static void describe_exchange(const config_exchange *x, char *buf, size_t cap)
{
	if (!x)
		snprintf(buf, cap, "(undeclared)");
	else
		snprintf(buf, cap, "%s durable=%d", config_exchange_type_name(x->type), x->durable);
}

/* Queues and exchanges by name, in either config: declared at start. */
static void diff_topology(diff *d, const warren_config *a, const warren_config *b)
{
	char key[200], x[160], y[160];
	for (int pass = 0; pass < 2; pass++) {
		const warren_config *from = pass ? b : a, *other = pass ? a : b;
		for (size_t i = 0; i < from->n_queues; i++) {
			const char *name = from->queues[i].name;
			if (pass && config_queue_find(other, name))
				continue; /* compared in the first pass */
			snprintf(key, sizeof key, "queues.%s", name);
			describe_queue(config_queue_find(a, name), x, sizeof x);
			describe_queue(config_queue_find(b, name), y, sizeof y);
			add(d, true, key, x, y);
		}
		for (size_t i = 0; i < from->n_exchanges; i++) {
			const char *name = from->exchanges[i].name;
			if (pass && config_exchange_find(other, name))
				continue;
			snprintf(key, sizeof key, "exchanges.%s", name);
			describe_exchange(config_exchange_find(a, name), x, sizeof x);
			describe_exchange(config_exchange_find(b, name), y, sizeof y);
			add(d, true, key, x, y);
		}
	}
}

static void describe_routes(const warren_config *c, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->n_routes && len + 1 < cap; i++) {
		const config_route *r = &c->routes[i];
		int w = snprintf(buf + len, cap - len, "%s%s=>%s/%s", i ? "," : "", r->pattern,
				 r->exchange ? r->exchange : "", r->routing_key ? r->routing_key : "");
		if (w < 0)
			break;
		len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
	}
	if (c->n_routes == 0)
		snprintf(buf, cap, "(none)");
}

static void diff_restart(diff *d, const warren_config *a, const warren_config *b)
{
	const config_broker *ba = &a->broker, *bb = &b->broker;
	add_list(d, "broker.urls", ba->urls, ba->n_urls, bb->urls, bb->n_urls, true);
	add_int(d, true, "broker.heartbeat", ba->heartbeat, bb->heartbeat);
	add_num(d, true, "broker.connect_timeout", ba->connect_timeout, bb->connect_timeout, "s");
	add_int(d, true, "broker.prefetch_multiplier", ba->prefetch_multiplier,
		bb->prefetch_multiplier);
	add_bool(d, true, "broker.connection_retry_on_startup", ba->connection_retry_on_startup,
		 bb->connection_retry_on_startup);
	add_str(d, true, "broker.tls.ca", ba->tls.ca, bb->tls.ca);
	add_str(d, true, "broker.tls.cert", ba->tls.cert, bb->tls.cert);
	add_str(d, true, "broker.tls.key", ba->tls.key, bb->tls.key);
	add_bool(d, true, "broker.tls.verify", ba->tls.verify, bb->tls.verify);
	diff_topology(d, a, b);
	add_str(d, true, "task_default_queue", a->task_default_queue, b->task_default_queue);
	char x[160], y[160];
	describe_routes(a, x, sizeof x);
	describe_routes(b, y, sizeof y);
	add(d, true, "task_routes", x, y);
	const config_worker *wa = &a->worker, *wb = &b->worker;
	add_int(d, true, "worker.concurrency", wa->concurrency, wb->concurrency);
	add(d, true, "worker.pool", config_pool_name(wa->pool), config_pool_name(wb->pool));
	add_list(d, "worker.plugins", wa->plugins, wa->n_plugins, wb->plugins, wb->n_plugins, false);
	add_list(d, "worker.queues", wa->queues, wa->n_queues, wb->queues, wb->n_queues, false);
	add_int(d, true, "worker.max_tasks_per_child", wa->max_tasks_per_child,
		wb->max_tasks_per_child);
	add_int(d, true, "worker.max_memory_per_child", wa->max_memory_per_child,
		wb->max_memory_per_child);
	add_str(d, true, "worker.hostname", wa->hostname, wb->hostname);
	add_int(d, true, "worker.prefetch_multiplier", wa->prefetch_multiplier,
		wb->prefetch_multiplier);
	add_bool(d, true, "worker.events", wa->events, wb->events);
	add_num(d, true, "worker.shutdown_timeout", wa->shutdown_timeout, wb->shutdown_timeout,
		"s");
	add_str(d, true, "worker.statedb", wa->statedb, wb->statedb);
	add_int(d, true, "worker.metrics.port", wa->metrics.port, wb->metrics.port);
	add_str(d, true, "worker.metrics.bind", wa->metrics.bind, wb->metrics.bind);
	const config_result_backend *ra = &a->result_backend, *rb = &b->result_backend;
	mask_url(ra->url ? ra->url : "(none)", x, sizeof x);
	mask_url(rb->url ? rb->url : "(none)", y, sizeof y);
	add(d, true, "result_backend.url", x, y);
	add_int(d, true, "result_backend.result_expires", ra->result_expires, rb->result_expires);
}

/* A task the config does not name: the loader's defaults, which
 * loop_task_conf_resolve does not take as overrides of the plugin's. */
static const config_task task_defaults = {
	.max_retries = 3, .retry_backoff_max = 600, .retry_jitter = 1,
	.default_retry_delay = 180, .acks_late = 1,
};

static void rate_text(double rate, char *buf, size_t cap)
{
	if (rate > 0)
		snprintf(buf, cap, "%g/s", rate);
	else
		snprintf(buf, cap, "none");
}

static void diff_task(diff *d, const char *name, const config_task *a, const config_task *b)
{
	a = a ? a : &task_defaults;
	b = b ? b : &task_defaults;
	char key[200], x[48], y[48];
#define KEY(field) (snprintf(key, sizeof key, "tasks.%s." field, name), key)
	rate_text(a->rate_limit, x, sizeof x);
	rate_text(b->rate_limit, y, sizeof y);
	add(d, false, KEY("rate_limit"), x, y);
	add_num(d, false, KEY("time_limit"), a->time_limit, b->time_limit, "s");
	add_num(d, false, KEY("soft_time_limit"), a->soft_time_limit, b->soft_time_limit, "s");
	add_int(d, false, KEY("max_retries"), a->max_retries, b->max_retries);
	add_int(d, false, KEY("retry_backoff"), a->retry_backoff, b->retry_backoff);
	add_int(d, false, KEY("retry_backoff_max"), a->retry_backoff_max, b->retry_backoff_max);
	add_bool(d, false, KEY("retry_jitter"), a->retry_jitter, b->retry_jitter);
	add_num(d, false, KEY("default_retry_delay"), a->default_retry_delay,
		b->default_retry_delay, "s");
	add_bool(d, false, KEY("acks_late"), a->acks_late, b->acks_late);
	add_bool(d, false, KEY("ignore_result"), a->ignore_result, b->ignore_result);
	add_bool(d, false, KEY("track_started"), a->track_started, b->track_started);
	add_bool(d, false, KEY("reject_on_worker_lost"), a->reject_on_worker_lost,
		 b->reject_on_worker_lost);
	add(d, false, KEY("schema"), a->has_schema ? "declared" : "(none)",
	    b->has_schema ? "declared" : "(none)");
#undef KEY
}

size_t reload_diff(const warren_config *old, const warren_config *cur, reload_change *out,
		   size_t cap)
{
	diff d = {out, out ? cap : 0, 0};
	add(&d, false, "worker.log_level", config_log_level_name(old->worker.log_level),
	    config_log_level_name(cur->worker.log_level));
	add(&d, false, "worker.log_format", config_log_format_name(old->worker.log_format),
	    config_log_format_name(cur->worker.log_format));
	for (size_t i = 0; i < old->n_tasks; i++)
		diff_task(&d, old->tasks[i].name, &old->tasks[i],
			  config_task_find(cur, old->tasks[i].name));
	for (size_t i = 0; i < cur->n_tasks; i++)
		if (!config_task_find(old, cur->tasks[i].name))
			diff_task(&d, cur->tasks[i].name, NULL, &cur->tasks[i]);
	diff_restart(&d, old, cur);
	return d.n;
}

int reload_check_time_limits(const warren_config *cfg, pool_kind kind, warren_error *err)
{
	if (kind != POOL_THREADS)
		return 0;
	for (size_t i = 0; i < cfg->n_tasks; i++) {
		const config_task *t = &cfg->tasks[i];
		if (t->time_limit > 0)
			return warren_error_set(err, WARREN_ECONFIG,
						"%s:%u:%u: tasks.%s.time_limit: a hard time limit "
						"needs the prefork pool (the threads pool cannot "
						"stop a running handler); use soft_time_limit",
						cfg->name, t->line, t->column, t->name);
	}
	return 0;
}

/* ---- the running worker ---------------------------------------------------------- */

const warren_config *reload_config(const loop *l)
{
	return l->reload && l->reload->current ? l->reload->current : l->s->cfg;
}

/* What the running worker uses for a setting a reload cannot change, and
 * the flag that set it (NULL: the file did). */
static const char *running_value(const loop *l, const reload_change *c, char *buf, size_t cap)
{
	const loop_settings *s = l->s;
	const worker_cli *cli = s->cli;
	const char *flag = NULL;
	snprintf(buf, cap, "%s", c->before);
	if (!strcmp(c->key, "worker.concurrency")) {
		snprintf(buf, cap, "%d", s->pool.concurrency);
		flag = cli && cli->concurrency > 0 ? "--concurrency" : NULL;
	} else if (!strcmp(c->key, "worker.pool")) {
		snprintf(buf, cap, "%s", s->pool.kind == POOL_PREFORK ? "prefork" : "threads");
		flag = cli && cli->pool ? "--pool" : NULL;
	} else if (!strcmp(c->key, "worker.queues")) {
		join(s->queues, s->n_queues, false, buf, cap);
		flag = cli && cli->queues ? "--queues" : NULL;
	} else if (!strcmp(c->key, "worker.hostname")) {
		snprintf(buf, cap, "%s", s->hostname);
		flag = cli && cli->hostname ? "--hostname" : NULL;
	} else if (!strcmp(c->key, "worker.prefetch_multiplier") ||
		   !strcmp(c->key, "broker.prefetch_multiplier")) {
		snprintf(buf, cap, "%d", s->prefetch_multiplier);
		flag = cli && cli->prefetch_multiplier >= 0 ? "--prefetch-multiplier" : NULL;
	} else if (!strcmp(c->key, "worker.metrics.port")) {
		snprintf(buf, cap, "%d", s->metrics_port);
		flag = cli && cli->metrics_port >= 0 ? "--metrics-port" : NULL;
	} else if (!strcmp(c->key, "worker.metrics.bind")) {
		flag = cli && cli->metrics_bind ? "--metrics-bind" : NULL;
	} else if (!strcmp(c->key, "worker.statedb")) {
		flag = cli && cli->statedb ? "--statedb" : NULL;
	} else if (!strcmp(c->key, "worker.plugins")) {
		flag = cli && cli->n_plugins ? "--plugin" : NULL;
	} else if (!strcmp(c->key, "worker.events")) {
		flag = cli && cli->events ? "--events" : NULL;
	} else if (!strcmp(c->key, "broker.urls")) {
		flag = cli && cli->broker ? "--broker" : NULL;
	} else if (!strcmp(c->key, "result_backend.url")) {
		flag = cli && cli->result_backend ? "--result-backend" : NULL;
	}
	if (flag && !strcmp(c->key, "broker.urls"))
		mask_url(s->broker_urls, buf, cap);
	else if (flag && !strcmp(c->key, "result_backend.url"))
		mask_url(s->result_backend ? s->result_backend : "(none)", buf, cap);
	return flag;
}

static void log_restart(const loop *l, const reload_change *c)
{
	char kept[160];
	const char *flag = running_value(l, c, kept, sizeof kept);
	if (flag)
		log_at(CONFIG_LOG_WARNING, NULL,
		       "reload: %s changed (%s -> %s): needs a restart, and %s overrides it; "
		       "kept %s", c->key, c->before, c->after, flag, kept);
	else
		log_at(CONFIG_LOG_WARNING, NULL,
		       "reload: %s changed (%s -> %s): needs a restart; kept %s", c->key, c->before,
		       c->after, kept);
}

/* Level and format from cur unless a flag set them. */
static void apply_logging(const loop *l, const warren_config *cur)
{
	const worker_cli *cli = l->s->cli;
	config_log_level level = cur->worker.log_level;
	if (cli && cli->loglevel)
		log_level_parse(cli->loglevel, &level);
	config_log_format format = cur->worker.log_format;
	if (cli && cli->log_format)
		format = strcmp(cli->log_format, "json") == 0 ? CONFIG_LOG_JSON : CONFIG_LOG_TEXT;
	log_set_level_format(level, format);
}

/* The flag that keeps c's logging setting, or NULL (applied). */
static const char *logging_flag(const loop *l, const reload_change *c)
{
	const worker_cli *cli = l->s->cli;
	if (!strcmp(c->key, "worker.log_level") && cli && cli->loglevel)
		return "--loglevel";
	if (!strcmp(c->key, "worker.log_format") && cli && cli->log_format)
		return "--log-format";
	return NULL;
}

/* Per-task settings that have live state: the rate bucket and the remote
 * overrides. A setting the file changed replaces a remote override of it. */
static void apply_tasks(loop *l, const warren_config *old, const warren_config *cur)
{
	for (size_t i = 0; i < registry_count(l->s->reg); i++) {
		const registry_entry *e = registry_at(l->s->reg, i);
		loop_task_conf a, b;
		loop_task_conf_resolve(old, e, &a);
		loop_task_conf_resolve(cur, e, &b);
		control_override *o = l->control ? control_override_for(l->control, e, false)
						 : NULL;
		if (a.rate != b.rate) {
			if (o && o->rate >= 0) {
				o->rate = -1;
				log_at(CONFIG_LOG_INFO, NULL,
				       "reload: task %s: the file's rate limit replaces the remote "
				       "rate_limit", e->name);
			}
			control_retune_limiter(l, e, b.rate);
		}
		if (o && (o->soft_time_limit >= 0 || o->time_limit >= 0) &&
		    (a.soft_time_limit != b.soft_time_limit || a.time_limit != b.time_limit)) {
			o->soft_time_limit = o->time_limit = -1;
			log_at(CONFIG_LOG_INFO, NULL,
			       "reload: task %s: the file's time limits replace the remote "
			       "time_limit", e->name);
		}
	}
}

static int load(const char *path, warren_config **out, pool_kind kind, warren_error *err)
{
	int rc = config_load(path, out, err);
	if (rc == 0)
		rc = config_apply_env(*out, getenv, err);
	if (rc == 0)
		rc = reload_check_time_limits(*out, kind, err);
	if (rc != 0) {
		config_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Makes cur the config tasks resolve against; the one it replaces retires
 * (main's is not ours: main frees it). */
static int adopt(reload *r, warren_config *cur)
{
	if (r->current) {
		warren_config **v = realloc(r->retired, (r->n_retired + 1) * sizeof *v);
		if (!v)
			return WARREN_ENOMEM;
		r->retired = v;
		r->retired[r->n_retired++] = r->current;
	}
	r->current = cur;
	return 0;
}

static void apply(loop *l, const warren_config *old, const warren_config *cur,
		  const reload_change *ch, size_t n)
{
	apply_tasks(l, old, cur);
	apply_logging(l, cur); /* first, so the lines below follow the new level */
	size_t applied = 0, restart = 0;
	for (size_t i = 0; i < n; i++) {
		const reload_change *c = &ch[i];
		const char *flag = c->restart ? NULL : logging_flag(l, c);
		if (c->restart) {
			log_restart(l, c);
			restart++;
		} else if (flag) {
			log_at(CONFIG_LOG_WARNING, NULL,
			       "reload: %s changed (%s -> %s): %s overrides it; kept %s", c->key,
			       c->before, c->after, flag, c->before);
		} else {
			log_at(CONFIG_LOG_INFO, NULL, "reload: %s changed (%s -> %s)", c->key,
			       c->before, c->after);
			applied++;
		}
	}
	log_at(CONFIG_LOG_WARNING, NULL,
	       "reload: done: %zu setting(s) applied, %zu need a restart", applied, restart);
}

void reload_on_hup(loop *l)
{
	const char *path = l->s->cli ? l->s->cli->config : NULL;
	if (!path) {
		log_at(CONFIG_LOG_WARNING, NULL, "reload: no --config file: nothing to reload");
		return;
	}
	log_at(CONFIG_LOG_WARNING, NULL, "reload: SIGHUP: reading %s", path);
	warren_error err = {0};
	warren_config *cur = NULL;
	if (load(path, &cur, l->s->pool.kind, &err) != 0) {
		log_at(CONFIG_LOG_ERROR, NULL, "reload: %s; running settings kept", err.msg);
		return;
	}
	if (!l->reload)
		l->reload = calloc(1, sizeof *l->reload);
	size_t n = reload_diff(reload_config(l), cur, NULL, 0);
	reload_change *ch = calloc(n ? n : 1, sizeof *ch);
	if (!l->reload || !ch) {
		log_at(CONFIG_LOG_ERROR, NULL, "reload: out of memory; running settings kept");
		free(ch);
		config_free(cur);
		return;
	}
	const warren_config *old = reload_config(l);
	reload_diff(old, cur, ch, n);
	/* old stays alive after adopt (retired, or main's) until reload_tick. */
	if (adopt(l->reload, cur) != 0) {
		log_at(CONFIG_LOG_ERROR, NULL, "reload: out of memory; running settings kept");
		free(ch);
		config_free(cur);
		return;
	}
	apply(l, old, cur, ch, n);
	free(ch);
	reload_tick(l);
}

/* No task held anywhere by the loop: none can point into a retired config. */
static bool quiescent(const loop *l)
{
	if (l->in_pool || l->afters)
		return false;
	for (const loop_limiter *q = l->limiters; q; q = q->next)
		if (q->head)
			return false;
	return true;
}

void reload_tick(loop *l)
{
	reload *r = l->reload;
	if (!r || r->n_retired == 0 || !quiescent(l))
		return;
	for (size_t i = 0; i < r->n_retired; i++)
		config_free(r->retired[i]);
	r->n_retired = 0;
}

void reload_free(loop *l)
{
	reload *r = l->reload;
	if (!r)
		return;
	for (size_t i = 0; i < r->n_retired; i++)
		config_free(r->retired[i]);
	free(r->retired);
	config_free(r->current);
	free(r);
	l->reload = NULL;
}
