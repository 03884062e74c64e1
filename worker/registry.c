/* worker/registry.c - the task registry: task name -> handler and options.
 *
 * Entries live in one array in registration order (for listings); an
 * open-addressing hash table of indexes into it answers lookups in O(1) for
 * the several thousand names a big deployment may register. The registry is
 * filled at start-up on one thread and only read afterwards, so lookups from
 * pool threads and prefork children need no lock.
 *
 * A plugin's registrations are a transaction: registry_adopt_plugin() runs
 * its init and, if anything fails, truncates the array back to where it was
 * and rebuilds the hash table, so no entry ever points into a dlclose()d
 * object.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define TASK_NAME_MAX 255
/* Entries the worker registers itself point here (compared by address). */
static const char BUILTIN_PATH[] = "<builtin>";

typedef struct loaded_plugin {
	char *path;
	void *handle;
} loaded_plugin;

struct registry {
	warren_registry base; /* first: plugins get &base */

	registry_entry *entries;
	size_t n_entries, cap_entries;
	uint32_t *slots; /* entry index + 1; 0 = empty */
	size_t n_slots;  /* a power of two, at least twice n_entries */

	loaded_plugin *plugins;
	size_t n_plugins, cap_plugins;

	/* the plugin whose init is running, if any */
	const char *pending_path;
	warren_error pending_err;   /* a registration it made failed */
	char pending_msg[WARREN_ERROR_MSG_MAX]; /* its warren_plugin_error() */
};

static uint64_t hash_name(const char *name, size_t len)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t find_slot(const registry *reg, const char *name, size_t len)
{
	size_t mask = reg->n_slots - 1;
	size_t i = (size_t)hash_name(name, len) & mask;
	for (;;) {
		uint32_t s = reg->slots[i];
		if (s == 0)
			return i;
		const registry_entry *e = &reg->entries[s - 1];
		if (e->name_len == len && memcmp(e->name, name, len) == 0)
			return i;
		i = (i + 1) & mask;
	}
}

/* Refills the hash table from the entries (no allocation: used on rollback). */
static void reindex(registry *reg)
{
	memset(reg->slots, 0, reg->n_slots * sizeof *reg->slots);
	for (size_t i = 0; i < reg->n_entries; i++) {
		const registry_entry *e = &reg->entries[i];
		reg->slots[find_slot(reg, e->name, e->name_len)] = (uint32_t)(i + 1);
	}
}

static int rebuild_slots(registry *reg, size_t n_slots)
{
	uint32_t *slots = calloc(n_slots, sizeof *slots);
	if (!slots)
		return WARREN_ENOMEM;
	free(reg->slots);
	reg->slots = slots;
	reg->n_slots = n_slots;
	reindex(reg);
	return 0;
}

int registry_new(registry **out, warren_error *err)
{
	registry *reg = calloc(1, sizeof *reg);
	if (!reg)
		return warren_error_set(err, WARREN_ENOMEM, "task registry: out of memory");
	reg->base.host = &task_host;
	if (rebuild_slots(reg, 64) != 0) {
		free(reg);
		return warren_error_set(err, WARREN_ENOMEM, "task registry: out of memory");
	}
	*out = reg;
	return 0;
}

static void drop_entries_from(registry *reg, size_t first)
{
	for (size_t i = first; i < reg->n_entries; i++)
		free((char *)reg->entries[i].name);
	reg->n_entries = first;
}

void registry_free(registry *reg)
{
	if (!reg)
		return;
	drop_entries_from(reg, 0);
	free(reg->entries);
	free(reg->slots);
	/* Reverse load order: a later plugin may have been linked against an
	 * earlier one's library. */
	for (size_t i = reg->n_plugins; i-- > 0;) {
		dlclose(reg->plugins[i].handle);
		free(reg->plugins[i].path);
	}
	free(reg->plugins);
	free(reg);
}

const registry_entry *registry_lookup(const registry *reg, const char *name, size_t len)
{
	uint32_t s = reg->slots[find_slot(reg, name, len)];
	return s ? &reg->entries[s - 1] : NULL;
}

