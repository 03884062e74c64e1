/* config/config.h - warren's YAML configuration: the loaded structs and the loader.
 *
 * config_load() reads one YAML document with libyaml into a small generic node
 * tree (map/seq/scalar, each with its line and column), then interprets each
 * top-level section into the plain structs below, filling Celery's defaults
 * for absent keys. Every error names file:line:column, the dotted key path
 * and what was expected.
 *
 * Ownership: one warren_config owns everything reachable from it (strings,
 * arrays, schemas, the pipelines node tree) in one arena. Every pointer a
 * getter or a struct field hands out lives until config_free().
 *
 * This header is private to the project (not installed): producer/ and
 * worker/ include it, other folders do not need it.
 */
#ifndef WARREN_CONFIG_H
#define WARREN_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "warren/error.h"
#include "warren/params.h"

/* Hard limits on untrusted input. A document over them is refused with
 * WARREN_ELIMIT rather than expanded: aliases are counted as the nodes they
 * stand for, so a "billion laughs" document stops at CONFIG_MAX_NODES. */
#define CONFIG_MAX_INPUT_BYTES (1024 * 1024)
#define CONFIG_MAX_NODES 100000
#define CONFIG_MAX_DEPTH 64
/* Exchanges, queues, routes and tasks are looked up by linear search while
 * loading; this bound keeps that quadratic cost well under a second. */
#define CONFIG_MAX_ENTRIES 10000

/* ---- generic node tree (the loader's intermediate form; pipelines) ---- */

typedef enum config_node_kind {
	CONFIG_NODE_SCALAR,
	CONFIG_NODE_SEQ,
	CONFIG_NODE_MAP,
} config_node_kind;

/* What a scalar means under the YAML 1.2 core schema (plain style), or its
 * explicit tag (!!str, !!int, ...). Quoted and block scalars are strings. */
typedef enum config_scalar_kind {
	CONFIG_SCALAR_NULL,
	CONFIG_SCALAR_BOOL,
	CONFIG_SCALAR_INT,
	CONFIG_SCALAR_FLOAT,
	CONFIG_SCALAR_STR,
} config_scalar_kind;

typedef struct config_node config_node;

typedef struct config_pair {
	const config_node *key; /* always a scalar */
	const config_node *value;
} config_pair;

/* A node lives in its config's arena. An alias is not copied: the parent
 * points at the anchored node again, so a node may have several parents. */
struct config_node {
	config_node_kind kind;
	unsigned line, column; /* 1-based, where the node starts */
	const char *tag;       /* explicit tag as libyaml resolved it, or NULL */
	/* CONFIG_NODE_SCALAR: NUL-terminated text (NUL inside is refused) */
	const char *text;
	size_t len;
	int plain; /* plain style: subject to core-schema resolution */
	/* CONFIG_NODE_SEQ */
	const config_node *const *items;
	size_t n_items;
	/* CONFIG_NODE_MAP, in document order; keys merged by "<<" follow */
	const config_pair *pairs;
	size_t n_pairs;
	/* bookkeeping for the limits */
	size_t weight;   /* nodes in this subtree with aliases expanded */
	unsigned height; /* 1 for a scalar */
};

/* The scalar kind of n (a scalar node). */
config_scalar_kind config_scalar_kind_of(const config_node *n);

/* The value under key in map node n, or NULL (also when n is not a map). */
const config_node *config_node_get(const config_node *n, const char *key);

/* ---- the loaded configuration ---- */

typedef struct config_tls {
	const char *ca, *cert, *key; /* NULL when not set */
	int verify;                  /* default 1 */
} config_tls;

typedef struct config_broker {
	const char *const *urls; /* at least one, in failover order */
	size_t n_urls;
	int heartbeat;           /* seconds, default 60, 0 disables */
	double connect_timeout;  /* seconds, default 4 (Celery's) */
	int prefetch_multiplier; /* default 4, 0 = unlimited */
	int connection_retry_on_startup; /* default 1 (Celery's); 0: an unreachable
					  * broker at start is an error at once */
	config_tls tls;
} config_broker;

