/* worker/worker_main.c - warren-worker: parse the command line, load and
 * merge the config (file < environment < flags), load the plugins, check
 * what can only be checked together (a hard time limit needs prefork), then
 * hand everything to the loop. The only place that exits.
 *
 * Exit status (sysexits.h): 0 clean, 64 usage, 69 broker unreachable,
 * 70 internal error, 78 configuration; 1 after a cold shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69
#define EXIT_SOFTWARE 70
#define EXIT_CONFIG 78

/* Everything main owns, released in one place. */
typedef struct worker_main {
	warren_config *cfg;
	registry *reg;
	char *broker_urls;
	char *queue_text;          /* --queues, split in place */
	const char **queues;
	size_t n_queues;
	char hostname[256];
	char statedb[4096];
	loop_settings s;
} worker_main;

static void main_release(worker_main *m)
{
	registry_free(m->reg);
	config_free(m->cfg);
	free(m->broker_urls);
	free(m->queue_text);
	free(m->queues);
	log_teardown();
}

static int load_config(const worker_cli *cli, worker_main *m, warren_error *err)
{
	int rc = cli->config ? config_load(cli->config, &m->cfg, err)
			     : config_load_string("", 0, "<defaults>", &m->cfg, err);
	if (rc == 0)
		rc = config_apply_env(m->cfg, getenv, err);
	return rc;
}

static char *join_urls(const warren_config *cfg)
{
	size_t len = 1;
	for (size_t i = 0; i < cfg->broker.n_urls; i++)
		len += strlen(cfg->broker.urls[i]) + 1;
	char *s = calloc(1, len);
	for (size_t i = 0; s && i < cfg->broker.n_urls; i++) {
		if (i)
			strcat(s, ";");
		strcat(s, cfg->broker.urls[i]);
	}
	return s;
}

static int split_queues(const char *text, worker_main *m, warren_error *err)
{
	m->queue_text = strdup(text);
	m->queues = calloc(strlen(text) / 2 + 2, sizeof *m->queues);
	if (!m->queue_text || !m->queues)
		return warren_error_set(err, WARREN_ENOMEM, "out of memory");
	char *save = NULL;
	for (char *q = strtok_r(m->queue_text, ",", &save); q; q = strtok_r(NULL, ",", &save))
		if (*q)
			m->queues[m->n_queues++] = q;
	if (m->n_queues == 0)
		return warren_error_set(err, WARREN_EINVAL, "option '--queues': no queue named");
	return 0;
}

static int merge_queues(const worker_cli *cli, worker_main *m, warren_error *err)
{
	if (cli->queues)
		return split_queues(cli->queues, m, err);
	const warren_config *cfg = m->cfg;
	size_t n = cfg->worker.n_queues ? cfg->worker.n_queues : 1;
	m->queues = calloc(n, sizeof *m->queues);
	if (!m->queues)
		return warren_error_set(err, WARREN_ENOMEM, "out of memory");
	for (size_t i = 0; i < cfg->worker.n_queues; i++)
		m->queues[i] = cfg->worker.queues[i];
	if (cfg->worker.n_queues == 0)
		m->queues[0] = cfg->task_default_queue;
	m->n_queues = n;
	return 0;
}

static void merge_logging(const worker_cli *cli, worker_main *m)
{
	config_log_level level = m->cfg->worker.log_level;
	if (cli->loglevel)
		log_level_parse(cli->loglevel, &level);
	config_log_format format = m->cfg->worker.log_format;
	if (cli->log_format)
		format = strcmp(cli->log_format, "json") == 0 ? CONFIG_LOG_JSON : CONFIG_LOG_TEXT;
	log_setup(level, format, m->hostname, stderr);
}

static void merge_identity(const worker_cli *cli, worker_main *m)
{
	const char *name = cli->hostname ? cli->hostname : m->cfg->worker.hostname;
	control_nodename(name, m->hostname, sizeof m->hostname); /* Celery's %h %n %d */
	const char *db = cli->statedb ? cli->statedb : m->cfg->worker.statedb;
	if (db && (!*db || !strcmp(db, "none")))
		m->s.statedb = NULL;
	else if (db)
		m->s.statedb = db;
	else {
		revoke_default_path(m->hostname, m->statedb, sizeof m->statedb);
		m->s.statedb = m->statedb;
	}
	m->s.without_mingle = cli->without_mingle;
}

