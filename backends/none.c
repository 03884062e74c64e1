/* backends/none.c - results disabled (Celery's DisabledBackend): storing is a
 * silent success, so a worker runs the same code whatever the backend, and
 * asking for a result is a clear error rather than a wait that never ends. */
#include <stdlib.h>

#include "backend.h"

typedef struct none_backend {
	const char *url_masked; /* lives in the handle */
} none_backend;

static int disabled(void *impl, const char *what, warren_error *err)
{
	none_backend *nb = impl;
	return warren_error_set(err, WARREN_EINVAL,
				"result backend '%s': cannot %s: results are disabled "
				"(result_backend: none)", nb->url_masked, what);
}

static int none_open(const char *url, const char *url_masked, const backend_options *o,
		     void **impl, warren_error *err)
{
	(void)url;
	(void)o;
	none_backend *nb = malloc(sizeof *nb);
	if (!nb)
		return warren_error_set(err, WARREN_ENOMEM, "result backend: out of memory");
	nb->url_masked = url_masked;
	*impl = nb;
	return 0;
}

static int none_store(void *impl, const schema_result *r, const backend_request *req,
		      warren_error *err)
{
	(void)impl;
	(void)r;
	(void)req;
	(void)err;
	return 0;
}

static int none_get(void *impl, const char *id, schema_result *out, warren_error *err)
{
	(void)id;
	(void)out;
	return disabled(impl, "read a result", err);
}

static int none_wait(void *impl, const char *const *ids, size_t n, int timeout_ms,
		     backend_ready_fn on_ready, void *arg, warren_error *err)
{
	(void)ids;
	(void)n;
	(void)timeout_ms;
	(void)on_ready;
	(void)arg;
	return disabled(impl, "wait for a result", err);
}

static int none_forget(void *impl, const char *id, warren_error *err)
{
	(void)id;
	return disabled(impl, "forget a result", err);
}

static void none_free(void *impl)
{
	free(impl);
}

const backend_ops backend_none_ops = {
	.name = "none",
	.open = none_open,
	.store = none_store,
	.get = none_get,
	.wait = none_wait,
	.forget = none_forget,
	.free = none_free,
};