typedef enum config_exchange_type {
	CONFIG_EXCHANGE_DIRECT,
	CONFIG_EXCHANGE_TOPIC,
	CONFIG_EXCHANGE_FANOUT,
	CONFIG_EXCHANGE_HEADERS,
} config_exchange_type;

typedef struct config_exchange {
	const char *name;
	config_exchange_type type; /* default direct */
	int durable;               /* default 1 */
	unsigned line, column;
} config_exchange;

typedef enum config_queue_type {
	CONFIG_QUEUE_CLASSIC,
	CONFIG_QUEUE_QUORUM,
} config_queue_type;

typedef struct config_queue {
	const char *name;
	const char *exchange;               /* default: the queue's name */
	config_exchange_type exchange_type; /* default direct, or the declared exchange's */
	const char *routing_key;            /* default: the queue's name */
	int durable;                        /* default 1; quorum queues must be */
	config_queue_type type;             /* default classic */
	int max_priority;                   /* 1-255, 0 = none; classic only */
	const char *dead_letter_exchange;   /* NULL = none */
	const char *dead_letter_routing_key; /* NULL = keep the message's */
	int delivery_limit;                 /* quorum only, 0 = none */
	long long message_ttl_ms;           /* x-message-ttl, -1 = none (YAML: seconds) */
	long long expires_ms;               /* x-expires, -1 = none (YAML: seconds) */
	unsigned line, column;
} config_queue;

/* One task_routes entry. exchange and routing_key are resolved at load as
 * Celery does: from the queue's declaration, else the queue's name; the
 * producer applies the anonymous-exchange shortcut for direct exchanges. */
typedef struct config_route {
	const char *pattern; /* fnmatch glob on the task name */
	const char *queue;   /* NULL when the route names only an exchange */
	const char *exchange;
	const char *routing_key;
	unsigned line, column;
} config_route;

typedef struct config_task {
	const char *name;
	double rate_limit;          /* tasks per second, 0 = unlimited */
	double time_limit;          /* hard, seconds, 0 = none */
	double soft_time_limit;     /* seconds, 0 = none; <= time_limit */
	int max_retries;            /* default 3, -1 = unlimited (YAML null) */
	int retry_backoff;          /* factor in seconds, 0 = off (true = 1) */
	int retry_backoff_max;      /* seconds, default 600 */
	int retry_jitter;           /* default 1 */
	double default_retry_delay; /* seconds, default 180 */
	int acks_late;              /* default 1 (warren's default, see DESIGN.md) */
	int ignore_result;          /* default 0 */
	int track_started;          /* default 0 */
	int reject_on_worker_lost;  /* default 0: a dead child fails the task (Celery's) */
	int has_schema;             /* nonzero when args/result/extra_* were given */
	warren_task_schema schema;  /* params and default_mp live in the arena */
	unsigned line, column;
} config_task;

typedef enum config_pool {
	CONFIG_POOL_PREFORK, /* Celery's default */
	CONFIG_POOL_THREADS,
} config_pool;

typedef enum config_log_format {
	CONFIG_LOG_TEXT,
	CONFIG_LOG_JSON,
} config_log_format;

typedef enum config_log_level {
	CONFIG_LOG_DEBUG,
	CONFIG_LOG_INFO,
	CONFIG_LOG_WARNING, /* Celery's worker default */
	CONFIG_LOG_ERROR,
	CONFIG_LOG_CRITICAL,
} config_log_level;