size_t registry_count(const registry *reg)
{
	return reg->n_entries;
}

const registry_entry *registry_at(const registry *reg, size_t i)
{
	return i < reg->n_entries ? &reg->entries[i] : NULL;
}

int registry_parse_rate(const char *text, double *per_second, warren_error *err)
{
	char *end;
	double n = strtod(text, &end);
	double unit = 1.0;
	if (end == text || !isfinite(n) || n < 0)
		goto bad;
	if (strcmp(end, "/s") == 0)
		unit = 1.0;
	else if (strcmp(end, "/m") == 0)
		unit = 60.0;
	else if (strcmp(end, "/h") == 0)
		unit = 3600.0;
	else if (*end != '\0')
		goto bad;
	*per_second = n / unit;
	return 0;
bad:
	return warren_error_set(err, WARREN_EINVAL,
				"rate limit '%s': expected N/s, N/m, N/h or N", text);
}

/* ---- option checks: each returns 0 or sets err "task 'x': why" ---------- */

static bool valid_switch(warren_switch s)
{
	return s == WARREN_UNSET || s == WARREN_ON || s == WARREN_OFF;
}

static int check_schema(const char *name, const warren_task_schema *s, warren_error *err)
{
	if (s->n_params > 0 && !s->params)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': schema has %zu params but no array",
					name, s->n_params);
	for (size_t i = 0; i < s->n_params; i++) {
		const warren_param *p = &s->params[i];
		if (!p->name || !*p->name)
			return warren_error_set(err, WARREN_EINVAL, "task '%s': schema param %zu has no name",
						name, i);
		if (strcmp(warren_type_name(p->type), "?") == 0)
			return warren_error_set(err, WARREN_EINVAL, "task '%s': param '%s': bad type %d",
						name, p->name, (int)p->type);
		if (p->default_mp && !task_msgpack_check(p->default_mp, p->default_len))
			return warren_error_set(err, WARREN_EINVAL,
						"task '%s': param '%s': default is not one msgpack object",
						name, p->name);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->params[j].name, p->name) == 0)
				return warren_error_set(err, WARREN_EINVAL,
							"task '%s': param '%s' declared twice", name, p->name);
	}
	return 0;
}

static int check_limits(const char *name, const warren_task_options *o, warren_error *err)
{
	if (!(o->soft_time_limit >= 0) || !(o->time_limit >= 0))
		return warren_error_set(err, WARREN_EINVAL, "task '%s': negative time limit", name);
	if (o->soft_time_limit > 0 && o->time_limit > 0 && o->soft_time_limit > o->time_limit)
		return warren_error_set(err, WARREN_EINVAL,
					"task '%s': soft time limit %g s is longer than the hard one %g s",
					name, o->soft_time_limit, o->time_limit);
	if (o->max_retries < WARREN_RETRIES_FOREVER)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': bad max_retries %d", name,
					o->max_retries);
	if (!(o->default_retry_delay >= 0) || !(o->retry_backoff >= 0) ||
	    !(o->retry_backoff_max >= 0))
		return warren_error_set(err, WARREN_EINVAL, "task '%s': negative retry delay or backoff",
					name);
	if (!valid_switch(o->retry_jitter) || !valid_switch(o->acks_late) ||
	    !valid_switch(o->ignore_result) || !valid_switch(o->track_started))
		return warren_error_set(err, WARREN_EINVAL, "task '%s': a switch option is not "
					"WARREN_UNSET, WARREN_ON or WARREN_OFF", name);
	return 0;
}

#define EXT_SIZE_MAX 4096 /* a larger ext.size is not a struct a plugin built */

/* A field appended to warren_task_options_ext must make it larger, or an
 * older worker would take a newer plugin's option for padding: keep the
 * struct free of tail padding (add explicit reserved fields if needed). */
_Static_assert(sizeof(warren_task_options_ext) ==
		       offsetof(warren_task_options_ext, reject_on_worker_lost) +
			       sizeof(warren_switch),
	       "warren_task_options_ext has tail padding: see plugin.h");

/* Copies what the worker knows of a plugin's ext into *out (its own size),
 * after checking it: err gets "task 'x': why". NULL ext: all unset. */
