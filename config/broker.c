/* config/broker.c - the `broker` and `result_backend` sections.
 *
 * URLs are checked only for a known scheme here; broker-adapter/ and
 * backends/ parse them fully when they connect.
 */
#include <string.h>

#include "config.h"

const char *const config_broker_schemes[] = { "amqp", "amqps", NULL };
const char *const config_backend_schemes[] = { "rpc", "redis", "rediss", NULL };

/* Celery's default broker_url. */
static const char *const default_broker_urls[] = { "amqp://guest:guest@localhost:5672//" };

int config_split_urls(config_arena *a, const char *text, const char *const **out, size_t *n_out)
{
	size_t parts = 1;
	for (const char *p = text; *p; p++)
		parts += *p == ';';
	const char **urls = config_arena_alloc(a, parts * sizeof *urls);
	if (!urls)
		return WARREN_ENOMEM;
	size_t n = 0;
	for (const char *p = text;;) {
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len && !(urls[n++] = config_arena_strndup(a, p, len)))
			return WARREN_ENOMEM;
		if (!end)
			break;
		p = end + 1;
	}
	*out = urls;
	*n_out = n;
	return 0;
}

/* One URL string (maybe ';'-separated, as Celery's broker_url) appended to the list. */
static int parse_url_text(config_ctx *ctx, const config_node *n, const char *const **urls,
			  size_t *n_urls)
{
	const char *text;
	int rc = config_get_string(ctx, n, &text);
	if (rc)
		return rc;
	const char *const *parts;
	size_t n_parts;
	if (config_split_urls(ctx->arena, text, &parts, &n_parts))
		return config_fail_nomem(ctx);
	if (n_parts == 0)
		return config_fail_expected(ctx, n, "a URL");
	for (size_t i = 0; i < n_parts; i++)
		if ((rc = config_check_url(ctx, n, parts[i], config_broker_schemes)))
			return rc;
	const char **all = config_arena_alloc(ctx->arena, (*n_urls + n_parts) * sizeof *all);
	if (!all)
		return config_fail_nomem(ctx);
	if (*n_urls)
		memcpy(all, *urls, *n_urls * sizeof *all);
	memcpy(all + *n_urls, parts, n_parts * sizeof *all);
	*urls = all;
	*n_urls += n_parts;
	return 0;
}

static int parse_urls(config_ctx *ctx, const config_node *n, config_broker *b)
{
	if (n->kind != CONFIG_NODE_SEQ || n->n_items == 0)
		return config_fail_expected(ctx, n, "a non-empty sequence of URLs");
	for (size_t i = 0; i < n->n_items; i++) {
		size_t old = config_path_push_index(ctx, i);
		int rc = parse_url_text(ctx, n->items[i], &b->urls, &b->n_urls);
		config_path_pop(ctx, old);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_tls(config_ctx *ctx, const config_node *n, config_tls *tls)
{
	static const char *const keys[] = { "ca", "cert", "key", "verify", NULL };
	int rc = config_expect_map(ctx, n);
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "ca"))
			rc = config_get_string(ctx, v, &tls->ca);
		else if (!strcmp(k->text, "cert"))
			rc = config_get_string(ctx, v, &tls->cert);
		else if (!strcmp(k->text, "key"))
			rc = config_get_string(ctx, v, &tls->key);
		else if (!strcmp(k->text, "verify"))
			rc = config_get_bool(ctx, v, &tls->verify);
		else
			rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
	}
	if (rc == 0 && !tls->cert != !tls->key)
		rc = config_fail(ctx, n, "cert and key must be given together");
	return rc;
}

static int parse_broker_key(config_ctx *ctx, const config_node *k, const config_node *v,
			    config_broker *b)
{
	static const char *const keys[] = { "url", "urls", "heartbeat", "connect_timeout",
					    "prefetch_multiplier", "connection_retry_on_startup",
					    "tls", NULL };
	if (!strcmp(k->text, "url") || !strcmp(k->text, "urls")) {
		if (b->n_urls)
			return config_fail(ctx, k, "give either url or urls, not both");
		return k->text[3] ? parse_urls(ctx, v, b) : parse_url_text(ctx, v, &b->urls, &b->n_urls);
	}
	if (!strcmp(k->text, "heartbeat"))
		return config_get_int32(ctx, v, 0, 65535, &b->heartbeat);
	if (!strcmp(k->text, "connect_timeout"))
		return config_get_seconds(ctx, v, &b->connect_timeout);
	if (!strcmp(k->text, "prefetch_multiplier"))
		return config_get_int32(ctx, v, 0, 65535, &b->prefetch_multiplier);
	if (!strcmp(k->text, "connection_retry_on_startup"))
		return config_get_bool(ctx, v, &b->connection_retry_on_startup);
	if (!strcmp(k->text, "tls"))
		return parse_tls(ctx, v, &b->tls);
	return config_fail_unknown_key(ctx, k, keys);
}

int config_parse_broker(config_ctx *ctx, const config_node *node)
{
	config_broker *b = &ctx->cfg->broker;
	*b = (config_broker){ .heartbeat = 60, .connect_timeout = 4, .prefetch_multiplier = 4,
			      .connection_retry_on_startup = 1, .tls = { .verify = 1 } };
	int rc = 0;
	if (node) {
		size_t old = config_path_push(ctx, "broker");
		rc = config_expect_map(ctx, node);
		for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
			size_t key_old = config_path_push(ctx, node->pairs[i].key->text);
			rc = parse_broker_key(ctx, node->pairs[i].key, node->pairs[i].value, b);
			config_path_pop(ctx, key_old);
		}
		config_path_pop(ctx, old);
	}
	if (rc == 0 && b->n_urls == 0) {
		b->urls = default_broker_urls;
		b->n_urls = 1;
	}
	return rc;
}

static int parse_backend_url(config_ctx *ctx, const config_node *n, config_result_backend *rb)
{
	const char *url;
	int rc = config_get_string(ctx, n, &url);
	if (rc)
		return rc;
	if (!strcmp(url, "none")) {
		rb->kind = CONFIG_BACKEND_NONE;
		rb->url = NULL;
		return 0;
	}
	if (!config_url_scheme_ok(url, config_backend_schemes))
		return config_fail_expected(ctx, n,
					    "none or a URL with scheme rpc://, redis:// or rediss://");
	rb->kind = !strncmp(url, "rpc", 3) ? CONFIG_BACKEND_RPC : CONFIG_BACKEND_REDIS;
	rb->url = url;
	return 0;
}

static int parse_backend_map(config_ctx *ctx, const config_node *n, config_result_backend *rb)
{
	static const char *const keys[] = { "url", "result_expires", NULL };
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "url"))
			rc = parse_backend_url(ctx, v, rb);
		else if (!strcmp(k->text, "result_expires"))
			rc = config_get_int(ctx, v, 0, 1000000000, &rb->result_expires);
		else
			rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
	}
	return rc;
}

int config_parse_result_backend(config_ctx *ctx, const config_node *node)
{
	config_result_backend *rb = &ctx->cfg->result_backend;
	*rb = (config_result_backend){ .kind = CONFIG_BACKEND_NONE, .result_expires = 86400 };
	if (!node || (node->kind == CONFIG_NODE_SCALAR &&
		      config_scalar_kind_of(node) == CONFIG_SCALAR_NULL))
		return 0;
	size_t old = config_path_push(ctx, "result_backend");
	int rc = node->kind == CONFIG_NODE_MAP ? parse_backend_map(ctx, node, rb)
					       : parse_backend_url(ctx, node, rb);
	config_path_pop(ctx, old);
	return rc;
}