typedef struct config_worker {
	int concurrency; /* default: online CPUs */
	config_pool pool;
	const char *const *plugins; /* paths, as written */
	size_t n_plugins;
	const char *const *queues; /* default: task_default_queue */
	size_t n_queues;
	int max_tasks_per_child;        /* 0 = no limit */
	long long max_memory_per_child; /* KiB as Celery, 0 = no limit */
	config_log_format log_format;
	config_log_level log_level;
	const char *hostname;    /* NULL = the worker's default (celery@host) */
	int prefetch_multiplier; /* -1 = broker.prefetch_multiplier */
	int events;              /* send task events (-E), default 0 */
	double shutdown_timeout; /* seconds to wait for running tasks, 0 = no limit */
	const char *statedb;     /* revoked-ids state file; NULL = default, "" / none = off */
	struct {
		int port;            /* /metrics and /healthz; 0 (default) = off */
		const char *bind;    /* default "127.0.0.1" */
	} metrics;
} config_worker;

typedef enum config_backend_kind {
	CONFIG_BACKEND_NONE, /* Celery's default: results are not stored */
	CONFIG_BACKEND_RPC,
	CONFIG_BACKEND_REDIS,
} config_backend_kind;

typedef struct config_result_backend {
	config_backend_kind kind;
	const char *url;         /* NULL for none */
	long long result_expires; /* seconds, default 86400, 0 = never */
} config_result_backend;

typedef struct config_arena config_arena;
typedef struct pipeline_def pipeline_def; /* see "pipelines" below */

typedef struct warren_config {
	const char *name; /* the file name errors were reported against */
	config_broker broker;
	const config_exchange *exchanges;
	size_t n_exchanges;
	const config_queue *queues;
	size_t n_queues;
	const char *task_default_queue; /* default "celery" */
	const config_route *routes;     /* in match order */
	size_t n_routes;
	config_route default_route; /* what no route matches: task_default_queue */
	const config_task *tasks;
	size_t n_tasks;
	config_worker worker;
	config_result_backend result_backend;
	const config_node *pipelines; /* the `pipelines:` section as parsed; NULL when absent */
	const char *pipelines_dir;    /* resolved against the config's folder; NULL if not set */
	const pipeline_def *pipeline_defs; /* interpreted and checked: the section's
					    * pipelines, then pipelines_dir's files' */
	size_t n_pipelines;
	config_arena *arena;          /* owns everything above */
} warren_config;

/* Reads and validates the YAML file at path. On success *out is a new
 * config the caller frees with config_free(); on failure *out is untouched
 * and err says file:line:column: key.path: what was expected. */
int config_load(const char *path, warren_config **out, warren_error *err);

/* The same from memory: text need not be NUL-terminated; name is used in
 * error messages only (copied). */
int config_load_string(const char *text, size_t len, const char *name, warren_config **out,
		       warren_error *err);

/* Frees cfg and everything it owns. NULL is a no-op. */
void config_free(warren_config *cfg);

/* The environment lookup config_apply_env() uses; pass getenv, or a fake in tests. */
typedef char *(*config_getenv_fn)(const char *name);

/* Applies environment overrides: WARREN_BROKER_URL replaces the broker URLs
 * (';' separates failover URLs, as in Celery's broker_url) and
 * WARREN_RESULT_BACKEND the result backend URL. Unset or empty variables
 * change nothing. On error cfg is unchanged. */
int config_apply_env(warren_config *cfg, config_getenv_fn getenv_fn, warren_error *err);

/* The route for a task name: the first task_routes entry whose pattern
 * matches, else cfg->default_route. Never NULL; lives as long as cfg. */
const config_route *config_route_task(const warren_config *cfg, const char *task_name);

/* Lookups by exact name; NULL when not declared. Live as long as cfg. */
const config_queue *config_queue_find(const warren_config *cfg, const char *name);
const config_exchange *config_exchange_find(const warren_config *cfg, const char *name);
const config_task *config_task_find(const warren_config *cfg, const char *name);

/* Writes a human summary of cfg to out, passwords in URLs masked. */
void config_describe(const warren_config *cfg, FILE *out);

/* Static names for the enums ("direct", "quorum", ...). */
const char *config_exchange_type_name(config_exchange_type t);
const char *config_queue_type_name(config_queue_type t);
const char *config_pool_name(config_pool p);
const char *config_log_format_name(config_log_format f);
const char *config_log_level_name(config_log_level l);
const char *config_backend_kind_name(config_backend_kind k);

