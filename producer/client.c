/* producer/client.c - warren_client: where to send (broker URLs, config with
 * queues, routes and task schemas) and where results come from (backend
 * URL), with both connections opened lazily on first use.
 *
 * Lazy connecting lets `warren result ID` work with a Redis backend while
 * the broker is away, and lets a program create its client before the
 * broker is up; warren_client_connect is there for callers who want to fail
 * early. A client is one thread's (see warren.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer.h"

#define DEFAULT_QUEUE "celery"

void warren_client_opts_init(warren_client_opts *o)
{
	*o = (warren_client_opts){
		.use_env = true,
		.publish_window = 1000,
		.connect_timeout_ms = 0, /* the config's, else 10 s */
		.reconnect_timeout_ms = 60000,
		.heartbeat = -1,         /* the config's, else 60 s */
		.broker_delay = true,
	};
}

static bool is_none_backend(const char *url)
{
	return !url || !*url || strcmp(url, "none") == 0 || strcmp(url, "none://") == 0;
}

/* Checks the URL list now so a typo is a usage error, not "unreachable". */
static int check_broker_urls(warren_client *c, const char *urls, warren_error *err)
{
	broker_url *list = NULL;
	size_t n = 0;
	int rc = broker_url_list_parse(urls, &list, &n, err);
	if (rc)
		return rc == WARREN_ENOMEM ? rc : WARREN_EINVAL;
	broker_url_list_free(list, n);
	broker_url_mask(urls, c->broker_masked, sizeof c->broker_masked);
	return 0;
}

static int set_queue_names(warren_client *c)
{
	size_t n = c->cfg ? c->cfg->n_queues : 0;
	c->queue_names = calloc(n + 1, sizeof *c->queue_names);
	if (!c->queue_names)
		return WARREN_ENOMEM;
	const char *def = c->cfg ? c->cfg->task_default_queue : DEFAULT_QUEUE;
	bool have_default = false;
	for (size_t i = 0; i < n; i++) {
		c->queue_names[c->n_queue_names++] = c->cfg->queues[i].name;
		have_default |= strcmp(c->cfg->queues[i].name, def) == 0;
	}
	if (!have_default)
		c->queue_names[c->n_queue_names++] = def;
	return 0;
}

/* The common part of both constructors; takes ownership of cfg. */
static int client_make(warren_config *cfg, const char *broker_urls, const char *backend_url,
		       const warren_client_opts *opts, warren_client **out, warren_error *err)
{
	int rc;
	warren_client *c = calloc(1, sizeof *c);
	if (!c) {
		config_free(cfg);
		return warren_error_set(err, WARREN_ENOMEM, "client: out of memory");
	}
	c->cfg = cfg;
	if (opts)
		c->opts = *opts;
	else
		warren_client_opts_init(&c->opts);
	c->opts.broker_url = c->opts.result_backend = NULL; /* borrowed: not kept */
	if (!broker_urls || !*broker_urls) {
		rc = warren_error_set(err, WARREN_EINVAL, "client: no broker url given");
		goto out_free;
	}
	if ((rc = check_broker_urls(c, broker_urls, err)))
		goto out_free;
	c->broker_urls = strdup(broker_urls);
	c->backend_url = is_none_backend(backend_url) ? NULL : strdup(backend_url);
	if (!c->broker_urls || (!is_none_backend(backend_url) && !c->backend_url) ||
	    set_queue_names(c)) {
		rc = warren_error_set(err, WARREN_ENOMEM, "client: out of memory");
		goto out_free;
	}
	if ((rc = schema_uuid4(c->oid, err)))
		goto out_free;
	*out = c;
	return 0;
out_free:
	warren_client_free(c);
	return rc;
}

int warren_client_new(const char *broker_url, const char *backend_url,
		      const warren_client_opts *opts, warren_client **out, warren_error *err)
{
	if (!out)
		return warren_error_set(err, WARREN_EINVAL, "client: NULL out");
	return client_make(NULL, broker_url, backend_url, opts, out, err);
}

/* The config's failover list as one ';'-separated string (malloc'd). */
static char *join_urls(const warren_config *cfg)
{
	size_t size = 1;
	for (size_t i = 0; i < cfg->broker.n_urls; i++)
		size += strlen(cfg->broker.urls[i]) + 1;
	char *s = calloc(1, size);
	for (size_t i = 0; s && i < cfg->broker.n_urls; i++) {
		if (i)
			strcat(s, ";");
		strcat(s, cfg->broker.urls[i]);
	}
	return s;
}

int warren_client_new_from_config(const char *path, const warren_client_opts *opts,
				  warren_client **out, warren_error *err)
{
	warren_client_opts def;
	if (!opts) {
		warren_client_opts_init(&def);
		opts = &def;
	}
	if (!path || !out)
		return warren_error_set(err, WARREN_EINVAL, "client: NULL config path or out");
	warren_config *cfg = NULL;
	int rc = config_load(path, &cfg, err);
	if (rc)
		return rc;
	if (opts->use_env && (rc = config_apply_env(cfg, getenv, err))) {
		config_free(cfg);
		return rc;
	}
	char *joined = NULL;
	if (!opts->broker_url && !(joined = join_urls(cfg))) {
		config_free(cfg);
		return warren_error_set(err, WARREN_ENOMEM, "client: out of memory");
	}
	const char *backend = opts->result_backend ? opts->result_backend : cfg->result_backend.url;
	rc = client_make(cfg, opts->broker_url ? opts->broker_url : joined, backend, opts, out,
			 err);
	free(joined);
	return rc;
}

