/* config/load.c - config_load(): file or memory to a validated warren_config.
 *
 * Parsing happens in two passes: tree.c turns YAML into nodes (syntax,
 * limits, duplicate keys), then one parser per top-level section fills the
 * structs and checks meaning. Sections are parsed in dependency order
 * (exchanges before queues, queues before routes) whatever order the file
 * has them in, so cross-references can be checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const char *const top_level_keys[] = {
	"broker", "exchanges", "queues",	 "task_default_queue", "task_routes",
	"tasks",  "worker",    "result_backend", "pipelines",	       "pipelines_dir",
	NULL,
};

static int check_top_level_keys(config_ctx *ctx, const config_node *root)
{
	for (size_t i = 0; i < root->n_pairs; i++) {
		const config_node *key = root->pairs[i].key;
		size_t k = 0;
		while (top_level_keys[k] && strcmp(top_level_keys[k], key->text))
			k++;
		if (top_level_keys[k])
			continue;
		size_t old = config_path_push(ctx, key->text);
		int rc = config_fail_unknown_key(ctx, key, top_level_keys);
		config_path_pop(ctx, old);
		return rc;
	}
	return 0;
}

static int parse_default_queue(config_ctx *ctx, const config_node *node)
{
	ctx->cfg->task_default_queue = "celery";
	if (!node)
		return 0;
	size_t old = config_path_push(ctx, "task_default_queue");
	int rc = config_get_string(ctx, node, &ctx->cfg->task_default_queue);
	config_path_pop(ctx, old);
	return rc;
}

typedef int (*section_parser)(config_ctx *ctx, const config_node *node);

static int parse_sections(config_ctx *ctx, const config_node *root)
{
	static const struct {
		const char *key;
		section_parser parse;
	} sections[] = {
		{ "task_default_queue", parse_default_queue },
		{ "broker", config_parse_broker },
		{ "result_backend", config_parse_result_backend },
		{ "exchanges", config_parse_exchanges },
		{ "queues", config_parse_queues },
		{ "task_routes", config_parse_routes },
		{ "tasks", config_parse_tasks },
		{ "worker", config_parse_worker },
	};
	int rc = check_top_level_keys(ctx, root);
	for (size_t i = 0; rc == 0 && i < sizeof sections / sizeof sections[0]; i++)
		rc = sections[i].parse(ctx, config_node_get(root, sections[i].key));
	/* Last: pipelines are checked against tasks and the result backend. */
	if (rc == 0)
		rc = config_parse_pipelines(ctx, root);
	return rc;
}

int config_load_string(const char *text, size_t len, const char *name, warren_config **out,
		       warren_error *err)
{
	static const config_node empty_map = { .kind = CONFIG_NODE_MAP, .line = 1, .column = 1 };
	if (!name)
		name = "<string>";
	if (!text && len)
		return warren_error_set(err, WARREN_EINVAL, "%s: no text", name);
	if (!text)
		text = ""; /* libyaml wants a buffer even when it is empty */
	if (len > CONFIG_MAX_INPUT_BYTES)
		return warren_error_set(err, WARREN_ELIMIT, "%s: larger than %d bytes", name,
					CONFIG_MAX_INPUT_BYTES);
	warren_config *cfg = calloc(1, sizeof *cfg);
	if (!cfg)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", name);
	int rc;
	cfg->arena = config_arena_new();
	if (!cfg->arena || !(cfg->name = config_arena_strndup(cfg->arena, name, strlen(name)))) {
		rc = warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", name);
		goto out_free;
	}
	const config_node *root = NULL;
	rc = config_tree_parse(text, len, cfg->name, cfg->arena, &root, err);
	if (rc)
		goto out_free;
	config_ctx ctx = { .file = cfg->name, .cfg = cfg, .arena = cfg->arena, .err = err };
	/* An empty file, or one holding only comments, is all defaults. */
	if (!root || (root->kind == CONFIG_NODE_SCALAR &&
		      config_scalar_kind_of(root) == CONFIG_SCALAR_NULL))
		root = &empty_map;
	if (root->kind != CONFIG_NODE_MAP) {
		rc = config_fail_expected(&ctx, root, "a mapping of sections at the top level");
		goto out_free;
	}
	rc = parse_sections(&ctx, root);
	if (rc)
		goto out_free;
	*out = cfg;
	return 0;
out_free:
	config_free(cfg);
	return rc;
}