/* ---- inside config/ only: shared by the loader's files ---- */

/* An arena: every allocation lives until config_arena_free(). */
config_arena *config_arena_new(void);
void config_arena_free(config_arena *a);
void *config_arena_alloc(config_arena *a, size_t size); /* zeroed; NULL on ENOMEM */
char *config_arena_strndup(config_arena *a, const char *s, size_t len);
/* Tests only: every arena fails after this many more allocations (-1: never).
 * Process-wide; Criterion runs each test in its own process. */
void config_arena_fail_after(long allocations);

/* Parses YAML text into a node tree in arena. *root is NULL for an empty
 * document. Enforces the limits above, refuses duplicate keys. */
int config_tree_parse(const char *text, size_t len, const char *name, config_arena *arena,
		      const config_node **root, warren_error *err);

/* What a section parser needs: where errors go and the key path so far. */
typedef struct config_ctx {
	const char *file;
	warren_config *cfg;
	config_arena *arena;
	warren_error *err;
	char path[192];
	size_t path_len;
} config_ctx;

/* Appends ".key" (or "[i]") to the path; returns the old length for pop. */
size_t config_path_push(config_ctx *ctx, const char *key);
size_t config_path_push_index(config_ctx *ctx, size_t index);
void config_path_pop(config_ctx *ctx, size_t old_len);

/* Reports "file:line:col: path: <message>" at node n; returns WARREN_ECONFIG. */
int config_fail(config_ctx *ctx, const config_node *n, const char *fmt, ...) WARREN_PRINTF(3, 4);
/* "expected <what>, got <n as written>". */
int config_fail_expected(config_ctx *ctx, const config_node *n, const char *what);
/* "unknown key; did you mean '<nearest of known>'?" (hint only when close). */
int config_fail_unknown_key(config_ctx *ctx, const config_node *key, const char *const *known);
/* n as the user wrote it, short, quoted and printable, for "got ..."; or
 * "a mapping" / "a sequence". */
void config_got(const config_node *n, char *buf, size_t size);
/* Refuses a section with more than CONFIG_MAX_ENTRIES entries. */
int config_check_entries(config_ctx *ctx, const config_node *n, size_t count);
/* WARREN_ENOMEM with a message. */
int config_fail_nomem(config_ctx *ctx);

/* The known entry nearest to word by edit distance, if close enough; else NULL. */
const char *config_nearest(const char *word, const char *const *known);

/* Typed readers of a node; each reports its own error at the node. */
int config_expect_map(config_ctx *ctx, const config_node *n); /* a null scalar is an empty map */
int config_get_bool(config_ctx *ctx, const config_node *n, int *out);
int config_get_int(config_ctx *ctx, const config_node *n, long long min, long long max,
		   long long *out);
int config_get_int32(config_ctx *ctx, const config_node *n, int min, int max, int *out);
int config_get_seconds(config_ctx *ctx, const config_node *n, double *out);
int config_get_string(config_ctx *ctx, const config_node *n, const char **out);
int config_get_enum(config_ctx *ctx, const config_node *n, const char *const *names, int *out);
int config_get_string_list(config_ctx *ctx, const config_node *n, const char *const **out,
			   size_t *n_out);
/* A URL whose scheme is one of schemes (NULL-terminated list). */
int config_check_url(config_ctx *ctx, const config_node *n, const char *url,
		     const char *const *schemes);
int config_url_scheme_ok(const char *url, const char *const *schemes);

/* Core-schema scalar parsing, shared with the msgpack default packer. */
int config_parse_int(const char *text, long long *out);
int config_parse_float(const char *text, double *out);

/* Section parsers: node is the section's value (NULL when absent). */
int config_parse_broker(config_ctx *ctx, const config_node *node);
int config_parse_result_backend(config_ctx *ctx, const config_node *node);
int config_parse_exchanges(config_ctx *ctx, const config_node *node);
int config_parse_queues(config_ctx *ctx, const config_node *node);
int config_parse_routes(config_ctx *ctx, const config_node *node);
int config_parse_tasks(config_ctx *ctx, const config_node *node);
int config_parse_worker(config_ctx *ctx, const config_node *node);

