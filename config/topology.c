/* config/topology.c - the `exchanges` and `queues` sections: what to declare.
 *
 * Defaults follow Celery and kombu: a queue's exchange and routing key are
 * its own name, exchanges are direct and durable, queues durable. Times are
 * written in seconds (kombu's message_ttl/expires) and kept in milliseconds,
 * as RabbitMQ's x-message-ttl and x-expires arguments want them.
 */
#include <string.h>

#include "config.h"

const char *const config_exchange_type_names[] = { "direct", "topic", "fanout", "headers", NULL };
static const char *const queue_type_names[] = { "classic", "quorum", NULL };

const char *config_exchange_type_name(config_exchange_type t)
{
	return (unsigned)t < 4 ? config_exchange_type_names[t] : "?";
}

const char *config_queue_type_name(config_queue_type t)
{
	return (unsigned)t < 2 ? queue_type_names[t] : "?";
}

static int parse_exchange(config_ctx *ctx, const config_node *n, config_exchange *x)
{
	static const char *const keys[] = { "type", "durable", NULL };
	int rc = config_expect_map(ctx, n);
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		int type;
		if (!strcmp(k->text, "type")) {
			rc = config_get_enum(ctx, v, config_exchange_type_names, &type);
			x->type = (config_exchange_type)type;
		} else if (!strcmp(k->text, "durable")) {
			rc = config_get_bool(ctx, v, &x->durable);
		} else {
			rc = config_fail_unknown_key(ctx, k, keys);
		}
		config_path_pop(ctx, old);
	}
	return rc;
}

int config_parse_exchanges(config_ctx *ctx, const config_node *node)
{
	if (!node)
		return 0;
	size_t old = config_path_push(ctx, "exchanges");
	int rc = config_expect_map(ctx, node);
	if (rc == 0)
		rc = config_check_entries(ctx, node, node->n_pairs);
	config_exchange *xs = NULL;
	if (rc == 0 && node->n_pairs &&
	    !(xs = config_arena_alloc(ctx->arena, node->n_pairs * sizeof *xs)))
		rc = config_fail_nomem(ctx);
	for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
		const config_node *k = node->pairs[i].key;
		xs[i] = (config_exchange){ .name = k->text, .type = CONFIG_EXCHANGE_DIRECT,
					   .durable = 1, .line = k->line, .column = k->column };
		size_t key_old = config_path_push(ctx, k->text);
		rc = parse_exchange(ctx, node->pairs[i].value, &xs[i]);
		config_path_pop(ctx, key_old);
	}
	config_path_pop(ctx, old);
	if (rc == 0) {
		ctx->cfg->exchanges = xs;
		ctx->cfg->n_exchanges = node->kind == CONFIG_NODE_MAP ? node->n_pairs : 0;
	}
	return rc;
}

static int parse_ttl_ms(config_ctx *ctx, const config_node *v, int positive, long long *ms)
{
	double seconds;
	int rc = config_get_seconds(ctx, v, &seconds);
	if (rc)
		return rc;
	if (positive && seconds <= 0)
		return config_fail_expected(ctx, v, "a positive number of seconds");
	/* seconds is at most 1e9 (config_get_seconds), so this cannot overflow. */
	*ms = (long long)(seconds * 1000 + 0.5);
	return 0;
}

static int parse_dead_letter(config_ctx *ctx, const config_node *n, config_queue *q)
{
	static const char *const keys[] = { "exchange", "routing_key", NULL };
	int rc = config_expect_map(ctx, n);
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "exchange"))
			rc = config_get_string(ctx, v, &q->dead_letter_exchange);
		else if (!strcmp(k->text, "routing_key"))
			rc = config_get_string(ctx, v, &q->dead_letter_routing_key);
		else
			rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
	}
	/* RabbitMQ dead-letters nowhere without an exchange; "" (the
	 * default exchange) is a valid one. */
	if (rc == 0 && !q->dead_letter_exchange)
		rc = config_fail(ctx, n, "expected an exchange (\"\" for the default exchange)");
	return rc;
}

