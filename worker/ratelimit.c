/* worker/ratelimit.c - a token bucket per task name, per worker, as Celery's
 * kombu TokenBucket: `rate` tokens a second, at most `burst` saved up. The
 * loop asks it before submitting a rate-limited task and parks the task on
 * its timer for the time it returns, so one slow task name never blocks
 * another. Pure arithmetic on the caller's clock; unit-tested. */
#include <math.h>

#include "worker.h"

void rate_bucket_init(rate_bucket *b, double rate, int64_t now_ns)
{
	b->rate = rate;
	/* Celery's bucket holds one token: no burst beyond the rate. */
	b->burst = 1;
	b->tokens = 1;
	b->last_ns = now_ns;
}

int64_t rate_bucket_take(rate_bucket *b, int64_t now_ns)
{
	if (!(b->rate > 0))
		return 0;
	if (now_ns > b->last_ns) {
		b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * b->rate;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last_ns = now_ns;
	}
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 0;
	}
	int64_t wait = (int64_t)ceil((1 - b->tokens) / b->rate * 1e9);
	return wait > 0 ? wait : 1;
}