/* Splits a ';'-separated URL list into the arena (empty parts dropped). */
int config_split_urls(config_arena *a, const char *text, const char *const **out, size_t *n_out);

extern const char *const config_broker_schemes[];  /* amqp, amqps */
extern const char *const config_backend_schemes[]; /* rpc, redis, rediss */
extern const char *const config_exchange_type_names[];

/* ==== pipelines (pipeline.c) ==== */

/* A pipeline is a tree of Celery canvas nodes declared in YAML, under
 * `pipelines:` or in the *.yaml files of `pipelines_dir:`. config_load()
 * interprets and checks every pipeline; the structs below live in the
 * config's arena. Binding a pipeline to input values (pipeline_bind) gives a
 * pipeline_bound tree with final msgpack args/kwargs that the producer turns
 * into Celery signatures. */

typedef enum pipeline_kind {
	PIPELINE_TASK,  /* one task */
	PIPELINE_CHAIN, /* members in order, each result prepended to the next */
	PIPELINE_GROUP, /* members in parallel; result: the list, in order */
	PIPELINE_CHORD, /* a header group, then body(list of header results) */
	PIPELINE_MAP,   /* one task applied to each item of a list (xmap/xstarmap) */
} pipeline_kind;

/* Which pipeline_options fields were given (a composite's options are
 * defaults for its members; a member's own win). */
enum {
	PIPELINE_OPT_QUEUE = 1u << 0,
	PIPELINE_OPT_COUNTDOWN = 1u << 1,
	PIPELINE_OPT_EXPIRES = 1u << 2,
	PIPELINE_OPT_TIME_LIMIT = 1u << 3,
	PIPELINE_OPT_SOFT_TIME_LIMIT = 1u << 4,
	PIPELINE_OPT_MAX_RETRIES = 1u << 5,
	PIPELINE_OPT_IGNORE_RESULT = 1u << 6,
	PIPELINE_OPT_PRIORITY = 1u << 7,
	PIPELINE_OPT_IMMUTABLE = 1u << 8,
};

typedef struct pipeline_options {
	unsigned set;                 /* PIPELINE_OPT_* of the fields below that were given */
	const char *queue;
	double countdown, expires;    /* seconds */
	double time_limit, soft_time_limit; /* seconds; soft <= hard when both */
	int max_retries;              /* -1: retry forever (YAML null) */
	int ignore_result;
	int priority;                 /* 0-255 */
	int immutable;                /* the node does not take its parent's result */
} pipeline_options;

/* A declared input. Types: int, float, str, bytes, bool, list, map, any. */
typedef struct pipeline_input {
	const char *name;        /* letters, digits and '_' */
	warren_type type;
	const char *description; /* NULL when not given */
	int required;            /* no default */
	const void *default_mp;  /* packed default; NULL when required */
	size_t default_len;
	unsigned line, column;
} pipeline_input;

/* A reference to an input inside a template, for messages and checks. */
typedef struct pipeline_ref {
	size_t input;          /* index into the pipeline's inputs */
	int whole;             /* 1: `$input.x` is the whole value; 0: "${input.x}" in a string */
	unsigned line, column;
} pipeline_ref;

/* Packed msgpack as written in YAML, except where it refers to inputs: a
 * whole `$input.x` is the ext value PIPELINE_EXT_INPUT (payload: the input
 * index, 4 bytes big-endian), a string with "${input.x}" is the ext value
 * PIPELINE_EXT_FORMAT (payload: the string as written). pipeline_bind()
 * replaces both; a template without refs is already final. These ext types
 * never reach the wire: bump nothing but this note if they change. */
#define PIPELINE_EXT_INPUT 0x50
#define PIPELINE_EXT_FORMAT 0x51
typedef struct pipeline_template {
	const void *mp; /* NULL: absent (no args / no kwargs) */
	size_t len;
	const pipeline_ref *refs;
	size_t n_refs;
} pipeline_template;

