/* tests/unit/test_config.c - config/: YAML loading, defaults, every error's
 * exact message with line and column, environment overrides, hostile input. */
#include <criterion/criterion.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

#define FIXTURE(name) WARREN_SOURCE_DIR "/tests/fixtures/config/" name

static int load(const char *yaml, warren_config **cfg, warren_error *err)
{
	return config_load_string(yaml, strlen(yaml), "warren.yaml", cfg, err);
}

/* Loads yaml, which must fail with code; returns the message. */
static const char *load_error(const char *yaml, int code)
{
	static warren_error err;
	warren_config *cfg = NULL;
	warren_error_clear(&err);
	int rc = load(yaml, &cfg, &err);
	cr_assert_eq(rc, code, "rc %d, expected %d: %s", rc, code, err.msg);
	cr_assert_null(cfg, "a failed load must leave *out untouched");
	return err.msg;
}

static warren_config *load_ok(const char *yaml)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = load(yaml, &cfg, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_not_null(cfg);
	return cfg;
}

/* ---- the reference config ---- */

static void check_reference_broker(const warren_config *cfg)
{
	const config_broker *b = &cfg->broker;
	cr_assert_eq(b->n_urls, 2);
	cr_assert_str_eq(b->urls[0], "amqps://warren:secret@rabbit-1.example.com:5671/prod");
	cr_assert_str_eq(b->urls[1], "amqps://warren:secret@rabbit-2.example.com:5671/prod");
	cr_assert_eq(b->heartbeat, 30);
	cr_assert_float_eq(b->connect_timeout, 2.5, 1e-9);
	cr_assert_eq(b->prefetch_multiplier, 8);
	cr_assert_eq(b->connection_retry_on_startup, 0);
	cr_assert_str_eq(b->tls.ca, "/etc/warren/ca.pem");
	cr_assert_str_eq(b->tls.cert, "/etc/warren/client.pem");
	cr_assert_str_eq(b->tls.key, "/etc/warren/client.key");
	cr_assert_eq(b->tls.verify, 1);
}

static void check_reference_topology(const warren_config *cfg)
{
	cr_assert_eq(cfg->n_exchanges, 2);
	cr_assert_str_eq(cfg->exchanges[0].name, "media");
	cr_assert_eq(cfg->exchanges[0].type, CONFIG_EXCHANGE_TOPIC);
	cr_assert_eq(cfg->exchanges[0].durable, 1);
	cr_assert_str_eq(cfg->exchanges[1].name, "broadcast");
	cr_assert_eq(cfg->exchanges[1].type, CONFIG_EXCHANGE_FANOUT);
	cr_assert_eq(cfg->exchanges[1].durable, 0);

	cr_assert_eq(cfg->n_queues, 3);
	const config_queue *q = &cfg->queues[0];
	cr_assert_str_eq(q->name, "celery");
	cr_assert_str_eq(q->exchange, "celery");
	cr_assert_str_eq(q->routing_key, "celery");
	cr_assert_eq(q->exchange_type, CONFIG_EXCHANGE_DIRECT);
	cr_assert_eq(q->durable, 1);
	cr_assert_eq(q->type, CONFIG_QUEUE_CLASSIC);
	cr_assert_eq(q->max_priority, 0);
	cr_assert_null(q->dead_letter_exchange);
	cr_assert_eq(q->message_ttl_ms, -1);
	cr_assert_eq(q->expires_ms, -1);

	q = config_queue_find(cfg, "feeds");
	cr_assert_not_null(q);
	cr_assert_str_eq(q->exchange, "feeds");
	cr_assert_str_eq(q->routing_key, "feeds");
	cr_assert_eq(q->max_priority, 10);
	cr_assert_eq(q->message_ttl_ms, 3600000);
	cr_assert_eq(q->expires_ms, 86400000);
	cr_assert_str_eq(q->dead_letter_exchange, "");
	cr_assert_str_eq(q->dead_letter_routing_key, "feeds.dead");
	cr_assert_eq(q->line, 49);
	cr_assert_eq(q->column, 3);

	q = config_queue_find(cfg, "video");
	cr_assert_not_null(q);
	cr_assert_str_eq(q->exchange, "media");
	cr_assert_eq(q->exchange_type, CONFIG_EXCHANGE_TOPIC, "taken from the declared exchange");
	cr_assert_str_eq(q->routing_key, "video.#");
	cr_assert_eq(q->type, CONFIG_QUEUE_QUORUM);
	cr_assert_eq(q->delivery_limit, 5);
}

static void check_reference_routes(const warren_config *cfg)
{
	cr_assert_eq(cfg->n_routes, 3);
	cr_assert_str_eq(cfg->task_default_queue, "celery");
	const config_route *r = config_route_task(cfg, "feeds.fetch");
	cr_assert_str_eq(r->pattern, "feeds.*");
	cr_assert_str_eq(r->queue, "feeds");
	cr_assert_str_eq(r->exchange, "feeds");
	cr_assert_str_eq(r->routing_key, "feeds");
	r = config_route_task(cfg, "video.compress");
	cr_assert_str_eq(r->pattern, "video.compress", "the first match wins");
	cr_assert_str_eq(r->exchange, "media");
	cr_assert_str_eq(r->routing_key, "video.compress");
	r = config_route_task(cfg, "video.thumbnail");
	cr_assert_str_eq(r->pattern, "video.*");
	cr_assert_str_eq(r->routing_key, "video.#", "from the queue's declaration");
	r = config_route_task(cfg, "math.add");
	cr_assert_eq(r, &cfg->default_route);
	cr_assert_str_eq(r->queue, "celery");
	cr_assert_str_eq(r->exchange, "celery");
	cr_assert_str_eq(r->routing_key, "celery");
}

