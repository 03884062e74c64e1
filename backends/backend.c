/* backends/backend.c - the result backend interface: picks an implementation
 * by URL scheme, checks arguments once for all of them, and turns the
 * callback form of waiting into the array form. The implementations
 * (redis.c, rpc.c, none.c) only see checked arguments. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define MASKED_URL_MAX 512

struct backend {
	const backend_ops *ops;
	void *impl;
	char url_masked[MASKED_URL_MAX];
};

void backend_options_default(backend_options *o)
{
	memset(o, 0, sizeof *o);
	o->result_expires = 86400; /* Celery's result_expires: one day */
	schema_limits_default(&o->limits);
	o->connect_timeout_ms = 4000;
	o->io_timeout_ms = 10000;
}

static bool has_scheme(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);
	return strncmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

/* The implementation for url's scheme, or NULL with err set. */
static const backend_ops *pick(const char *url, const char *masked, warren_error *err)
{
	if (!*url || strcmp(url, "none") == 0 || has_scheme(url, "none"))
		return &backend_none_ops;
	if (has_scheme(url, "redis") || has_scheme(url, "rediss"))
		return &backend_redis_ops;
	if (has_scheme(url, "rpc"))
		return &backend_rpc_ops;
	warren_error_set(err, WARREN_EINVAL,
			 "result backend '%s': unsupported scheme; expected redis://, "
			 "rediss://, rpc:// or none", masked);
	return NULL;
}

static int check_options(const backend_options *o, const char *masked, warren_error *err)
{
	if (o->result_expires < 0)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': result_expires %lld is negative",
					masked, (long long)o->result_expires);
	if (o->connect_timeout_ms <= 0 || o->io_timeout_ms <= 0)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': timeouts must be positive", masked);
	return 0;
}

int backend_open(const char *url, const backend_options *opts, backend **out,
		 warren_error *err)
{
	backend_options defaults;
	int rc;

	if (!out)
		return warren_error_set(err, WARREN_EINVAL, "backend_open: out is NULL");
	*out = NULL;
	if (!url)
		url = "";
	if (!opts) {
		backend_options_default(&defaults);
		opts = &defaults;
	}
	backend *b = calloc(1, sizeof *b);
	if (!b)
		return warren_error_set(err, WARREN_ENOMEM, "result backend: out of memory");
	backend_url_mask(url, b->url_masked, sizeof b->url_masked);
	rc = check_options(opts, b->url_masked, err);
	if (rc)
		goto out_free;
	b->ops = pick(url, b->url_masked, err);
	if (!b->ops) {
		rc = WARREN_EINVAL;
		goto out_free;
	}
	rc = b->ops->open(url, b->url_masked, opts, &b->impl, err);
	if (rc)
		goto out_free;
	*out = b;
	return 0;
out_free:
	free(b);
	return rc;
}

void backend_free(backend *b)
{
	if (!b)
		return;
	b->ops->free(b->impl);
	free(b);
}

const char *backend_name(const backend *b)
{
	return b->ops->name;
}

const char *backend_url(const backend *b)
{
	return b->url_masked;
}

int backend_store(backend *b, const schema_result *r, const backend_request *req,
		  warren_error *err)
{
	static const backend_request no_request = {0};

	if (!b || !r)
		return warren_error_set(err, WARREN_EINVAL, "backend_store: NULL argument");
	if (!r->task_id || !*r->task_id)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': store: the result has no task id",
					b->url_masked);
	return b->ops->store(b->impl, r, req ? req : &no_request, err);
}

int backend_get(backend *b, const char *id, schema_result *out, warren_error *err)
{
	if (!b || !id || !out)
		return warren_error_set(err, WARREN_EINVAL, "backend_get: NULL argument");
	return b->ops->get(b->impl, id, out, err);
}

int backend_wait(backend *b, const char *const *ids, size_t n, int timeout_ms,
		 backend_ready_fn on_ready, void *arg, warren_error *err)
{
	if (!b || (n && !ids) || !on_ready)
		return warren_error_set(err, WARREN_EINVAL, "backend_wait: NULL argument");
	for (size_t i = 0; i < n; i++)
		if (!ids[i])
			return warren_error_set(err, WARREN_EINVAL,
						"backend_wait: ids[%zu] is NULL", i);
	if (n == 0)
		return 0;
	return b->ops->wait(b->impl, ids, n, timeout_ms, on_ready, arg, err);
}

typedef struct into_array {
	schema_result *results;
	size_t ready;
} into_array;

static int move_into_array(void *arg, size_t index, schema_result *r)
{
	into_array *a = arg;
	schema_result_release(&a->results[index]);
	a->results[index] = *r;
	schema_result_init(r);
	a->ready++;
	return 0;
}

int backend_wait_results(backend *b, const char *const *ids, size_t n, int timeout_ms,
			 schema_result *results, size_t *pending, warren_error *err)
{
	into_array a = {.results = results};

	if (pending)
		*pending = n;
	if (!results && n)
		return warren_error_set(err, WARREN_EINVAL, "backend_wait_results: NULL results");
	int rc = backend_wait(b, ids, n, timeout_ms, move_into_array, &a, err);
	if (pending)
		*pending = n - a.ready;
	return rc;
}

int backend_forget(backend *b, const char *id, warren_error *err)
{
	if (!b || !id)
		return warren_error_set(err, WARREN_EINVAL, "backend_forget: NULL argument");
	return b->ops->forget(b->impl, id, err);
}

const char *backend_reply_to(const backend *b)
{
	if (!b || !b->ops->reply_to)
		return NULL;
	return b->ops->reply_to(b->impl);
}

int backend_before_send(backend *b, warren_error *err)
{
	if (!b)
		return warren_error_set(err, WARREN_EINVAL, "backend_before_send: NULL backend");
	if (!b->ops->before_send)
		return 0;
	return b->ops->before_send(b->impl, err);
}

bool backend_outcome(backend *b, uint64_t cookie, broker_outcome o, const char *reason)
{
	if (!b || !b->ops->outcome || !(cookie & BACKEND_COOKIE_TAG))
		return false;
	return b->ops->outcome(b->impl, cookie, o, reason);
}

void backend_outcome_fn(void *b, uint64_t cookie, broker_outcome o, const char *reason)
{
	backend_outcome(b, cookie, o, reason);
}
