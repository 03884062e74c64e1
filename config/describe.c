/* config/describe.c - a human summary of a loaded config (the demo prints it).
 *
 * Passwords in URLs are masked: the summary ends up in logs and terminals.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"

const char *config_backend_kind_name(config_backend_kind k)
{
	static const char *const names[] = { "none", "rpc", "redis" };
	return (unsigned)k < 3 ? names[k] : "?";
}

/* Prints url with the password of "scheme://user:password@host" as "****". */
static void print_url(FILE *out, const char *url)
{
	const char *auth = strstr(url, "://");
	const char *at = auth ? strchr(auth + 3, '@') : NULL;
	const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - (auth + 3))) : NULL;
	if (!colon) {
		fputs(url, out);
		return;
	}
	fprintf(out, "%.*s:****%s", (int)(colon - url), url, at);
}

static void describe_broker(const warren_config *cfg, FILE *out)
{
	const config_broker *b = &cfg->broker;
	fprintf(out, "broker:\n");
	for (size_t i = 0; i < b->n_urls; i++) {
		fprintf(out, "  url[%zu]: ", i);
		print_url(out, b->urls[i]);
		fputc('\n', out);
	}
	fprintf(out, "  heartbeat: %d s, connect_timeout: %g s, prefetch_multiplier: %d\n",
		b->heartbeat, b->connect_timeout, b->prefetch_multiplier);
	if (b->tls.ca || b->tls.cert)
		fprintf(out, "  tls: ca %s, cert %s, verify %s\n", b->tls.ca ? b->tls.ca : "-",
			b->tls.cert ? b->tls.cert : "-", b->tls.verify ? "yes" : "no");
}

static void describe_topology(const warren_config *cfg, FILE *out)
{
	for (size_t i = 0; i < cfg->n_exchanges; i++) {
		const config_exchange *x = &cfg->exchanges[i];
		fprintf(out, "exchange %s: %s%s\n", x->name, config_exchange_type_name(x->type),
			x->durable ? ", durable" : "");
	}
	for (size_t i = 0; i < cfg->n_queues; i++) {
		const config_queue *q = &cfg->queues[i];
		fprintf(out, "queue %s: %s, exchange %s (%s), routing key %s%s", q->name,
			config_queue_type_name(q->type), q->exchange,
			config_exchange_type_name(q->exchange_type), q->routing_key,
			q->durable ? ", durable" : "");
		if (q->max_priority)
			fprintf(out, ", max priority %d", q->max_priority);
		if (q->delivery_limit)
			fprintf(out, ", delivery limit %d", q->delivery_limit);
		if (q->dead_letter_exchange)
			fprintf(out, ", dead letters to '%s'", q->dead_letter_exchange);
		if (q->message_ttl_ms >= 0)
			fprintf(out, ", message ttl %lld ms", q->message_ttl_ms);
		if (q->expires_ms >= 0)
			fprintf(out, ", expires %lld ms", q->expires_ms);
		fputc('\n', out);
	}
}

static void describe_routes(const warren_config *cfg, FILE *out)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const config_route *r = &cfg->routes[i];
		fprintf(out, "route %s -> queue %s, exchange %s, routing key %s\n", r->pattern,
			r->queue ? r->queue : "-", r->exchange, r->routing_key);
	}
	fprintf(out, "default route -> queue %s\n", cfg->default_route.queue);
}

static void describe_tasks(const warren_config *cfg, FILE *out)
{
	for (size_t i = 0; i < cfg->n_tasks; i++) {
		const config_task *t = &cfg->tasks[i];
		fprintf(out, "task %s:", t->name);
		if (t->rate_limit > 0)
			fprintf(out, " rate %g/s,", t->rate_limit);
		if (t->time_limit > 0 || t->soft_time_limit > 0)
			fprintf(out, " time limit %g s (soft %g s),", t->time_limit,
				t->soft_time_limit);
		fprintf(out, " max retries %d, acks %s", t->max_retries,
			t->acks_late ? "late" : "early");
		if (t->has_schema) {
			fprintf(out, ", args (");
			for (size_t p = 0; p < t->schema.n_params; p++) {
				const warren_param *param = &t->schema.params[p];
				fprintf(out, "%s%s: %s%s", p ? ", " : "", param->name,
					warren_type_name(param->type),
					param->required ? "" : param->default_mp ? " = ..." : "?");
			}
			fprintf(out, ") -> %s", warren_type_name(t->schema.result));
		}
		fputc('\n', out);
	}
}

static void describe_worker(const warren_config *cfg, FILE *out)
{
	const config_worker *w = &cfg->worker;
	fprintf(out, "worker: %s pool, concurrency %d, log %s/%s, queues", config_pool_name(w->pool),
		w->concurrency, config_log_format_name(w->log_format),
		config_log_level_name(w->log_level));
	for (size_t i = 0; i < w->n_queues; i++)
		fprintf(out, "%s%s", i ? ", " : " ", w->queues[i]);
	fputc('\n', out);
	for (size_t i = 0; i < w->n_plugins; i++)
		fprintf(out, "  plugin: %s\n", w->plugins[i]);
}

void config_describe(const warren_config *cfg, FILE *out)
{
	fprintf(out, "config %s\n", cfg->name);
	describe_broker(cfg, out);
	describe_topology(cfg, out);
	describe_routes(cfg, out);
	describe_tasks(cfg, out);
	describe_worker(cfg, out);
	fprintf(out, "result backend: %s", config_backend_kind_name(cfg->result_backend.kind));
	if (cfg->result_backend.url) {
		fputc(' ', out);
		print_url(out, cfg->result_backend.url);
	}
	fprintf(out, ", results expire after %lld s\n", cfg->result_backend.result_expires);
	if (cfg->n_pipelines)
		pipeline_print_list(cfg, out);
}
