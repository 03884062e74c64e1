/* config/pipeline_dir.c - where pipelines come from: the config's own
 * `pipelines:` section, then every *.yaml file of `pipelines_dir:`.
 *
 * The folder is resolved against the config file's folder, and its files
 * are read in name order, so the first definition of a name, the one a
 * duplicate's error points back to, does not depend on readdir order. Each
 * file holds one mapping with a `pipelines:` key and nothing else; its
 * nodes go into the config's arena and its errors carry its own name.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* One parsed file of the folder. */
typedef struct dir_file {
	const char *name; /* arena copy of the path, used in messages */
	const config_node *section;
} dir_file;

static int read_text(config_ctx *ctx, const config_node *at, const char *path, char **text,
		     size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return config_fail(ctx, at, "cannot open '%s': %s", path, strerror(errno));
	int rc = 0;
	char *buf = malloc(CONFIG_MAX_INPUT_BYTES + 1);
	size_t got = buf ? fread(buf, 1, CONFIG_MAX_INPUT_BYTES + 1, f) : 0;
	if (!buf)
		rc = config_fail_nomem(ctx);
	else if (ferror(f))
		rc = config_fail(ctx, at, "cannot read '%s': %s", path, strerror(errno));
	else if (got > CONFIG_MAX_INPUT_BYTES)
		rc = warren_error_set(ctx->err, WARREN_ELIMIT, "%s: larger than %d bytes", path,
				      CONFIG_MAX_INPUT_BYTES);
	fclose(f);
	if (rc) {
		free(buf);
		return rc;
	}
	*text = buf;
	*len = got;
	return 0;
}

/* The file's `pipelines:` mapping (NULL when the file is empty). */
static int file_section(config_ctx *ctx, const config_node *root, const config_node **section)
{
	static const char *const keys[] = { "pipelines", NULL };
	*section = NULL;
	if (!root || (root->kind == CONFIG_NODE_SCALAR &&
		      config_scalar_kind_of(root) == CONFIG_SCALAR_NULL))
		return 0;
	if (root->kind != CONFIG_NODE_MAP)
		return config_fail_expected(ctx, root, "a mapping with pipelines");
	for (size_t i = 0; i < root->n_pairs; i++) {
		const config_node *k = root->pairs[i].key;
		if (!strcmp(k->text, "pipelines"))
			continue;
		size_t old = config_path_push(ctx, k->text);
		int rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
		return rc;
	}
	*section = config_node_get(root, "pipelines");
	return 0;
}

static int load_file(config_ctx *ctx, const config_node *at, const char *path, dir_file *out)
{
	char *text = NULL;
	size_t len = 0;
	int rc = read_text(ctx, at, path, &text, &len);
	if (rc)
		return rc;
	const config_node *root = NULL;
	out->name = config_arena_strndup(ctx->arena, path, strlen(path));
	if (!out->name)
		rc = config_fail_nomem(ctx);
	else
		rc = config_tree_parse(text, len, out->name, ctx->arena, &root, ctx->err);
	free(text);
	if (rc)
		return rc;
	/* The file's errors name the file and paths from its own top. */
	config_ctx file_ctx = *ctx;
	file_ctx.file = out->name;
	file_ctx.path[0] = '\0';
	file_ctx.path_len = 0;
	return file_section(&file_ctx, root, &out->section);
}

/* dir relative to the folder of the config file, in the arena. */
static int resolve_dir(config_ctx *ctx, const char *dir, const char **out)
{
	const char *slash = strrchr(ctx->cfg->name, '/');
	size_t base = dir[0] == '/' || !slash ? 0 : (size_t)(slash - ctx->cfg->name) + 1;
	size_t len = base + strlen(dir);
	char *path = config_arena_alloc(ctx->arena, len + 1);
	if (!path)
		return config_fail_nomem(ctx);
	memcpy(path, ctx->cfg->name, base);
	memcpy(path + base, dir, strlen(dir) + 1);
	*out = path;
	return 0;
}

static int glob_dir(config_ctx *ctx, const config_node *at, const char *dir, glob_t *g)
{
	char pattern[4096];
	if ((size_t)snprintf(pattern, sizeof pattern, "%s/*.yaml", dir) >= sizeof pattern)
		return config_fail(ctx, at, "folder name too long");
	int grc = glob(pattern, GLOB_ERR, NULL, g);
	if (grc == 0)
		return 0;
	if (grc == GLOB_NOMATCH || grc == GLOB_ABORTED) {
		/* No file is fine; no folder is a mistake worth a message. */
		DIR *d = opendir(dir);
		if (!d)
			return config_fail(ctx, at, "cannot open folder '%s': %s", dir,
					   strerror(errno));
		closedir(d);
		if (grc == GLOB_ABORTED)
			return config_fail(ctx, at, "cannot read folder '%s'", dir);
		return 0;
	}
	if (grc == GLOB_NOSPACE)
		return config_fail_nomem(ctx);
	return config_fail(ctx, at, "cannot read folder '%s'", dir);
}

/* Parses every file of the folder; *files and *n_files in the arena. */
static int load_dir(config_ctx *ctx, const config_node *at, dir_file **files, size_t *n_files)
{
	glob_t g = { 0 };
	int rc = glob_dir(ctx, at, ctx->cfg->pipelines_dir, &g);
	if (rc)
		return rc;
	size_t n = g.gl_pathc;
	dir_file *list = config_arena_alloc(ctx->arena, (n ? n : 1) * sizeof *list);
	if (!list)
		rc = config_fail_nomem(ctx);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = load_file(ctx, at, g.gl_pathv[i], &list[i]);
	if (n)
		globfree(&g);
	if (rc == 0) {
		*files = list;
		*n_files = n;
	}
	return rc;
}

static size_t count_entries(const config_node *section)
{
	return section && section->kind == CONFIG_NODE_MAP ? section->n_pairs : 0;
}

static int read_all(config_ctx *ctx, const config_node *section, const dir_file *files,
		    size_t n_files)
{
	size_t total = count_entries(section), n = 0;
	for (size_t i = 0; i < n_files; i++)
		total += count_entries(files[i].section);
	pipeline_def *defs = config_arena_alloc(ctx->arena, (total ? total : 1) * sizeof *defs);
	if (!defs)
		return config_fail_nomem(ctx);
	int rc = section ? config_pipeline_read_section(ctx, section, defs, &n) : 0;
	const char *file = ctx->file;
	for (size_t i = 0; rc == 0 && i < n_files; i++) {
		ctx->file = files[i].name;
		if (files[i].section)
			rc = config_pipeline_read_section(ctx, files[i].section, defs, &n);
	}
	ctx->file = file;
	if (rc == 0) {
		ctx->cfg->pipeline_defs = defs;
		ctx->cfg->n_pipelines = n;
	}
	return rc;
}

int config_parse_pipelines(config_ctx *ctx, const config_node *root)
{
	const config_node *section = config_node_get(root, "pipelines");
	const config_node *dir = config_node_get(root, "pipelines_dir");
	dir_file *files = NULL;
	size_t n_files = 0;
	int rc = 0;
	ctx->cfg->pipelines = section;
	if (dir) {
		const char *text;
		size_t old = config_path_push(ctx, "pipelines_dir");
		rc = config_get_string(ctx, dir, &text);
		if (rc == 0)
			rc = resolve_dir(ctx, text, &ctx->cfg->pipelines_dir);
		if (rc == 0)
			rc = load_dir(ctx, dir, &files, &n_files);
		config_path_pop(ctx, old);
	}
	if (rc == 0 && (section || n_files))
		rc = read_all(ctx, section, files, n_files);
	return rc;
}