static int merge(const worker_cli *cli, worker_main *m, warren_error *err)
{
	const warren_config *cfg = m->cfg;
	loop_settings *s = &m->s;
	merge_identity(cli, m);
	merge_logging(cli, m);
	m->broker_urls = cli->broker ? strdup(cli->broker) : join_urls(cfg);
	if (!m->broker_urls)
		return warren_error_set(err, WARREN_ENOMEM, "out of memory");
	int rc = merge_queues(cli, m, err);
	if (rc != 0)
		return rc;
	s->cfg = cfg;
	s->broker_urls = m->broker_urls;
	s->queues = m->queues;
	s->n_queues = m->n_queues;
	s->hostname = m->hostname;
	s->pool.kind = cli->pool ? (strcmp(cli->pool, "prefork") == 0 ? POOL_PREFORK : POOL_THREADS)
				 : (cfg->worker.pool == CONFIG_POOL_PREFORK ? POOL_PREFORK : POOL_THREADS);
	s->pool.concurrency = cli->concurrency > 0 ? cli->concurrency : cfg->worker.concurrency;
	if (s->pool.concurrency < 1)
		s->pool.concurrency = 1;
	s->pool.max_tasks_per_child = cfg->worker.max_tasks_per_child;
	s->pool.max_memory_per_child = cfg->worker.max_memory_per_child;
	s->prefetch_multiplier = cli->prefetch_multiplier >= 0 ? cli->prefetch_multiplier
				 : cfg->worker.prefetch_multiplier >= 0 ? cfg->worker.prefetch_multiplier
									 : cfg->broker.prefetch_multiplier;
	s->result_backend = cli->result_backend ? cli->result_backend : cfg->result_backend.url;
	if (s->result_backend && strcmp(s->result_backend, "none") == 0)
		s->result_backend = NULL;
	s->result_expires = cfg->result_backend.result_expires;
	s->shutdown_timeout = cfg->worker.shutdown_timeout;
	/* Celery: task events with -E; worker-* events unless --without-heartbeat
	 * (worker/consumer/heart.py; the dispatcher is on whenever Heart is). */
	s->task_events = cli->events || cfg->worker.events;
	s->worker_events = !cli->without_heartbeat;
	s->metrics_port = cli->metrics_port >= 0 ? cli->metrics_port : cfg->worker.metrics.port;
	s->metrics_bind = cli->metrics_bind ? cli->metrics_bind : cfg->worker.metrics.bind;
	s->cli = cli; /* a SIGHUP reload re-reads cli->config; flags keep winning */
	return 0;
}

static int load_plugins(const worker_cli *cli, worker_main *m, warren_error *err)
{
	int rc = registry_new(&m->reg, err);
	const char *const *paths = cli->n_plugins ? cli->plugins : m->cfg->worker.plugins;
	size_t n = cli->n_plugins ? cli->n_plugins : m->cfg->worker.n_plugins;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = plugin_load(m->reg, paths[i], err);
	if (rc == 0 && n == 0)
		rc = warren_error_set(err, WARREN_ECONFIG,
				      "no task plugins: give --plugin PATH or worker.plugins");
	if (rc == 0)
		rc = canvas_register_builtins(m->reg, err); /* celery.map, celery.starmap */
	m->s.reg = m->reg;
	return rc;
}

/* A thread cannot be killed, so the threads pool cannot enforce a hard
 * limit: refuse the configuration rather than silently ignore it (the same
 * rule refuses a reloaded file, reload.c). */
static int check_time_limits(const worker_main *m, warren_error *err)
{
	int rc = reload_check_time_limits(m->cfg, m->s.pool.kind, err);
	if (rc != 0 || m->s.pool.kind != POOL_THREADS)
		return rc;
	for (size_t i = 0; i < registry_count(m->reg); i++) {
		const registry_entry *e = registry_at(m->reg, i);
		if (e->opts.time_limit > 0)
			log_at(CONFIG_LOG_WARNING, NULL,
			       "task %s: plugin's hard time limit %gs is not enforced by the "
			       "threads pool", e->name, e->opts.time_limit);
	}
	return 0;
}

static int exit_code(int rc)
{
	switch (rc) {
	case LOOP_WARM: return 0;
	case LOOP_COLD: return 1;
	case WARREN_EBROKER: return EXIT_UNAVAILABLE;
	case WARREN_EBACKEND: return EXIT_UNAVAILABLE;
	case WARREN_ECONFIG: case WARREN_EINVAL: case WARREN_EPLUGIN: return EXIT_CONFIG;
	default: return EXIT_SOFTWARE;
	}
}

static int start(const worker_cli *cli, worker_main *m, warren_error *err)
{
	int rc = load_config(cli, m, err);
	if (rc == 0)
		rc = merge(cli, m, err);
	if (rc == 0)
		rc = load_plugins(cli, m, err);
	if (rc == 0)
		rc = check_time_limits(m, err);
	if (rc != 0)
		return rc == WARREN_ENOMEM ? rc : WARREN_ECONFIG;
	if (cli->check_config) {
		printf("config ok: %zu task(s) from %zu plugin(s), pool %s x%d, queues",
		       registry_count(m->reg), cli->n_plugins ? cli->n_plugins : m->cfg->worker.n_plugins,
		       m->s.pool.kind == POOL_PREFORK ? "prefork" : "threads",
		       m->s.pool.concurrency);
		for (size_t i = 0; i < m->s.n_queues; i++)
			printf(" %s", m->s.queues[i]);
		printf("\n");
		return 0;
	}
	/* A write to a socket the peer closed (Redis, a broker mid-failover)
	 * must be an EPIPE the caller handles, not the end of the worker. */
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigaction(SIGPIPE, &ign, NULL);
	rc = loop_block_signals(err);
	if (rc == 0)
		rc = loop_run(&m->s, err);
	return rc;
}

int main(int argc, char **argv)
{
	worker_cli cli;
	warren_error err = {0};
	if (worker_cli_parse(argc, argv, &cli, &err) != 0) {
		fprintf(stderr, "warren-worker: %s\n%s", err.msg, worker_cli_usage);
		return EXIT_USAGE;
	}
	if (cli.help) {
		fputs(worker_cli_usage, stdout);
		return 0;
	}
	worker_main m = {0};
	int rc = start(&cli, &m, &err);
	if (rc == LOOP_COLD) {
		fflush(NULL);
		_exit(1); /* handlers may still run in the pool: free nothing */
	}
	if (rc < 0)
		fprintf(stderr, "warren-worker: %s\n", err.msg);
	main_release(&m);
	return exit_code(rc);
}
