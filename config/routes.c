/* config/routes.c - the `task_routes` section and routing a task name.
 *
 * Celery's forms are both accepted, in document order, first match wins:
 *     task_routes:                      task_routes:
 *       'feeds.*': feeds                  - 'feeds.*': {queue: feeds}
 *       'video.*': {queue: video}         - 'video.*': video
 * Patterns are fnmatch globs, as Celery's (so '*' also matches dots).
 */
#include <fnmatch.h>
#include <string.h>

#include "config.h"

/* Exchange and routing key as Celery derives them from the queue: its
 * declaration if there is one, else the queue's own name (Celery creates
 * missing queues as Queue(q, Exchange(q, 'direct'), q)). */
static void resolve_route(const warren_config *cfg, config_route *r)
{
	if (!r->queue)
		return;
	const config_queue *q = config_queue_find(cfg, r->queue);
	if (!r->exchange)
		r->exchange = q ? q->exchange : r->queue;
	if (!r->routing_key)
		r->routing_key = q ? q->routing_key : r->queue;
}

static int parse_route_map(config_ctx *ctx, const config_node *n, config_route *r)
{
	static const char *const keys[] = { "queue", "exchange", "routing_key", NULL };
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "queue"))
			rc = config_get_string(ctx, v, &r->queue);
		else if (!strcmp(k->text, "exchange"))
			rc = config_get_string(ctx, v, &r->exchange);
		else if (!strcmp(k->text, "routing_key"))
			rc = config_get_string(ctx, v, &r->routing_key);
		else
			rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
	}
	if (rc == 0 && !r->queue && !(r->exchange && r->routing_key))
		rc = config_fail(ctx, n, "expected a queue, or an exchange and a routing_key");
	return rc;
}

static int parse_route(config_ctx *ctx, const config_pair *p, config_route *r)
{
	*r = (config_route){ .pattern = p->key->text, .line = p->key->line,
			     .column = p->key->column };
	size_t old = config_path_push(ctx, p->key->text);
	int rc;
	if (p->value->kind == CONFIG_NODE_MAP)
		rc = parse_route_map(ctx, p->value, r);
	else if (p->value->kind == CONFIG_NODE_SCALAR)
		rc = config_get_string(ctx, p->value, &r->queue);
	else
		rc = config_fail_expected(ctx, p->value, "a queue name or a mapping with queue");
	config_path_pop(ctx, old);
	if (rc == 0)
		resolve_route(ctx->cfg, r);
	return rc;
}

/* The routes of one map, appended at routes[*n]. */
static int parse_route_entries(config_ctx *ctx, const config_node *map, config_route *routes,
			       size_t *n)
{
	for (size_t i = 0; i < map->n_pairs; i++) {
		int rc = parse_route(ctx, &map->pairs[i], &routes[(*n)++]);
		if (rc)
			return rc;
	}
	return 0;
}

static int count_routes(config_ctx *ctx, const config_node *node, size_t *count)
{
	*count = 0;
	if (node->kind == CONFIG_NODE_MAP) {
		*count = node->n_pairs;
		return 0;
	}
	if (node->kind != CONFIG_NODE_SEQ)
		return config_expect_map(ctx, node);
	for (size_t i = 0; i < node->n_items; i++) {
		const config_node *item = node->items[i];
		if (item->kind != CONFIG_NODE_MAP) {
			size_t old = config_path_push_index(ctx, i);
			int rc = config_fail_expected(ctx, item, "a mapping of pattern: queue");
			config_path_pop(ctx, old);
			return rc;
		}
		*count += item->n_pairs;
	}
	return 0;
}

int config_parse_routes(config_ctx *ctx, const config_node *node)
{
	warren_config *cfg = ctx->cfg;
	cfg->default_route = (config_route){ .pattern = "*", .queue = cfg->task_default_queue };
	resolve_route(cfg, &cfg->default_route);
	if (!node)
		return 0;
	size_t old = config_path_push(ctx, "task_routes");
	size_t count;
	int rc = count_routes(ctx, node, &count);
	if (rc == 0)
		rc = config_check_entries(ctx, node, count);
	config_route *routes = NULL;
	if (rc == 0 && count && !(routes = config_arena_alloc(ctx->arena, count * sizeof *routes)))
		rc = config_fail_nomem(ctx);
	size_t n = 0;
	if (rc == 0 && node->kind == CONFIG_NODE_MAP)
		rc = parse_route_entries(ctx, node, routes, &n);
	for (size_t i = 0; rc == 0 && node->kind == CONFIG_NODE_SEQ && i < node->n_items; i++) {
		size_t item_old = config_path_push_index(ctx, i);
		rc = parse_route_entries(ctx, node->items[i], routes, &n);
		config_path_pop(ctx, item_old);
	}
	config_path_pop(ctx, old);
	if (rc == 0) {
		cfg->routes = routes;
		cfg->n_routes = n;
	}
	return rc;
}

const config_route *config_route_task(const warren_config *cfg, const char *task_name)
{
	for (size_t i = 0; i < cfg->n_routes; i++)
		if (fnmatch(cfg->routes[i].pattern, task_name, 0) == 0)
			return &cfg->routes[i];
	return &cfg->default_route;
}
