/* config/worker.c - the `worker` section: how warren-worker runs.
 *
 * Defaults are Celery's worker defaults: prefork pool, one process per
 * online CPU, warning log level, no task events, consume the default queue;
 * no metrics endpoint (worker.metrics.port 0), bound to 127.0.0.1 when on.
 */
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char *const pool_names[] = { "prefork", "threads", NULL };
static const char *const log_format_names[] = { "text", "json", NULL };
static const char *const log_level_names[] = { "debug", "info", "warning", "error", "critical",
					       NULL };

const char *config_pool_name(config_pool p)
{
	return (unsigned)p < 2 ? pool_names[p] : "?";
}

const char *config_log_format_name(config_log_format f)
{
	return (unsigned)f < 2 ? log_format_names[f] : "?";
}

const char *config_log_level_name(config_log_level l)
{
	return (unsigned)l < 5 ? log_level_names[l] : "?";
}

static int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 && n < 4096 ? (int)n : 1;
}

static int parse_metrics_key(config_ctx *ctx, const config_node *k, const config_node *v,
			     config_worker *w)
{
	static const char *const keys[] = { "port", "bind", NULL };
	if (!strcmp(k->text, "port"))
		return config_get_int32(ctx, v, 0, 65535, &w->metrics.port);
	if (!strcmp(k->text, "bind"))
		return config_get_string(ctx, v, &w->metrics.bind);
	return config_fail_unknown_key(ctx, k, keys);
}

/* worker.metrics: {port, bind}, the Prometheus endpoint (worker/metrics.c). */
static int parse_metrics(config_ctx *ctx, const config_node *node, config_worker *w)
{
	int rc = config_expect_map(ctx, node);
	for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
		size_t old = config_path_push(ctx, node->pairs[i].key->text);
		rc = parse_metrics_key(ctx, node->pairs[i].key, node->pairs[i].value, w);
		config_path_pop(ctx, old);
	}
	return rc;
}

static int parse_worker_key(config_ctx *ctx, const config_node *k, const config_node *v,
			    config_worker *w)
{
	static const char *const keys[] = {
		"concurrency", "pool", "plugins", "queues", "max_tasks_per_child",
		"max_memory_per_child", "log_format", "log_level", "hostname",
		"prefetch_multiplier", "events", "shutdown_timeout", "metrics", "statedb", NULL,
	};
	const char *key = k->text;
	int e, rc;
	if (!strcmp(key, "concurrency"))
		return config_get_int32(ctx, v, 1, 4096, &w->concurrency);
	if (!strcmp(key, "pool")) {
		rc = config_get_enum(ctx, v, pool_names, &e);
		w->pool = (config_pool)e;
		return rc;
	}
	if (!strcmp(key, "plugins"))
		return config_get_string_list(ctx, v, &w->plugins, &w->n_plugins);
	if (!strcmp(key, "queues"))
		return config_get_string_list(ctx, v, &w->queues, &w->n_queues);
	if (!strcmp(key, "max_tasks_per_child"))
		return config_get_int32(ctx, v, 0, INT_MAX, &w->max_tasks_per_child);
	if (!strcmp(key, "max_memory_per_child"))
		return config_get_int(ctx, v, 0, LLONG_MAX / 1024, &w->max_memory_per_child);
	if (!strcmp(key, "log_format")) {
		rc = config_get_enum(ctx, v, log_format_names, &e);
		w->log_format = (config_log_format)e;
		return rc;
	}
	if (!strcmp(key, "log_level")) {
		rc = config_get_enum(ctx, v, log_level_names, &e);
		w->log_level = (config_log_level)e;
		return rc;
	}
	if (!strcmp(key, "hostname"))
		return config_get_string(ctx, v, &w->hostname);
	if (!strcmp(key, "prefetch_multiplier"))
		return config_get_int32(ctx, v, 0, 65535, &w->prefetch_multiplier);
	if (!strcmp(key, "events"))
		return config_get_bool(ctx, v, &w->events);
	if (!strcmp(key, "shutdown_timeout"))
		return config_get_seconds(ctx, v, &w->shutdown_timeout);
	if (!strcmp(key, "metrics"))
		return parse_metrics(ctx, v, w);
	if (!strcmp(key, "statedb"))
		return config_get_string(ctx, v, &w->statedb);
	return config_fail_unknown_key(ctx, k, keys);
}

int config_parse_worker(config_ctx *ctx, const config_node *node)
{
	config_worker *w = &ctx->cfg->worker;
	*w = (config_worker){ .concurrency = online_cpus(), .pool = CONFIG_POOL_PREFORK,
			      .log_format = CONFIG_LOG_TEXT, .log_level = CONFIG_LOG_WARNING,
			      .prefetch_multiplier = -1, .metrics.bind = "127.0.0.1" };
	int rc = 0;
	if (node) {
		size_t old = config_path_push(ctx, "worker");
		rc = config_expect_map(ctx, node);
		for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
			size_t key_old = config_path_push(ctx, node->pairs[i].key->text);
			rc = parse_worker_key(ctx, node->pairs[i].key, node->pairs[i].value, w);
			config_path_pop(ctx, key_old);
		}
		config_path_pop(ctx, old);
	}
	if (rc == 0 && w->n_queues == 0) {
		/* The arena keeps the one-element list alive with the config. */
		const char **queues = config_arena_alloc(ctx->arena, sizeof *queues);
		if (!queues)
			return config_fail_nomem(ctx);
		queues[0] = ctx->cfg->task_default_queue;
		w->queues = queues;
		w->n_queues = 1;
	}
	return rc;
}
