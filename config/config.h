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
	const config_node *pipelines; /* uninterpreted; NULL when absent */
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

#endif