/* Reads at most CONFIG_MAX_INPUT_BYTES + 1 so a huge file is refused
 * without being read whole. */
static int read_file(const char *path, char **text, size_t *len, warren_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return warren_error_set(err, WARREN_EIO, "%s: cannot open: %s", path, strerror(errno));
	int rc = 0;
	char *buf = malloc(CONFIG_MAX_INPUT_BYTES + 1);
	if (!buf) {
		rc = warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	size_t got = fread(buf, 1, CONFIG_MAX_INPUT_BYTES + 1, f);
	if (ferror(f)) {
		rc = warren_error_set(err, WARREN_EIO, "%s: cannot read: %s", path, strerror(errno));
		goto out_free;
	}
	if (got > CONFIG_MAX_INPUT_BYTES) {
		rc = warren_error_set(err, WARREN_ELIMIT, "%s: larger than %d bytes", path,
				      CONFIG_MAX_INPUT_BYTES);
		goto out_free;
	}
	fclose(f);
	*text = buf;
	*len = got;
	return 0;
out_free:
	free(buf);
out_close:
	fclose(f);
	return rc;
}

int config_load(const char *path, warren_config **out, warren_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len, err);
	if (rc)
		return rc;
	rc = config_load_string(text, len, path, out, err);
	free(text);
	return rc;
}

void config_free(warren_config *cfg)
{
	if (!cfg)
		return;
	config_arena_free(cfg->arena);
	free(cfg);
}

int config_apply_env(warren_config *cfg, config_getenv_fn getenv_fn, warren_error *err)
{
	const char *broker = getenv_fn("WARREN_BROKER_URL");
	const char *backend = getenv_fn("WARREN_RESULT_BACKEND");
	const char *const *urls = NULL;
	size_t n_urls = 0;
	config_result_backend rb = cfg->result_backend;

	if (broker && *broker) {
		if (config_split_urls(cfg->arena, broker, &urls, &n_urls))
			return warren_error_set(err, WARREN_ENOMEM, "WARREN_BROKER_URL: out of memory");
		for (size_t i = 0; i < n_urls; i++)
			if (!config_url_scheme_ok(urls[i], config_broker_schemes))
				return warren_error_set(err, WARREN_ECONFIG,
							"WARREN_BROKER_URL: expected a URL with "
							"scheme amqp:// or amqps://, got \"%.64s\"",
							urls[i]);
		if (n_urls == 0)
			return warren_error_set(err, WARREN_ECONFIG,
						"WARREN_BROKER_URL: expected a URL, got \"%.64s\"",
						broker);
	}
	if (backend && *backend) {
		if (!strcmp(backend, "none")) {
			rb.kind = CONFIG_BACKEND_NONE;
			rb.url = NULL;
		} else if (config_url_scheme_ok(backend, config_backend_schemes)) {
			rb.kind = !strncmp(backend, "rpc", 3) ? CONFIG_BACKEND_RPC : CONFIG_BACKEND_REDIS;
			rb.url = config_arena_strndup(cfg->arena, backend, strlen(backend));
			if (!rb.url)
				return warren_error_set(err, WARREN_ENOMEM,
							"WARREN_RESULT_BACKEND: out of memory");
		} else {
			return warren_error_set(err, WARREN_ECONFIG,
						"WARREN_RESULT_BACKEND: expected none or a URL with "
						"scheme rpc://, redis:// or rediss://, got \"%.64s\"",
						backend);
		}
	}
	/* Only now, with both checked, so that a failure changes nothing. */
	if (n_urls) {
		cfg->broker.urls = urls;
		cfg->broker.n_urls = n_urls;
	}
	cfg->result_backend = rb;
	return 0;
}