typedef struct pipeline_node pipeline_node;
struct pipeline_node {
	pipeline_kind kind;
	const char *task;            /* TASK, MAP: the task name */
	pipeline_template args;      /* TASK: an array; MAP: unused */
	pipeline_template kwargs;    /* TASK: a map */
	pipeline_template over;      /* MAP: the list (literal or `$input.x`) */
	int starmap;                 /* MAP: each item is a list of args */
	pipeline_options options;
	const pipeline_node *const *children; /* CHAIN, GROUP members; CHORD: the header's */
	size_t n_children;
	const pipeline_node *header; /* CHORD: the header node (GROUP or MAP) */
	const pipeline_node *body;   /* CHORD */
	const char *path;            /* key path for messages: pipelines.x.run.chain[1] */
	const char *file;            /* the file it was read from */
	unsigned line, column;       /* where the node starts */
	const char *task_path;       /* TASK, MAP: key path of the name, for messages */
	unsigned task_line, task_column; /* TASK, MAP: where the name is written */
};

struct pipeline_def {
	const char *name;
	const char *description; /* NULL when not given */
	const pipeline_input *inputs;
	size_t n_inputs;
	const pipeline_node *run;
	size_t n_nodes;          /* nodes in run, for progress totals */
	const char *file;
	unsigned line, column;   /* where the name is written */
};

/* The pipeline called name, or NULL. Lives as long as cfg. */
const pipeline_def *config_pipeline_find(const warren_config *cfg, const char *name);

/* Checks every task name of every pipeline against known (names a registry
 * or a worker knows; need not be sorted): the first unknown one is an
 * error at its place, with the nearest known name as a hint. */
int config_pipeline_check_tasks(const warren_config *cfg, const char *const *known, size_t n,
				warren_error *err);

/* Checks that cfg's result backend can run every chord of every pipeline.
 * config_load() does it; call it again after config_apply_env(). */
int config_pipeline_check_backend(const warren_config *cfg, warren_error *err);

/* ---- binding inputs ---- */

typedef struct pipeline_bound_node pipeline_bound_node;
struct pipeline_bound_node {
	pipeline_kind kind;
	const pipeline_node *def;  /* the definition: place, path */
	const char *task;          /* TASK, MAP */
	const void *args_mp;       /* TASK: the packed args array (never NULL) */
	size_t args_len;
	const void *kwargs_mp;     /* TASK: the packed kwargs map (never NULL) */
	size_t kwargs_len;
	pipeline_options options;  /* with the enclosing nodes' options applied */
	/* CHAIN, GROUP: members. CHORD: the header's tasks. MAP: one TASK per
	 * item (args [item], or item itself for starmap), so a producer can
	 * send a map as a group; items_mp holds the list for celery.xmap. */
	const pipeline_bound_node *children;
	size_t n_children;
	const pipeline_bound_node *header; /* CHORD: the header (GROUP or MAP) */
	const pipeline_bound_node *body;   /* CHORD */
	const void *items_mp;      /* MAP: the packed list */
	size_t items_len;
};

typedef struct pipeline_bound {
	const pipeline_def *def;
	const pipeline_bound_node *root;
	const void *inputs_mp;     /* the bound inputs as one packed map, for records */
	size_t inputs_len;
	size_t n_tasks;            /* task messages the run sends (a map counts its items) */
	config_arena *arena;       /* owns the tree; it may point into the config's arena */
} pipeline_bound;

/* Binds def's inputs from `--set key=value` strings: each value is read by
 * the input's type (int, float: numbers as YAML writes them; bool:
 * true/false/yes/no/on/off/1/0; str, bytes: as is; list, map: JSON, or YAML
 * flow style; any: JSON if it starts with [ { or ", else a YAML scalar).
 * Inputs not given take their defaults; a missing required input, an
 * unknown or repeated key and a value of the wrong type are errors. On
 * success *out is a new tree freed by pipeline_bound_free(), which must be
 * called before config_free() of def's config. */