void warren_client_free(warren_client *c)
{
	if (!c)
		return;
	/* The rpc backend borrows the connection: it goes first. */
	if (c->conn)
		broker_publish_flush(c->conn, 5000, NULL);
	backend_free(c->be);
	broker_conn_free(c->conn);
	for (size_t i = 0; i < c->n_declared; i++)
		free(c->declared[i]);
	free(c->declared);
	free(c->queue_names);
	free(c->broker_urls);
	free(c->backend_url);
	config_free(c->cfg);
	free(c);
}

/* Routes every publisher confirm: warren_send's own, or the caller's. */
static void on_outcome(void *arg, uint64_t cookie, broker_outcome o, const char *reason)
{
	warren_client *c = arg;
	if (backend_outcome(c->be, cookie, o, reason))
		return;
	if (cookie & PRODUCER_SYNC_COOKIE) {
		if ((cookie & ~PRODUCER_SYNC_COOKIE) == c->sync_seq) {
			c->sync_done = true;
			c->sync_outcome = o;
			snprintf(c->sync_reason, sizeof c->sync_reason, "%s", reason ? reason : "");
		}
		return;
	}
	if (c->on_send)
		c->on_send(c->on_send_arg, cookie, (warren_send_outcome)o, reason);
}

static void conn_opts(const warren_client *c, broker_conn_opts *o)
{
	broker_conn_opts_init(o);
	const config_broker *cb = c->cfg ? &c->cfg->broker : NULL;
	o->urls = c->broker_urls;
	o->publish_window = c->opts.publish_window ? c->opts.publish_window : 1000;
	o->reconnect_timeout_ms = c->opts.reconnect_timeout_ms > 0 ? c->opts.reconnect_timeout_ms
								    : o->reconnect_timeout_ms;
	if (c->opts.connect_timeout_ms > 0)
		o->connect_timeout_ms = c->opts.connect_timeout_ms;
	else if (cb)
		o->connect_timeout_ms = (int)(cb->connect_timeout * 1000);
	if (c->opts.heartbeat >= 0)
		o->heartbeat = c->opts.heartbeat;
	else if (cb)
		o->heartbeat = cb->heartbeat;
	o->connection_name = "warren producer";
	if (cb) {
		o->tls_ca_file = cb->tls.ca;
		o->tls_cert_file = cb->tls.cert;
		o->tls_key_file = cb->tls.key;
		o->tls_verify_peer = o->tls_verify_hostname = cb->tls.verify != 0;
	}
}

int producer_broker(warren_client *c, warren_error *err)
{
	if (c->conn)
		return 0;
	broker_conn_opts o;
	conn_opts(c, &o);
	int rc = broker_conn_new(&o, &c->conn, err);
	if (rc)
		return rc == WARREN_ETIMEOUT ? WARREN_EBROKER : rc;
	broker_set_outcome_fn(c->conn, on_outcome, c);
	return 0;
}

int producer_backend(warren_client *c, warren_error *err)
{
	if (c->be)
		return 0;
	if (!c->backend_url)
		return warren_error_set(err, WARREN_EINVAL,
					"results: no result backend configured "
					"(give --result-backend or result_backend in the config)");
	backend_options o;
	backend_options_default(&o);
	if (c->cfg)
		o.result_expires = c->cfg->result_backend.result_expires;
	if (producer_backend_is_rpc(c)) {
		int rc = producer_broker(c, err);
		if (rc)
			return rc;
		o.conn = c->conn;
	}
	return backend_open(c->backend_url, &o, &c->be, err);
}

bool producer_backend_is_rpc(const warren_client *c)
{
	return c->backend_url && strncmp(c->backend_url, "rpc:", 4) == 0;
}

int producer_reply_to(warren_client *c, const char **reply_to, warren_error *err)
{
	*reply_to = c->oid;
	if (!producer_backend_is_rpc(c))
		return 0;
	int rc = producer_backend(c, err);
	if (!rc)
		rc = backend_before_send(c->be, err);
	if (!rc)
		*reply_to = backend_reply_to(c->be);
	return rc;
}

int warren_client_connect(warren_client *c, bool with_backend, warren_error *err)
{
	if (!c)
		return warren_error_set(err, WARREN_EINVAL, "client: NULL");
	int rc = producer_broker(c, err);
	if (!rc && with_backend)
		rc = producer_backend(c, err);
	return rc;
}

const char *warren_client_broker_url(const warren_client *c)
{
	return c ? c->broker_masked : "";
}

void warren_client_on_send(warren_client *c, warren_send_fn fn, void *arg)
{
	c->on_send = fn;
	c->on_send_arg = arg;
}

size_t warren_client_queues(const warren_client *c, const char *const **names)
{
	*names = c->queue_names;
	return c->n_queue_names;
}
