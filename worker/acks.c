/* worker/acks.c - batched acks: which deliveries may one basic.ack with
 * multiple=true cover?
 *
 * Every task delivery is tracked here from the moment the loop takes it
 * (loop_on_message) until it is settled. Tags on a channel grow, so the
 * outstanding ones are an ascending array. Settling:
 *   - an ack (result stored, republish confirmed, ...) only marks the entry:
 *     the ack itself waits for acks_flush;
 *   - a nack or reject is sent at once by the caller, one delivery, and its
 *     entry goes: the broker forgets that delivery, so a later multiple ack
 *     over its tag does not touch it.
 * acks_flush sends one basic.ack multiple=true for the run of marked entries
 * at the front (the highest marked tag T such that every tracked delivery
 * <= T is settled). T is always a delivery the broker still counts as
 * unacked, as RabbitMQ requires. A multiple ack also passes over deliveries
 * of no-ack consumers (pidbox, rpc replies) on the same channel, which the
 * broker does not track: harmless.
 *
 * Marked entries behind an unsettled one (a long task at the front) are
 * "held". So that a long task cannot hold every prefetch slot hostage, they
 * are acked one by one once there are `bound` of them, once the front has not
 * moved for hold_ns, or on a forced flush (shutdown).
 *
 * Generations: entries belong to one connection generation. A delivery of
 * another generation resets the tracker (the old deliveries are void; the
 * broker redelivers them), and nothing of an old generation is ever acked on
 * a new connection. Pure: no broker calls but through the send callback, so
 * tests/unit/test_worker_acks.c drives it directly. Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "worker.h"

void acks_init(loop_acks *a, size_t bound, int64_t hold_ns)
{
	memset(a, 0, sizeof *a);
	a->bound = bound ? bound : 1;
	a->hold_ns = hold_ns;
}

void acks_release(loop_acks *a)
{
	free(a->ent);
	a->ent = NULL;
	a->n = a->cap = a->settled = 0;
}

static void reset(loop_acks *a, uint64_t generation)
{
	a->generation = generation;
	a->n = a->settled = 0;
	a->held_since_ns = 0;
}

int acks_track(loop_acks *a, uint64_t generation, uint64_t tag)
{
	if (generation != a->generation)
		reset(a, generation);
	if (a->n && tag <= a->ent[a->n - 1].tag)
		return WARREN_EINVAL; /* tags only grow on a channel */
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		acks_entry *e = realloc(a->ent, cap * sizeof *e);
		if (!e)
			return WARREN_ENOMEM;
		a->ent = e;
		a->cap = cap;
	}
	a->ent[a->n++] = (acks_entry){.tag = tag, .settled = false};
	return 0;
}

/* The index of tag, or n. Binary search: the array is ascending. */
static size_t find(const loop_acks *a, uint64_t tag)
{
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->ent[mid].tag < tag)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->n && a->ent[lo].tag == tag ? lo : a->n;
}

static void remove_at(loop_acks *a, size_t i)
{
	memmove(&a->ent[i], &a->ent[i + 1], (a->n - i - 1) * sizeof a->ent[0]);
	a->n--;
}

bool acks_settle(loop_acks *a, uint64_t generation, uint64_t tag, bool ack)
{
	if (generation != a->generation)
		return false;
	size_t i = find(a, tag);
	if (i == a->n)
		return false; /* not tracked: the caller settles it on its own */
	if (a->ent[i].settled)
		return true; /* settled twice: the first one stands */
	if (ack) {
		a->ent[i].settled = true;
		a->settled++;
	} else {
		remove_at(a, i);
	}
	return true;
}

bool acks_due(const loop_acks *a)
{
	return a->settled >= a->bound;
}

int64_t acks_deadline_ns(const loop_acks *a)
{
	return a->settled && a->held_since_ns ? a->held_since_ns + a->hold_ns : 0;
}

size_t acks_flush(loop_acks *a, uint64_t generation, int64_t now_ns, bool all,
		  acks_send_fn send, void *arg)
{
	if (generation != a->generation) {
		reset(a, generation); /* the connection is new: old acks are void */
		return 0;
	}
	size_t sent = 0, k = 0;
	while (k < a->n && a->ent[k].settled)
		k++;
	if (k) {
		int rc = send(arg, a->ent[k - 1].tag, true);
		memmove(a->ent, a->ent + k, (a->n - k) * sizeof a->ent[0]);
		a->n -= k;
		a->settled -= k;
		a->held_since_ns = 0; /* the front moved */
		if (rc != 0) {
			reset(a, generation); /* connection lost: everything is redelivered */
			return sent;
		}
		sent++;
	}
	if (!a->settled) {
		a->held_since_ns = 0;
		return sent;
	}
	/* Marked entries held behind an unsettled one. */
	if (!a->held_since_ns)
		a->held_since_ns = now_ns;
	if (!all && a->settled < a->bound && now_ns - a->held_since_ns < a->hold_ns)
		return sent;
	size_t w = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (!a->ent[i].settled) {
			a->ent[w++] = a->ent[i];
			continue;
		}
		if (send(arg, a->ent[i].tag, false) != 0) {
			reset(a, generation);
			return sent;
		}
		sent++;
	}
	a->n = w;
	a->settled = 0;
	a->held_since_ns = 0;
	return sent;
}