/* Unpacks a parameter's default, which must be exactly one msgpack object. */
static msgpack_object unpack_default(const warren_param *p, msgpack_zone *zone)
{
	msgpack_object obj;
	size_t off = 0;
	cr_assert_not_null(p->default_mp, "%s has no default", p->name);
	int rc = msgpack_unpack((const char *)p->default_mp, p->default_len, &off, zone, &obj);
	cr_assert_eq(rc, MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(off, p->default_len);
	return obj;
}

static void check_reference_math_add(const config_task *t)
{
	cr_assert_float_eq(t->rate_limit, 100.0, 1e-9);
	cr_assert_float_eq(t->time_limit, 30.0, 1e-9);
	cr_assert_float_eq(t->soft_time_limit, 25.0, 1e-9);
	cr_assert_eq(t->max_retries, 5);
	cr_assert_eq(t->retry_backoff, 1);
	cr_assert_eq(t->retry_backoff_max, 120);
	cr_assert_eq(t->retry_jitter, 0);
	cr_assert_float_eq(t->default_retry_delay, 10.0, 1e-9);
	cr_assert_eq(t->acks_late, 1);
	cr_assert_eq(t->ignore_result, 0);
	cr_assert_eq(t->track_started, 1);
	cr_assert_eq(t->reject_on_worker_lost, 0);
	cr_assert_eq(t->has_schema, 1);
	const warren_task_schema *s = &t->schema;
	cr_assert_eq(s->n_params, 3);
	cr_assert_eq(s->result, WARREN_TYPE_INT);
	cr_assert_eq(s->extra_args, 0);
	cr_assert_eq(s->extra_kwargs, 0);
	cr_assert_str_eq(s->params[0].name, "x");
	cr_assert_eq(s->params[0].type, WARREN_TYPE_INT);
	cr_assert_eq(s->params[0].required, 1);
	cr_assert_null(s->params[0].default_mp);

	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	cr_assert_eq(s->params[1].required, 0, "a default makes a parameter optional");
	msgpack_object y = unpack_default(&s->params[1], &zone);
	cr_assert_eq(y.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(y.via.u64, 0);
	cr_assert_str_eq(s->params[2].name, "scale");
	cr_assert_eq(s->params[2].type, WARREN_TYPE_FLOAT);
	msgpack_object scale = unpack_default(&s->params[2], &zone);
	cr_assert_eq(scale.type, MSGPACK_OBJECT_FLOAT64);
	cr_assert_float_eq(scale.via.f64, 1.5, 1e-12);
	msgpack_zone_destroy(&zone);
}

static void check_reference_tasks(const warren_config *cfg)
{
	cr_assert_eq(cfg->n_tasks, 3);
	const config_task *t = config_task_find(cfg, "math.add");
	cr_assert_not_null(t);
	check_reference_math_add(t);

	t = config_task_find(cfg, "feeds.fetch");
	cr_assert_not_null(t);
	cr_assert_float_eq(t->rate_limit, 10.0 / 60, 1e-9);
	cr_assert_eq(t->max_retries, 3, "Celery's default");
	cr_assert_eq(t->retry_jitter, 1, "Celery's default");
	cr_assert_eq(t->schema.extra_kwargs, 1);
	cr_assert_eq(t->schema.n_params, 3);
	cr_assert_eq(t->schema.params[1].type, WARREN_TYPE_MAP);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object headers = unpack_default(&t->schema.params[1], &zone);
	cr_assert_eq(headers.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(headers.via.map.size, 1);
	msgpack_object_kv *kv = &headers.via.map.ptr[0];
	cr_assert_eq(kv->key.type, MSGPACK_OBJECT_STR);
	cr_assert_eq(kv->key.via.str.size, 6);
	cr_assert(!memcmp(kv->key.via.str.ptr, "accept", 6));
	cr_assert_eq(kv->val.via.str.size, 9);
	cr_assert(!memcmp(kv->val.via.str.ptr, "text/html", 9));
	msgpack_zone_destroy(&zone);
	cr_assert_eq(t->schema.params[2].required, 0);
	cr_assert_null(t->schema.params[2].default_mp);

	t = config_task_find(cfg, "video.compress");
	cr_assert_not_null(t);
	cr_assert_float_eq(t->rate_limit, 1.0, 1e-9);
	cr_assert_eq(t->max_retries, -1, "null retries forever");
	cr_assert_eq(t->has_schema, 0);
	cr_assert_null(config_task_find(cfg, "nope"));
}

static void check_reference_worker(const warren_config *cfg)
{
	const config_worker *w = &cfg->worker;
	cr_assert_eq(w->concurrency, 4);
	cr_assert_eq(w->pool, CONFIG_POOL_THREADS);
	cr_assert_eq(w->n_plugins, 2);
	cr_assert_str_eq(w->plugins[0], "build/plugins/math.so");
	cr_assert_str_eq(w->plugins[1], "build/plugins/feeds.so");
	cr_assert_eq(w->n_queues, 2);
	cr_assert_str_eq(w->queues[0], "celery");
	cr_assert_str_eq(w->queues[1], "feeds");
	cr_assert_eq(w->max_tasks_per_child, 1000);
	cr_assert_eq(w->max_memory_per_child, 204800);
	cr_assert_eq(w->log_format, CONFIG_LOG_JSON);
	cr_assert_eq(w->log_level, CONFIG_LOG_INFO);
	cr_assert_str_eq(w->hostname, "worker-1@example.com");
	cr_assert_eq(w->prefetch_multiplier, 2);
	cr_assert_eq(w->events, 1);
	cr_assert_float_eq(w->shutdown_timeout, 60.0, 1e-9);
	cr_assert_eq(w->metrics.port, 9808);
	cr_assert_str_eq(w->metrics.bind, "127.0.0.1");
}

Test(config, reference_config_loads_with_every_value)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = config_load(WARREN_SOURCE_DIR "/config/examples/warren.yaml", &cfg, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	check_reference_broker(cfg);
	check_reference_topology(cfg);
	check_reference_routes(cfg);
	check_reference_tasks(cfg);
	check_reference_worker(cfg);
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_REDIS);
	cr_assert_str_eq(cfg->result_backend.url, "redis://localhost:6379/0");
	cr_assert_eq(cfg->result_backend.result_expires, 3600);

	const config_node *p = cfg->pipelines;
	cr_assert_not_null(p);
	cr_assert_eq(p->kind, CONFIG_NODE_MAP);
	const config_node *chain = config_node_get(config_node_get(p, "ingest"), "chain");
	cr_assert_not_null(chain);
	cr_assert_eq(chain->kind, CONFIG_NODE_SEQ);
	cr_assert_eq(chain->n_items, 2);
	cr_assert_str_eq(chain->items[1]->text, "math.add");
	cr_assert_eq(chain->items[1]->line, 156);
	cr_assert_eq(chain->items[1]->column, 9);
	config_free(cfg);
}

Test(config, empty_document_gives_celery_defaults)
{
	warren_config *cfg = load_ok("# nothing but a comment\n");
	cr_assert_eq(cfg->broker.n_urls, 1);
	cr_assert_str_eq(cfg->broker.urls[0], "amqp://guest:guest@localhost:5672//");
	cr_assert_eq(cfg->broker.heartbeat, 60);
	cr_assert_float_eq(cfg->broker.connect_timeout, 4.0, 1e-9);
	cr_assert_eq(cfg->broker.prefetch_multiplier, 4);
	cr_assert_eq(cfg->broker.connection_retry_on_startup, 1);
	cr_assert_eq(cfg->broker.tls.verify, 1);
	cr_assert_null(cfg->broker.tls.ca);
	cr_assert_eq(cfg->n_exchanges, 0);
	cr_assert_eq(cfg->n_queues, 0);
	cr_assert_eq(cfg->n_routes, 0);
	cr_assert_eq(cfg->n_tasks, 0);
	cr_assert_str_eq(config_route_task(cfg, "any.task")->queue, "celery");
	const config_worker *w = &cfg->worker;
	cr_assert_eq(w->concurrency, (int)sysconf(_SC_NPROCESSORS_ONLN));
	cr_assert_eq(w->pool, CONFIG_POOL_PREFORK);
	cr_assert_eq(w->n_queues, 1);
	cr_assert_str_eq(w->queues[0], "celery");
	cr_assert_eq(w->n_plugins, 0);
	cr_assert_eq(w->log_format, CONFIG_LOG_TEXT);
	cr_assert_eq(w->log_level, CONFIG_LOG_WARNING);
	cr_assert_null(w->hostname);
	cr_assert_eq(w->prefetch_multiplier, -1);
	cr_assert_eq(w->events, 0);
	cr_assert_eq(w->metrics.port, 0);
	cr_assert_str_eq(w->metrics.bind, "127.0.0.1");
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_NONE);
	cr_assert_null(cfg->result_backend.url);
	cr_assert_eq(cfg->result_backend.result_expires, 86400);
	cr_assert_null(cfg->pipelines);
	config_free(cfg);
}

Test(config, task_defaults_are_celerys_except_acks_late)
{
	warren_config *cfg = load_ok("tasks:\n  t.plain:\n");
	const config_task *t = config_task_find(cfg, "t.plain");
	cr_assert_not_null(t);
	cr_assert_eq(t->rate_limit, 0);
	cr_assert_eq(t->time_limit, 0);
	cr_assert_eq(t->max_retries, 3);
	cr_assert_eq(t->retry_backoff, 0);
	cr_assert_eq(t->retry_backoff_max, 600);
	cr_assert_eq(t->retry_jitter, 1);
	cr_assert_float_eq(t->default_retry_delay, 180.0, 1e-9);
	cr_assert_eq(t->acks_late, 1);
	cr_assert_eq(t->schema.result, WARREN_TYPE_ANY);
	config_free(cfg);
}

Test(config, worker_default_queue_follows_task_default_queue)
{
	warren_config *cfg = load_ok("task_default_queue: jobs\n");
	cr_assert_str_eq(cfg->worker.queues[0], "jobs");
	cr_assert_str_eq(config_route_task(cfg, "x")->routing_key, "jobs");
	config_free(cfg);
}

/* ---- error messages ---- */

Test(config, unknown_key_suggests_nearest)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = config_load(FIXTURE("typo.yaml"), &cfg, &err);
	cr_assert_eq(rc, WARREN_ECONFIG, "%s", err.msg);
	cr_assert_str_eq(err.msg, FIXTURE("typo.yaml") ":12:7: worker.concurency: unknown key; "
						      "did you mean 'concurrency'?");
	cr_assert_null(cfg);
}

