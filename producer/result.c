/* producer/result.c - reading task results through the client's result
 * backend, and warren_result: one result with its value unpacked, rendered
 * as JSON, and its exception (type, message, module) read when it failed.
 *
 * Everything a getter returns is computed once when the result is made, so
 * getters are cheap and their pointers live exactly as long as the result.
 */
#include <stdlib.h>
#include <string.h>

#include "producer.h"

struct warren_result {
	schema_result r;
	msgpack_zone zone;
	msgpack_object obj; /* the unpacked value; nil when none */
	char *json;
	bool has_exc;
	schema_exc exc;
};

/* warren_state and schema_state list Celery's states in the same order. */
_Static_assert((int)WARREN_STATE_IGNORED == (int)SCHEMA_STATE_IGNORED &&
		       (int)WARREN_STATE_SUCCESS == (int)SCHEMA_STATE_SUCCESS,
	       "warren_state must mirror schema_state");

const char *warren_state_name(warren_state s)
{
	return schema_state_name((schema_state)s);
}

void warren_result_free(warren_result *res)
{
	if (!res)
		return;
	schema_result_release(&res->r);
	msgpack_zone_destroy(&res->zone);
	free(res->json);
	if (res->has_exc)
		schema_exc_release(&res->exc);
	free(res);
}

/* Takes r's contents (leaving r initialized) into a new warren_result. */
static int result_wrap(schema_result *r, warren_result **out, warren_error *err)
{
	warren_result *res = calloc(1, sizeof *res);
	if (!res || !msgpack_zone_init(&res->zone, 512)) {
		free(res);
		return warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
	}
	res->r = *r;
	schema_result_init(r);
	int rc = 0;
	res->obj.type = MSGPACK_OBJECT_NIL;
	if (res->r.result_mp) {
		schema_limits lim;
		schema_limits_default(&lim);
		if ((rc = schema_unpack(res->r.result_mp, res->r.result_len, &lim, "result",
					&res->zone, &res->obj, err)))
			goto out_free;
	}
	if (!(res->json = producer_object_to_json(&res->obj))) {
		rc = warren_error_set(err, WARREN_ENOMEM, "result: out of memory");
		goto out_free;
	}
	if (schema_state_is_exception(res->r.state) && res->r.result_mp &&
	    res->obj.type == MSGPACK_OBJECT_MAP) {
		if ((rc = schema_exc_read(res->r.result_mp, res->r.result_len, &res->exc, err)))
			goto out_free;
		res->has_exc = true;
	}
	*out = res;
	return 0;
out_free:
	warren_result_free(res);
	return rc;
}

static int check(warren_client *c, const char *id, warren_result **out, warren_error *err)
{
	if (!c || !out)
		return warren_error_set(err, WARREN_EINVAL, "result: NULL client or out");
	if (id && (!*id || strlen(id) >= WARREN_TASK_ID_MAX))
		return warren_error_set(err, WARREN_EINVAL, "result: bad task id '%s'", id);
	*out = NULL;
	return producer_backend(c, err);
}

int warren_result_get(warren_client *c, const char *id, warren_result **out, warren_error *err)
{
	if (!id)
		return warren_error_set(err, WARREN_EINVAL, "result: NULL task id");
	int rc = check(c, id, out, err);
	if (rc)
		return rc;
	schema_result r;
	schema_result_init(&r);
	if (!(rc = backend_get(c->be, id, &r, err)))
		rc = result_wrap(&r, out, err);
	schema_result_release(&r);
	return rc;
}

int warren_result_wait(warren_client *c, const char *id, int timeout_ms, warren_result **out,
		       warren_error *err)
{
	if (!id)
		return warren_error_set(err, WARREN_EINVAL, "result: NULL task id");
	int rc = check(c, id, out, err);
	if (rc)
		return rc;
	schema_result r;
	schema_result_init(&r);
	if (!(rc = backend_wait_results(c->be, &id, 1, timeout_ms, &r, NULL, err)))
		rc = result_wrap(&r, out, err);
	schema_result_release(&r);
	return rc;
}

/* Wraps every results[i] (ready or, with its id set, pending). */
static int wrap_all(const char *const *ids, schema_result *results, size_t n,
		    warren_result **out, warren_error *err)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if (!results[i].task_id && schema_result_set_task_id(&results[i], ids[i], err))
			rc = WARREN_ENOMEM;
		else
			rc = result_wrap(&results[i], &out[i], err);
	}
	if (rc)
		for (size_t i = 0; i < n; i++) {
			warren_result_free(out[i]);
			out[i] = NULL;
		}
	return rc;
}

int warren_result_wait_many(warren_client *c, const char *const *ids, size_t n, int timeout_ms,
			    warren_result **out, size_t *pending, warren_error *err)
{
	if (!ids || !n)
		return warren_error_set(err, WARREN_EINVAL, "results: no task ids");
	for (size_t i = 0; i < n; i++)
		if (out)
			out[i] = NULL;
	int rc = check(c, NULL, out, err);
	if (rc)
		return rc;
	schema_result *results = calloc(n, sizeof *results);
	if (!results)
		return warren_error_set(err, WARREN_ENOMEM, "results: out of memory");
	for (size_t i = 0; i < n; i++)
		schema_result_init(&results[i]);
	size_t left = n;
	rc = backend_wait_results(c->be, ids, n, timeout_ms, results, &left, err);
	if (pending)
		*pending = left;
	if (!rc || rc == WARREN_ETIMEOUT) {
		int wrc = wrap_all(ids, results, n, out, err);
		if (wrc)
			rc = wrc;
	}
	for (size_t i = 0; i < n; i++)
		schema_result_release(&results[i]);
	free(results);
	return rc;
}

const char *warren_result_id(const warren_result *r) { return r->r.task_id; }
warren_state warren_result_state(const warren_result *r) { return (warren_state)r->r.state; }
bool warren_result_ready(const warren_result *r) { return schema_state_is_ready(r->r.state); }

const void *warren_result_packed(const warren_result *r, size_t *len)
{
	if (len)
		*len = r->r.result_len;
	return r->r.result_mp;
}

const msgpack_object *warren_result_object(const warren_result *r) { return &r->obj; }
const char *warren_result_json(const warren_result *r) { return r->json; }
const char *warren_result_exc_type(const warren_result *r)
{
	return r->has_exc ? r->exc.type : NULL;
}
const char *warren_result_exc_message(const warren_result *r)
{
	return r->has_exc ? r->exc.message : NULL;
}
const char *warren_result_exc_module(const warren_result *r)
{
	return r->has_exc ? r->exc.module : NULL;
}
const char *warren_result_traceback(const warren_result *r) { return r->r.traceback; }

/* canvas.c: a group's list, made into a result like any other. */
int producer_result_from(schema_result *r, warren_result **out, warren_error *err)
{
	return result_wrap(r, out, err);
}