static int parse_queue_key(config_ctx *ctx, const config_node *k, const config_node *v,
			   config_queue *q)
{
	static const char *const keys[] = {
		"exchange",	  "exchange_type", "routing_key",    "durable",
		"queue_type",	  "max_priority",  "dead_letter",    "delivery_limit",
		"message_ttl",	  "expires",	   NULL,
	};
	int e;
	int rc;
	if (!strcmp(k->text, "exchange"))
		return config_get_string(ctx, v, &q->exchange);
	if (!strcmp(k->text, "exchange_type")) {
		rc = config_get_enum(ctx, v, config_exchange_type_names, &e);
		q->exchange_type = (config_exchange_type)e;
		return rc;
	}
	if (!strcmp(k->text, "routing_key"))
		return config_get_string(ctx, v, &q->routing_key);
	if (!strcmp(k->text, "durable"))
		return config_get_bool(ctx, v, &q->durable);
	if (!strcmp(k->text, "queue_type")) {
		rc = config_get_enum(ctx, v, queue_type_names, &e);
		q->type = (config_queue_type)e;
		return rc;
	}
	if (!strcmp(k->text, "max_priority"))
		return config_get_int32(ctx, v, 1, 255, &q->max_priority);
	if (!strcmp(k->text, "dead_letter"))
		return parse_dead_letter(ctx, v, q);
	if (!strcmp(k->text, "delivery_limit"))
		return config_get_int32(ctx, v, 1, 2147483647, &q->delivery_limit);
	if (!strcmp(k->text, "message_ttl"))
		return parse_ttl_ms(ctx, v, 0, &q->message_ttl_ms);
	if (!strcmp(k->text, "expires"))
		return parse_ttl_ms(ctx, v, 1, &q->expires_ms);
	return config_fail_unknown_key(ctx, k, keys);
}

/* Fails at key when it is present: a setting the queue type contradicts. */
static int refuse_key(config_ctx *ctx, const config_node *n, const char *key, const char *why)
{
	for (size_t i = 0; i < n->n_pairs; i++) {
		if (strcmp(n->pairs[i].key->text, key))
			continue;
		size_t old = config_path_push(ctx, key);
		int rc = config_fail(ctx, n->pairs[i].key, "%s", why);
		config_path_pop(ctx, old);
		return rc;
	}
	return 0;
}

static int check_queue(config_ctx *ctx, const config_node *n, config_queue *q)
{
	int rc = 0;
	if (q->type == CONFIG_QUEUE_QUORUM) {
		if (!rc && q->max_priority)
			rc = refuse_key(ctx, n, "max_priority",
					"quorum queues have no priorities; use queue_type: classic");
		if (!rc && !q->durable)
			rc = refuse_key(ctx, n, "durable", "quorum queues are always durable");
	} else if (q->delivery_limit) {
		rc = refuse_key(ctx, n, "delivery_limit",
				"only quorum queues count deliveries; use queue_type: quorum");
	}
	/* RabbitMQ binds every queue to "" implicitly and refuses any other binding. */
	if (!rc && !q->exchange[0])
		rc = refuse_key(ctx, n, "exchange",
				"the default exchange \"\" cannot be bound to; leave exchange out "
				"to use the queue's name");
	if (rc)
		return rc;
	/* The exchange type must agree with a declared exchange of that name. */
	const config_exchange *x = config_exchange_find(ctx->cfg, q->exchange);
	const config_node *type_node = config_node_get(n, "exchange_type");
	if (x && !type_node)
		q->exchange_type = x->type;
	else if (x && x->type != q->exchange_type)
		rc = refuse_key(ctx, n, "exchange_type",
				"contradicts the type of the declared exchange");
	return rc;
}

static int parse_queue(config_ctx *ctx, const config_node *k, const config_node *n,
		       config_queue *q)
{
	*q = (config_queue){ .name = k->text, .exchange = k->text, .routing_key = k->text,
			     .durable = 1, .message_ttl_ms = -1, .expires_ms = -1,
			     .line = k->line, .column = k->column };
	int rc = config_expect_map(ctx, n);
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		size_t old = config_path_push(ctx, n->pairs[i].key->text);
		rc = parse_queue_key(ctx, n->pairs[i].key, n->pairs[i].value, q);
		config_path_pop(ctx, old);
	}
	return rc ? rc : check_queue(ctx, n, q);
}

int config_parse_queues(config_ctx *ctx, const config_node *node)
{
	if (!node)
		return 0;
	size_t old = config_path_push(ctx, "queues");
	int rc = config_expect_map(ctx, node);
	if (rc == 0)
		rc = config_check_entries(ctx, node, node->n_pairs);
	config_queue *qs = NULL;
	if (rc == 0 && node->n_pairs &&
	    !(qs = config_arena_alloc(ctx->arena, node->n_pairs * sizeof *qs)))
		rc = config_fail_nomem(ctx);
	for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
		size_t key_old = config_path_push(ctx, node->pairs[i].key->text);
		rc = parse_queue(ctx, node->pairs[i].key, node->pairs[i].value, &qs[i]);
		config_path_pop(ctx, key_old);
	}
	config_path_pop(ctx, old);
	if (rc == 0) {
		ctx->cfg->queues = qs;
		ctx->cfg->n_queues = node->kind == CONFIG_NODE_MAP ? node->n_pairs : 0;
	}
	return rc;
}

const config_exchange *config_exchange_find(const warren_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_exchanges; i++)
		if (!strcmp(cfg->exchanges[i].name, name))
			return &cfg->exchanges[i];
	return NULL;
}

const config_queue *config_queue_find(const warren_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_queues; i++)
		if (!strcmp(cfg->queues[i].name, name))
			return &cfg->queues[i];
	return NULL;
}