int pipeline_bind(const pipeline_def *def, const char *const *keys, const char *const *values,
		  size_t n, pipeline_bound **out, warren_error *err);
void pipeline_bound_free(pipeline_bound *b);

/* ---- outline (pipeline_print.c) ---- */

/* `warren pipeline show NAME`: the pipeline's inputs and run as an indented
 * outline. */
void pipeline_print(const pipeline_def *def, FILE *out);
/* One line per pipeline: name, inputs, description (`warren pipeline list`). */
void pipeline_print_list(const warren_config *cfg, FILE *out);

/* ---- inside config/ only ---- */

/* Interprets the `pipelines` section and the files of `pipelines_dir`
 * (root: the config's top-level map) and checks them against cfg's tasks
 * and result backend; fills cfg->pipeline_defs. */
int config_parse_pipelines(config_ctx *ctx, const config_node *root);

/* pipeline_template.c: packs n as a template over the given inputs
 * (input_names: their names, NULL-terminated, for hints). */
int config_pipeline_pack(config_ctx *ctx, const pipeline_input *inputs, size_t n_inputs,
			 const char *const *input_names, const config_node *n,
			 pipeline_template *out);
/* Packs an input's default, which must have the input's type. */
int config_pipeline_pack_default(config_ctx *ctx, const config_node *n, warren_type type,
				 const void **mp, size_t *len);
/* The type of a literal value under YAML's core schema (a list, a map, ...). */
warren_type config_pipeline_literal_type(const config_node *n);
/* Nonzero when n is exactly `$input.NAME`; *name points into n's text. */
int config_pipeline_whole_ref(const config_node *n, const char **name, size_t *len);
/* Nonzero when s[0..len) is a valid input name. */
int config_pipeline_name_ok(const char *s, size_t len);

/* pipeline_check.c: what a node receives from the step before it. */
typedef struct pipeline_incoming {
	int takes;        /* 1: the parent's result is prepended to the args */
	warren_type type; /* its type, WARREN_TYPE_ANY when unknown */
	int item;         /* it is a map's item, not a parent's result */
} pipeline_incoming;

/* Checks a task node's args and kwargs (YAML nodes, either NULL) against
 * the task's schema in cfg, if it has one. */
int config_pipeline_check_call(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
			       pipeline_incoming in, const config_node *args,
			       const config_node *kwargs);
/* Checks a map's `over`: a literal list (of lists for starmap) or a
 * reference to a list (or any) input. */
int config_pipeline_check_over(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
			       const config_node *over);
/* pipeline.c: reads one `pipelines:` mapping into defs (room for all its
 * entries after *n_defs), refusing names already in defs. */
int config_pipeline_read_section(config_ctx *ctx, const config_node *section, pipeline_def *defs,
				 size_t *n_defs);
/* Refuses a task name cfg does not declare, when cfg declares task schemas. */
int config_pipeline_check_task_name(config_ctx *ctx, const config_node *name_node,
				    const char *name);
/* Refuses a chord when cfg's result backend cannot join. */
int config_pipeline_check_chord(config_ctx *ctx, const config_node *at);
/* The result type of a task in cfg's schemas (WARREN_TYPE_ANY when unknown). */
warren_type config_pipeline_task_result(const warren_config *cfg, const char *task);

/* pipeline_print.c: o as JSON text appended to out (strings bare when quote
 * is 0, at the top level only); template refs of def as $input.x. Returns
 * nonzero when out cannot grow. */
struct msgpack_sbuffer;
struct msgpack_object;
int config_pipeline_write_text(struct msgpack_sbuffer *out, const struct msgpack_object *o,
			       int quote, const pipeline_def *def);
/* pipeline_print.c: a short JSON-like rendering of a packed template,
 * references shown as $input.x. */
void pipeline_format_value(const pipeline_def *def, const void *mp, size_t len, char *buf,
			   size_t size);

#endif