static int read_ext(const char *name, const warren_task_options_ext *ext,
		    warren_task_options_ext *out, warren_error *err)
{
	*out = (warren_task_options_ext){.size = sizeof *out};
	if (!ext)
		return 0;
	size_t n = ext->size;
	if (n < sizeof ext->size || n > EXT_SIZE_MAX)
		return warren_error_set(err, WARREN_EINVAL,
					"task '%s': warren_task_options_ext.size is %zu; set it to "
					"sizeof(warren_task_options_ext)", name, n);
	/* An ext.size is the plugin's sizeof: every byte up to it is readable. */
	/* Fields past the plugin's size are unset; past ours, must be unset. */
	memcpy(out, ext, n < sizeof *out ? n : sizeof *out);
	out->size = sizeof *out;
	for (size_t i = sizeof *out; i < n; i++)
		if (((const unsigned char *)ext)[i] != 0)
			return warren_error_set(err, WARREN_EINVAL,
						"task '%s': warren_task_options_ext sets an option "
						"this worker does not know (byte %zu of %zu); it "
						"needs a newer warren-worker", name, i, n);
	if (!valid_switch(out->reject_on_worker_lost))
		return warren_error_set(err, WARREN_EINVAL,
					"task '%s': reject_on_worker_lost is not WARREN_UNSET, "
					"WARREN_ON or WARREN_OFF", name);
	return 0;
}

static int check_options(const char *name, const warren_task_options *o, double *rate,
			 warren_error *err)
{
	int rc = check_limits(name, o, err);
	if (rc == 0 && o->schema)
		rc = check_schema(name, o->schema, err);
	if (rc == 0 && o->rate_limit) {
		warren_error why = {0};
		rc = registry_parse_rate(o->rate_limit, rate, &why);
		if (rc != 0)
			warren_error_set(err, rc, "task '%s': %s", name, why.msg);
	}
	return rc;
}

static int check_name(const char *name, warren_task_fn fn, warren_error *err)
{
	if (!name || !*name)
		return warren_error_set(err, WARREN_EINVAL, "task name is empty");
	if (strlen(name) > TASK_NAME_MAX)
		return warren_error_set(err, WARREN_EINVAL, "task name '%.40s...' is longer than %d bytes",
					name, TASK_NAME_MAX);
	if (!fn)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': no handler function", name);
	return 0;
}

static int grow_entries(registry *reg)
{
	if (reg->n_entries < reg->cap_entries)
		return 0;
	size_t cap = reg->cap_entries ? reg->cap_entries * 2 : 16;
	registry_entry *e = realloc(reg->entries, cap * sizeof *e);
	if (!e)
		return WARREN_ENOMEM;
	reg->entries = e;
	reg->cap_entries = cap;
	return 0;
}

/* Adds one entry attributed to plugin_path; err gets "task 'x': why". */
static int add_entry(registry *reg, const char *name, warren_task_fn fn,
		     const warren_task_options *opts, const warren_task_options_ext *ext,
		     const char *plugin_path, warren_error *err)
{
	static const warren_task_options no_options;
	double rate = 0;
	warren_task_options_ext known;
	if (!opts)
		opts = &no_options;
	int rc = check_name(name, fn, err);
	if (rc == 0)
		rc = check_options(name, opts, &rate, err);
	if (rc == 0)
		rc = read_ext(name, ext, &known, err);
	if (rc != 0)
		return rc;
	size_t len = strlen(name);
	const registry_entry *old = registry_lookup(reg, name, len);
	if (old)
		return warren_error_set(err, WARREN_EINVAL, "task '%s' is already registered by %s%s%s",
					name, old->plugin_path == BUILTIN_PATH ? "" : "plugin '",
					old->plugin_path == BUILTIN_PATH ? "the worker" : old->plugin_path,
					old->plugin_path == BUILTIN_PATH ? "" : "'");
	if (grow_entries(reg) != 0)
		goto out_nomem;
	char *copy = strdup(name);
	if (!copy)
		goto out_nomem;
	reg->entries[reg->n_entries++] = (registry_entry){
		.name = copy, .name_len = len, .fn = fn, .opts = *opts, .ext = known,
		.rate_per_second = rate, .plugin_path = plugin_path,
	};
	if (reg->n_entries * 2 > reg->n_slots &&
	    rebuild_slots(reg, reg->n_slots * 2) != 0)
		goto out_drop;
	reg->slots[find_slot(reg, name, len)] = (uint32_t)reg->n_entries;
	return 0;
out_drop:
	drop_entries_from(reg, reg->n_entries - 1);
out_nomem:
	return warren_error_set(err, WARREN_ENOMEM, "task '%s': out of memory", name);
}