Test(config, unknown_key_far_from_every_known_one_gets_no_hint)
{
	cr_assert_str_eq(load_error("broker:\n  colour: blue\n", WARREN_ECONFIG),
			 "warren.yaml:2:3: broker.colour: unknown key");
}

Test(config, unknown_top_level_key_suggests_nearest)
{
	cr_assert_str_eq(load_error("queue:\n  a:\n", WARREN_ECONFIG),
			 "warren.yaml:1:1: queue: unknown key; did you mean 'queues'?");
}

Test(config, swapped_letters_count_as_one_typo)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    rate_limti: 1/s\n", WARREN_ECONFIG),
			 "warren.yaml:3:5: tasks.t.rate_limti: unknown key; did you mean "
			 "'rate_limit'?");
}

Test(config, non_integer_names_line_column_and_value)
{
	cr_assert_str_eq(load_error("broker:\n  url: amqp://localhost//\n  heartbeat: abc\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:14: broker.heartbeat: expected a non-negative integer, "
			 "got \"abc\"");
}

Test(config, negative_integer_refused)
{
	cr_assert_str_eq(load_error("worker:\n  max_tasks_per_child: -1\n", WARREN_ECONFIG),
			 "warren.yaml:2:24: worker.max_tasks_per_child: expected a non-negative "
			 "integer, got \"-1\"");
}

Test(config, out_of_range_integer_names_the_range)
{
	cr_assert_str_eq(load_error("queues:\n  q:\n    max_priority: 300\n", WARREN_ECONFIG),
			 "warren.yaml:3:19: queues.q.max_priority: expected an integer from 1 to "
			 "255, got \"300\"");
}

Test(config, integer_too_large_for_64_bits_refused)
{
	cr_assert_str_eq(load_error("broker:\n  heartbeat: 99999999999999999999\n", WARREN_ECONFIG),
			 "warren.yaml:2:14: broker.heartbeat: expected an integer from 0 to 65535, "
			 "got \"99999999999999999999\"");
}

Test(config, bad_seconds_refused)
{
	cr_assert_str_eq(load_error("broker:\n  connect_timeout: -2.5\n", WARREN_ECONFIG),
			 "warren.yaml:2:20: broker.connect_timeout: expected a non-negative number "
			 "of seconds, got \"-2.5\"");
}

Test(config, bad_boolean_refused)
{
	cr_assert_str_eq(load_error("worker:\n  events: maybe\n", WARREN_ECONFIG),
			 "warren.yaml:2:11: worker.events: expected true or false, got \"maybe\"");
}

Test(config, worker_metrics_port_and_bind)
{
	warren_config *cfg = load_ok("worker:\n  metrics:\n    port: 9100\n    bind: \"::1\"\n");
	cr_assert_eq(cfg->worker.metrics.port, 9100);
	cr_assert_str_eq(cfg->worker.metrics.bind, "::1");
	config_free(cfg);
	cfg = load_ok("worker:\n  metrics:\n");
	cr_assert_eq(cfg->worker.metrics.port, 0, "an empty metrics map keeps it off");
	config_free(cfg);
	cr_assert_str_eq(load_error("worker:\n  metrics:\n    prot: 9100\n", WARREN_ECONFIG),
			 "warren.yaml:3:5: worker.metrics.prot: unknown key; did you mean 'port'?");
	cr_assert_str_eq(load_error("worker:\n  metrics:\n    port: 70000\n", WARREN_ECONFIG),
			 "warren.yaml:3:11: worker.metrics.port: expected an integer from 0 to 65535, "
			 "got \"70000\"");
	cr_assert_str_eq(load_error("worker:\n  metrics: 9100\n", WARREN_ECONFIG),
			 "warren.yaml:2:12: worker.metrics: expected a mapping, got \"9100\"");
}

Test(config, yes_and_off_are_booleans_as_in_pyyaml)
{
	warren_config *cfg = load_ok("worker:\n  events: yes\nbroker:\n  tls:\n    verify: off\n");
	cr_assert_eq(cfg->worker.events, 1);
	cr_assert_eq(cfg->broker.tls.verify, 0);
	config_free(cfg);
}

Test(config, bad_enum_lists_the_choices)
{
	cr_assert_str_eq(load_error("worker:\n  pool: thread\n", WARREN_ECONFIG),
			 "warren.yaml:2:9: worker.pool: expected one of prefork, threads, got "
			 "\"thread\"");
}

Test(config, mapping_where_a_scalar_belongs_refused)
{
	cr_assert_str_eq(load_error("worker:\n  hostname: {a: 1}\n", WARREN_ECONFIG),
			 "warren.yaml:2:13: worker.hostname: expected a string, got a mapping");
}

Test(config, section_that_is_not_a_mapping_refused)
{
	cr_assert_str_eq(load_error("worker: [1, 2]\n", WARREN_ECONFIG),
			 "warren.yaml:1:9: worker: expected a mapping, got a sequence");
}

Test(config, top_level_must_be_a_mapping)
{
	cr_assert_str_eq(load_error("- a\n- b\n", WARREN_ECONFIG),
			 "warren.yaml:1:1: expected a mapping of sections at the top level, got a "
			 "sequence");
}

Test(config, duplicate_key_names_both_places)
{
	cr_assert_str_eq(load_error("worker:\n  pool: threads\n  events: true\n  pool: prefork\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:3: worker.pool: duplicate key (first at line 2, column 3)");
}

Test(config, duplicate_key_deep_in_pipelines_refused)
{
	cr_assert_str_eq(load_error("pipelines:\n  p:\n    - {a: 1, b: 2, a: 3}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:20: pipelines.p[0].a: duplicate key (first at line 3, "
			 "column 8)");
}

Test(config, yaml_syntax_error_carries_libyaml_problem_and_mark)
{
	cr_assert_str_eq(load_error("worker:\n  pool: threads\n bad: [\n", WARREN_ECONFIG),
			 "warren.yaml:3:2: yaml: did not find expected key while parsing a block "
			 "mapping at line 1, column 1");
}

Test(config, invalid_utf8_reported_at_its_position)
{
	cr_assert_str_eq(load_error("worker:\n  hostname: ab\xff\n", WARREN_ECONFIG),
			 "warren.yaml:2:15: yaml: invalid leading UTF-8 octet");
}

Test(config, second_document_refused)
{
	cr_assert_str_eq(load_error("worker: {}\n---\nworker: {}\n", WARREN_ECONFIG),
			 "warren.yaml:2:1: expected a single YAML document, found another");
}

Test(config, nul_in_a_string_refused)
{
	cr_assert_str_eq(load_error("worker:\n  hostname: \"a\\0b\"\n", WARREN_ECONFIG),
			 "warren.yaml:2:13: NUL character in a scalar");
}

Test(config, complex_key_refused)
{
	cr_assert_str_eq(load_error("? [a, b]\n: c\n", WARREN_ECONFIG),
			 "warren.yaml:1:3: expected a scalar key, got a sequence");
}

Test(config, missing_file_is_an_io_error)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = config_load(FIXTURE("does-not-exist.yaml"), &cfg, &err);
	cr_assert_eq(rc, WARREN_EIO, "%s", err.msg);
	cr_assert_str_eq(err.msg, FIXTURE("does-not-exist.yaml") ": cannot open: No such file or "
								 "directory");
}

Test(config, null_err_is_allowed)
{
	warren_config *cfg = NULL;
	cr_assert_eq(config_load_string("worker: 3\n", 10, "x.yaml", &cfg, NULL), WARREN_ECONFIG);
	cr_assert_null(cfg);
	config_free(NULL);
}

/* ---- broker and result backend ---- */

Test(config, url_and_urls_together_refused)
{
	cr_assert_str_eq(load_error("broker:\n  url: amqp://a//\n  urls: [amqp://b//]\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:3: broker.urls: give either url or urls, not both");
}

Test(config, unknown_broker_scheme_refused)
{
	cr_assert_str_eq(load_error("broker:\n  urls:\n    - amqp://a//\n    - http://b/\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:7: broker.urls[1]: expected a URL with scheme amqp:// or "
			 "amqps://, got \"http://b/\"");
}

Test(config, semicolons_in_url_list_failover_brokers)
{
	warren_config *cfg = load_ok("broker:\n  url: amqp://a//; amqp://b//\n");
	cr_assert_eq(cfg->broker.n_urls, 2);
	cr_assert_str_eq(cfg->broker.urls[0], "amqp://a//");
	cr_assert_str_eq(cfg->broker.urls[1], "amqp://b//");
	config_free(cfg);
}

Test(config, tls_cert_without_key_refused)
{
	cr_assert_str_eq(load_error("broker:\n  tls:\n    cert: /c.pem\n", WARREN_ECONFIG),
			 "warren.yaml:3:5: broker.tls: cert and key must be given together");
}

Test(config, result_backend_as_a_string)
{
	warren_config *cfg = load_ok("result_backend: rpc://\n");
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_RPC);
	cr_assert_str_eq(cfg->result_backend.url, "rpc://");
	cr_assert_eq(cfg->result_backend.result_expires, 86400);
	config_free(cfg);
	cfg = load_ok("result_backend: none\n");
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_NONE);
	cr_assert_null(cfg->result_backend.url);
	config_free(cfg);
}

Test(config, unknown_result_backend_refused)
{
	cr_assert_str_eq(load_error("result_backend: {url: \"mongodb://x\"}\n", WARREN_ECONFIG),
			 "warren.yaml:1:23: result_backend.url: expected none or a URL with scheme "
			 "rpc://, redis:// or rediss://, got \"mongodb://x\"");
}

/* ---- queues ---- */

Test(config, max_priority_on_a_quorum_queue_refused)
{
	cr_assert_str_eq(load_error("queues:\n  q:\n    queue_type: quorum\n    max_priority: 5\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:5: queues.q.max_priority: quorum queues have no "
			 "priorities; use queue_type: classic");
}

Test(config, delivery_limit_on_a_classic_queue_refused)
{
	cr_assert_str_eq(load_error("queues:\n  q:\n    delivery_limit: 3\n", WARREN_ECONFIG),
			 "warren.yaml:3:5: queues.q.delivery_limit: only quorum queues count "
			 "deliveries; use queue_type: quorum");
}

Test(config, non_durable_quorum_queue_refused)
{
	cr_assert_str_eq(load_error("queues:\n  q: {queue_type: quorum, durable: false}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:2:27: queues.q.durable: quorum queues are always durable");
}

Test(config, exchange_type_contradicting_the_declared_exchange_refused)
{
	cr_assert_str_eq(load_error("exchanges:\n  x: {type: fanout}\nqueues:\n  q: {exchange: x, "
				    "exchange_type: topic}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:20: queues.q.exchange_type: contradicts the type of the "
			 "declared exchange");
}

Test(config, binding_to_the_default_exchange_refused)
{
	cr_assert_str_eq(load_error("queues:\n  q: {exchange: \"\"}\n", WARREN_ECONFIG),
			 "warren.yaml:2:7: queues.q.exchange: the default exchange \"\" cannot be "
			 "bound to; leave exchange out to use the queue's name");
}

Test(config, zero_expires_refused)
{
	cr_assert_str_eq(load_error("queues:\n  q: {expires: 0}\n", WARREN_ECONFIG),
			 "warren.yaml:2:16: queues.q.expires: expected a positive number of "
			 "seconds, got \"0\"");
}

Test(config, dead_letter_needs_an_exchange)
{
	cr_assert_str_eq(load_error("queues:\n  q:\n    dead_letter: {routing_key: dl}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:18: queues.q.dead_letter: expected an exchange (\"\" for "
			 "the default exchange)");
}

/* ---- routes ---- */

Test(config, routes_in_list_form_keep_order_and_first_match_wins)
{
	warren_config *cfg = load_ok("task_routes:\n"
				     "  - 'a.special': {queue: special}\n"
				     "  - 'a.*': general\n"
				     "    'b.*': {exchange: bx, routing_key: b.key}\n");
	cr_assert_eq(cfg->n_routes, 3);
	cr_assert_str_eq(config_route_task(cfg, "a.special")->queue, "special");
	const config_route *r = config_route_task(cfg, "a.other");
	cr_assert_str_eq(r->queue, "general");
	cr_assert_str_eq(r->exchange, "general", "an undeclared queue's exchange is its name");
	cr_assert_str_eq(r->routing_key, "general");
	r = config_route_task(cfg, "b.x");
	cr_assert_null(r->queue);
	cr_assert_str_eq(r->exchange, "bx");
	cr_assert_str_eq(r->routing_key, "b.key");
	cr_assert_str_eq(config_route_task(cfg, "c")->queue, "celery");
	config_free(cfg);
}

Test(config, route_glob_star_matches_dots_as_celery)
{
	warren_config *cfg = load_ok("task_routes:\n  'feeds.*': feeds\n");
	cr_assert_str_eq(config_route_task(cfg, "feeds.a.b")->queue, "feeds");
	cr_assert_str_eq(config_route_task(cfg, "feedsx")->queue, "celery");
	config_free(cfg);
}

Test(config, route_without_queue_or_exchange_refused)
{
	cr_assert_str_eq(load_error("task_routes:\n  'a.*': {exchange: x}\n", WARREN_ECONFIG),
			 "warren.yaml:2:10: task_routes.a.*: expected a queue, or an exchange and "
			 "a routing_key");
}

/* ---- tasks ---- */

Test(config, rate_limit_units_parse_to_per_second)
{
	warren_config *cfg = load_ok("tasks:\n  a: {rate_limit: 120/m}\n  b: {rate_limit: 7200/h}\n"
				     "  c: {rate_limit: 2.5}\n  d: {rate_limit: 5/s}\n");
	cr_assert_float_eq(config_task_find(cfg, "a")->rate_limit, 2.0, 1e-9);
	cr_assert_float_eq(config_task_find(cfg, "b")->rate_limit, 2.0, 1e-9);
	cr_assert_float_eq(config_task_find(cfg, "c")->rate_limit, 2.5, 1e-9);
	cr_assert_float_eq(config_task_find(cfg, "d")->rate_limit, 5.0, 1e-9);
	config_free(cfg);
}

Test(config, bad_rate_limit_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    rate_limit: 10/d\n", WARREN_ECONFIG),
			 "warren.yaml:3:17: tasks.t.rate_limit: expected a rate like 100/s, 10/m or "
			 "3600/h, got \"10/d\"");
}

Test(config, soft_time_limit_over_hard_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    soft_time_limit: 40\n    time_limit: 30\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:22: tasks.t.soft_time_limit: must not exceed time_limit "
			 "(30 s), got 40 s");
}

Test(config, default_of_the_wrong_type_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    args:\n      - {name: s, type: str, "
				    "default: 42}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:39: tasks.t.args[0].default: expected a value of type str, "
			 "got int \"42\"");
}

Test(config, quoted_default_is_a_string)
{
	warren_config *cfg = load_ok("tasks:\n  t:\n    args:\n      - {name: s, type: str, "
				     "default: \"42\"}\n      - {name: b, type: bytes, default: "
				     "raw}\n      - {name: n, type: null, default: ~}\n");
	const warren_task_schema *s = &config_task_find(cfg, "t")->schema;
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object o = unpack_default(&s->params[0], &zone);
	cr_assert_eq(o.type, MSGPACK_OBJECT_STR);
	cr_assert_eq(o.via.str.size, 2);
	o = unpack_default(&s->params[1], &zone);
	cr_assert_eq(o.type, MSGPACK_OBJECT_BIN);
	cr_assert_eq(o.via.bin.size, 3);
	o = unpack_default(&s->params[2], &zone);
	cr_assert_eq(o.type, MSGPACK_OBJECT_NIL);
	msgpack_zone_destroy(&zone);
	config_free(cfg);
}

Test(config, int_default_of_a_float_parameter_packs_a_float)
{
	warren_config *cfg = load_ok("tasks:\n  t:\n    args: [{name: f, type: float, default: "
				     "-3}]\n");
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object o = unpack_default(&config_task_find(cfg, "t")->schema.params[0], &zone);
	cr_assert_eq(o.type, MSGPACK_OBJECT_FLOAT64);
	cr_assert_float_eq(o.via.f64, -3.0, 1e-12);
	msgpack_zone_destroy(&zone);
	config_free(cfg);
}

Test(config, list_default_packs_each_element_by_its_yaml_type)
{
	warren_config *cfg = load_ok("tasks:\n  t:\n    args: [{name: l, type: list, default: "
				     "[1, -2, 2.5, true, x, null]}]\n");
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object o = unpack_default(&config_task_find(cfg, "t")->schema.params[0], &zone);
	cr_assert_eq(o.type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(o.via.array.size, 6);
	msgpack_object *e = o.via.array.ptr;
	cr_assert_eq(e[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(e[1].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
	cr_assert_eq(e[1].via.i64, -2);
	cr_assert_eq(e[2].type, MSGPACK_OBJECT_FLOAT64);
	cr_assert_eq(e[3].type, MSGPACK_OBJECT_BOOLEAN);
	cr_assert_eq(e[3].via.boolean, true);
	cr_assert_eq(e[4].type, MSGPACK_OBJECT_STR);
	cr_assert_eq(e[5].type, MSGPACK_OBJECT_NIL);
	msgpack_zone_destroy(&zone);
	config_free(cfg);
}

Test(config, required_parameter_with_default_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    args:\n      - {name: a, required: true, "
				    "default: 1}\n",
				    WARREN_ECONFIG),
			 "warren.yaml:4:19: tasks.t.args[0].required: a required parameter cannot "
			 "have a default");
}

Test(config, duplicate_parameter_name_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    args: [{name: a}, {name: a}]\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:23: tasks.t.args[1]: duplicate parameter name 'a'");
}

Test(config, unknown_parameter_type_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    args: [{name: a, type: integer}]\n",
				    WARREN_ECONFIG),
			 "warren.yaml:3:28: tasks.t.args[0].type: expected a type: int, float, str, "
			 "bytes, bool, list, map, any or null, got \"integer\"");
}

Test(config, parameter_without_name_refused)
{
	cr_assert_str_eq(load_error("tasks:\n  t:\n    args: [{type: int}]\n", WARREN_ECONFIG),
			 "warren.yaml:3:12: tasks.t.args[0]: a parameter needs a name");
}

/* ---- environment ---- */

static char *env_both(const char *name)
{
	if (!strcmp(name, "WARREN_BROKER_URL"))
		return "amqp://env-a//;amqp://env-b//";
	if (!strcmp(name, "WARREN_RESULT_BACKEND"))
		return "rpc://";
	return NULL;
}

static char *env_none(const char *name)
{
	(void)name;
	return NULL;
}

static char *env_bad_broker(const char *name)
{
	if (!strcmp(name, "WARREN_BROKER_URL"))
		return "http://nope/";
	if (!strcmp(name, "WARREN_RESULT_BACKEND"))
		return "rpc://";
	return NULL;
}

static char *env_backend_none(const char *name)
{
	return !strcmp(name, "WARREN_RESULT_BACKEND") ? "none" : NULL;
}

Test(config, env_replaces_broker_urls_and_backend)
{
	warren_config *cfg = load_ok("broker:\n  url: amqp://file//\nresult_backend: redis://r/0\n");
	warren_error err = { 0 };
	cr_assert_eq(config_apply_env(cfg, env_both, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg->broker.n_urls, 2);
	cr_assert_str_eq(cfg->broker.urls[0], "amqp://env-a//");
	cr_assert_str_eq(cfg->broker.urls[1], "amqp://env-b//");
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_RPC);
	cr_assert_str_eq(cfg->result_backend.url, "rpc://");
	config_free(cfg);
}

Test(config, env_unset_changes_nothing)
{
	warren_config *cfg = load_ok("broker:\n  url: amqp://file//\nresult_backend: redis://r/0\n");
	warren_error err = { 0 };
	cr_assert_eq(config_apply_env(cfg, env_none, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg->broker.n_urls, 1);
	cr_assert_str_eq(cfg->broker.urls[0], "amqp://file//");
	cr_assert_str_eq(cfg->result_backend.url, "redis://r/0");
	config_free(cfg);
}

Test(config, env_backend_none_disables_results)
{
	warren_config *cfg = load_ok("result_backend: redis://r/0\n");
	warren_error err = { 0 };
	cr_assert_eq(config_apply_env(cfg, env_backend_none, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_NONE);
	cr_assert_null(cfg->result_backend.url);
	config_free(cfg);
}

Test(config, bad_env_url_refused_and_config_unchanged)
{
	warren_config *cfg = load_ok("broker:\n  url: amqp://file//\n");
	warren_error err = { 0 };
	cr_assert_eq(config_apply_env(cfg, env_bad_broker, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, "WARREN_BROKER_URL: expected a URL with scheme amqp:// or "
				  "amqps://, got \"http://nope/\"");
	cr_assert_str_eq(cfg->broker.urls[0], "amqp://file//");
	cr_assert_eq(cfg->result_backend.kind, CONFIG_BACKEND_NONE, "no partial override");
	config_free(cfg);
}

/* ---- hostile input ---- */

Test(config, billion_laughs_refused_without_expanding, .timeout = 5)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = config_load(FIXTURE("billion_laughs.yaml"), &cfg, &err);
	cr_assert_eq(rc, WARREN_ELIMIT, "%s", err.msg);
	cr_assert_str_eq(err.msg, FIXTURE("billion_laughs.yaml") ":6:36: document too large: more "
								 "than 100000 nodes once aliases "
								 "are expanded");
	cr_assert_null(cfg);
}

Test(config, aliases_below_the_limit_are_shared)
{
	warren_config *cfg = load_ok("tasks:\n  a: &opts {rate_limit: 5/s, max_retries: 7}\n"
				     "  b: *opts\n");
	cr_assert_eq(config_task_find(cfg, "b")->max_retries, 7);
	cr_assert_float_eq(config_task_find(cfg, "b")->rate_limit, 5.0, 1e-9);
	config_free(cfg);
}

Test(config, scalar_anchor_outlives_its_parser_event)
{
	/* Found by the fuzzer: the anchor's name was kept from a freed event. */
	warren_config *cfg = load_ok("task_default_queue: &q jobs\n"
				     "worker:\n  queues: [*q, *q]\n");
	cr_assert_eq(cfg->worker.n_queues, 2);
	cr_assert_str_eq(cfg->worker.queues[1], "jobs");
	config_free(cfg);
}

Test(config, merge_key_fills_in_and_own_keys_win)
{
	warren_config *cfg = load_ok("tasks:\n"
				     "  base: &defaults {max_retries: 9, acks_late: false, "
				     "rate_limit: 1/s}\n"
				     "  t:\n    <<: *defaults\n    max_retries: 2\n");
	const config_task *t = config_task_find(cfg, "t");
	cr_assert_eq(t->max_retries, 2, "the map's own key wins");
	cr_assert_eq(t->acks_late, 0, "merged in");
	cr_assert_float_eq(t->rate_limit, 1.0, 1e-9);
	config_free(cfg);
}

Test(config, merge_key_sequence_prefers_earlier_maps)
{
	warren_config *cfg = load_ok("tasks:\n  a: &a {max_retries: 1}\n"
				     "  b: &b {max_retries: 2, time_limit: 5}\n"
				     "  t: {<<: [*a, *b]}\n");
	const config_task *t = config_task_find(cfg, "t");
	cr_assert_eq(t->max_retries, 1);
	cr_assert_float_eq(t->time_limit, 5.0, 1e-9);
	config_free(cfg);
}

Test(config, merge_of_a_scalar_refused)
{
	cr_assert_str_eq(load_error("worker:\n  <<: 3\n", WARREN_ECONFIG),
			 "warren.yaml:2:7: expected a mapping or a sequence of mappings to merge "
			 "with <<");
}

Test(config, explicit_tags_decide_a_defaults_type)
{
	warren_config *cfg = load_ok("tasks:\n  t:\n    args:\n"
				     "      - {name: s, type: str, default: !!str 42}\n"
				     "      - {name: i, type: int, default: !!int \"7\"}\n");
	const warren_task_schema *s = &config_task_find(cfg, "t")->schema;
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	cr_assert_eq(unpack_default(&s->params[0], &zone).type, MSGPACK_OBJECT_STR);
	msgpack_object i = unpack_default(&s->params[1], &zone);
	cr_assert_eq(i.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(i.via.u64, 7);
	msgpack_zone_destroy(&zone);
	config_free(cfg);
}

Test(config, alias_to_an_unknown_anchor_refused)
{
	cr_assert_str_eq(load_error("worker: *nothing\n", WARREN_ECONFIG),
			 "warren.yaml:1:9: alias '*nothing' names no anchor defined before it");
}

Test(config, alias_inside_its_own_anchor_refused)
{
	cr_assert_str_eq(load_error("pipelines: &loop [a, *loop]\n", WARREN_ECONFIG),
			 "warren.yaml:1:22: alias '*loop' names no anchor defined before it");
}

Test(config, deep_nesting_refused)
{
	char yaml[512] = "pipelines: ";
	for (int i = 0; i < 100; i++)
		strcat(yaml, "[");
	for (int i = 0; i < 100; i++)
		strcat(yaml, "]");
	const char *msg = load_error(yaml, WARREN_ELIMIT);
	cr_assert_str_eq(msg, "warren.yaml:1:75: nested more than 64 levels deep");
}

Test(config, oversized_input_refused_before_parsing)
{
	size_t len = CONFIG_MAX_INPUT_BYTES + 1;
	char *big = malloc(len);
	cr_assert_not_null(big);
	memset(big, '#', len);
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load_string(big, len, "big.yaml", &cfg, &err), WARREN_ELIMIT);
	cr_assert_str_eq(err.msg, "big.yaml: larger than 1048576 bytes");
	free(big);
}

Test(config, every_out_of_memory_path_fails_cleanly)
{
	/* Fails the n-th arena allocation for n = 0, 1, ... until the reference
	 * config loads: each failure must be ENOMEM with a message and (under
	 * the asan target) leak nothing. */
	FILE *f = fopen(WARREN_SOURCE_DIR "/config/examples/warren.yaml", "rb");
	cr_assert_not_null(f);
	static char text[65536];
	size_t len = fread(text, 1, sizeof text, f);
	fclose(f);
	long n;
	for (n = 0; n < 100000; n++) {
		warren_config *cfg = NULL;
		warren_error err = { 0 };
		config_arena_fail_after(n);
		int rc = config_load_string(text, len, "warren.yaml", &cfg, &err);
		config_arena_fail_after(-1);
		if (rc == 0) {
			config_free(cfg);
			break;
		}
		cr_assert_eq(rc, WARREN_ENOMEM, "allocation %ld: rc %d: %s", n, rc, err.msg);
		cr_assert_null(cfg);
		cr_assert_neq(err.msg[0], '\0');
	}
	cr_assert_gt(n, 100, "the reference config should take many allocations, took %ld", n);
	cr_assert_lt(n, 100000);
}

/* ---- describe ---- */

Test(config, describe_masks_passwords)
{
	warren_config *cfg = load_ok("broker:\n  url: amqp://user:hunter2@h//\n"
				     "result_backend: redis://:pw@r:6379/0\n");
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	cr_assert_not_null(out);
	config_describe(cfg, out);
	fclose(out);
	cr_assert_not_null(strstr(text, "amqp://user:****@h//"), "%s", text);
	cr_assert_not_null(strstr(text, "redis://:****@r:6379/0"), "%s", text);
	cr_assert_null(strstr(text, "hunter2"), "%s", text);
	free(text);
	config_free(cfg);
}
