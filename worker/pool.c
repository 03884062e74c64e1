/* worker/pool.c - the pool interface: dispatch to the threads or prefork
 * implementation, and the job's lifecycle. See the pools section of worker.h. */
#include <stdlib.h>

#include "worker.h"

struct pool {
	const pool_ops *ops;
	void *impl;
	int concurrency; /* as opened, then as pool_resize set it */
};

void pool_job_free(pool_job *job)
{
	if (!job)
		return;
	free(job->task_id);
	free(job->task_name);
	free(job->headers);
	free(job->args);
	free(job->kwargs);
	free(job->result);
	free(job->exc_type);
	free(job->exc_module);
	free(job->exc_message);
	free(job->traceback);
	free(job);
}

int pool_new(const pool_options *o, const registry *reg, pool **out, warren_error *err)
{
	if (o->concurrency < 1)
		return warren_error_set(err, WARREN_EINVAL, "pool: concurrency %d, expected at least 1",
					o->concurrency);
	const pool_ops *ops = o->kind == POOL_PREFORK ? &pool_prefork_ops : &pool_threads_ops;
	pool *p = calloc(1, sizeof *p);
	if (!p)
		return warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
	p->ops = ops;
	int rc = ops->open(o, reg, &p->impl, err);
	if (rc != 0) {
		free(p);
		return rc;
	}
	p->concurrency = o->concurrency;
	*out = p;
	return 0;
}

int pool_resize(pool *p, int new_concurrency, warren_error *err)
{
	if (new_concurrency < 1 || new_concurrency > POOL_MAX_CONCURRENCY)
		return warren_error_set(err, WARREN_EINVAL,
					"pool: cannot resize to %d, expected 1 to %d", new_concurrency,
					POOL_MAX_CONCURRENCY);
	int rc = p->ops->resize(p->impl, new_concurrency, err);
	if (rc == 0)
		p->concurrency = new_concurrency;
	return rc;
}

int pool_concurrency(const pool *p) { return p->concurrency; }

int pool_fd(const pool *p) { return p->ops->fd(p->impl); }

int pool_submit(pool *p, pool_job *job, warren_error *err)
{
	return p->ops->submit(p->impl, job, err);
}

pool_job *pool_take_done(pool *p) { return p->ops->take_done(p->impl); }

void pool_tick(pool *p) { p->ops->tick(p->impl); }

int64_t pool_next_deadline_ns(const pool *p) { return p->ops->next_deadline_ns(p->impl); }

int pool_terminate(pool *p, uint64_t seq, int signum, warren_error *err)
{
	return p->ops->terminate(p->impl, seq, signum, err);
}

size_t pool_pending(const pool *p) { return p->ops->pending(p->impl); }

bool pool_job_started(pool *p, uint64_t seq, int64_t *start_ns, int64_t *pid)
{
	return p->ops->started(p->impl, seq, start_ns, pid);
}

void pool_on_start(pool *p, pool_start_fn fn, void *arg)
{
	p->ops->on_start(p->impl, fn, arg);
}

size_t pool_unqueue(pool *p) { return p->ops->unqueue(p->impl); }

int pool_close(pool *p, int grace_ms, warren_error *err)
{
	return p->ops->close(p->impl, grace_ms, err);
}

void pool_free(pool *p)
{
	if (!p)
		return;
	p->ops->free(p->impl);
	free(p);
}