int registry_add(registry *reg, const char *name, warren_task_fn fn,
		 const warren_task_options *opts, warren_error *err)
{
	return add_entry(reg, name, fn, opts, NULL, BUILTIN_PATH, err);
}

/* ---- registration from a plugin, through the host table ------------------ */

int registry_host_register(warren_registry *base, const char *name, warren_task_fn fn,
			   const warren_task_options *opts)
{
	return registry_host_register_ext(base, name, fn, opts, NULL);
}

int registry_host_register_ext(warren_registry *base, const char *name, warren_task_fn fn,
			       const warren_task_options *opts,
			       const warren_task_options_ext *ext)
{
	registry *reg = (registry *)base;
	if (!reg->pending_path)
		return -1; /* outside init: the registry is read-only by now */
	if (reg->pending_err.code != 0)
		return -1; /* keep the first error; the plugin fails anyway */
	warren_error why = {0};
	if (add_entry(reg, name, fn, opts, ext, reg->pending_path, &why) != 0) {
		warren_error_set(&reg->pending_err, why.code, "plugin '%s': %s", reg->pending_path,
				 why.msg);
		return -1;
	}
	return 0;
}

void registry_host_error(warren_registry *base, const char *fmt, va_list ap)
{
	registry *reg = (registry *)base;
	if (!reg->pending_path || reg->pending_msg[0] != '\0')
		return; /* first message wins */
	vsnprintf(reg->pending_msg, sizeof reg->pending_msg, fmt, ap);
}

static int grow_plugins(registry *reg)
{
	if (reg->n_plugins < reg->cap_plugins)
		return 0;
	size_t cap = reg->cap_plugins ? reg->cap_plugins * 2 : 4;
	loaded_plugin *p = realloc(reg->plugins, cap * sizeof *p);
	if (!p)
		return WARREN_ENOMEM;
	reg->plugins = p;
	reg->cap_plugins = cap;
	return 0;
}

/* The outcome of a plugin's init: the registration error, else its own. */
static int init_outcome(registry *reg, const char *path, int init_rc, warren_error *err)
{
	if (reg->pending_err.code != 0)
		return warren_error_set(err, reg->pending_err.code, "%s", reg->pending_err.msg);
	if (init_rc == 0)
		return 0;
	if (reg->pending_msg[0] == '\0')
		return warren_error_set(err, WARREN_EPLUGIN,
					"plugin '%s': init failed (returned %d) without saying why",
					path, init_rc);
	return warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': init failed: %s", path,
				reg->pending_msg);
}

int registry_adopt_plugin(registry *reg, const char *path, void *handle,
			  int (*init)(warren_registry *), warren_error *err)
{
	size_t mark = reg->n_entries;
	int rc;
	char *owned_path = strdup(path);
	if (!owned_path || grow_plugins(reg) != 0) {
		rc = warren_error_set(err, WARREN_ENOMEM, "plugin '%s': out of memory", path);
		goto out_free_path;
	}
	reg->pending_path = owned_path;
	warren_error_clear(&reg->pending_err);
	reg->pending_msg[0] = '\0';

	rc = init_outcome(reg, path, init(&reg->base), err);
	reg->pending_path = NULL;
	if (rc != 0)
		goto out_drop_entries;
	reg->plugins[reg->n_plugins++] = (loaded_plugin){.path = owned_path, .handle = handle};
	return 0;

out_drop_entries:
	drop_entries_from(reg, mark);
	reindex(reg);
out_free_path:
	free(owned_path);
	return rc;
}
