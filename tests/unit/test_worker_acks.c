/* tests/unit/test_worker_acks.c - the batched-ack tracker (worker/acks.c):
 * a multiple ack never passes over an unsettled delivery, nacks stay single
 * and are never acked again, held acks behind a long task go out one by
 * one, and an old generation's deliveries are never acked on a new one. */
#include <criterion/criterion.h>
#include <string.h>

#include "worker/worker.h"

#define MS (1000000LL)

typedef struct sent {
	uint64_t tag[64];
	bool multiple[64];
	size_t n;
	int fail_at; /* 1-based send that fails; 0 never */
} sent;

static int record(void *arg, uint64_t tag, bool multiple)
{
	sent *s = arg;
	cr_assert_lt(s->n, 64);
	s->tag[s->n] = tag;
	s->multiple[s->n] = multiple;
	s->n++;
	return s->fail_at && (int)s->n == s->fail_at ? WARREN_EBROKER : 0;
}

static void track(loop_acks *a, uint64_t gen, uint64_t from, uint64_t to)
{
	for (uint64_t t = from; t <= to; t++)
		cr_assert_eq(acks_track(a, gen, t), 0, "track %llu", (unsigned long long)t);
}

/* The broker's view, to check a sequence of sends against: AMQP 0-9-1
 * basic.ack multiple acks every unacked tag <= T and T must be unacked. */
typedef struct broker_view {
	bool unacked[128];
} broker_view;

static void apply(broker_view *b, const sent *s)
{
	for (size_t i = 0; i < s->n; i++) {
		uint64_t t = s->tag[i];
		cr_assert(b->unacked[t], "ack of %llu, not unacked: the broker would close the channel",
			  (unsigned long long)t);
		if (!s->multiple[i]) {
			b->unacked[t] = false;
			continue;
		}
		for (uint64_t u = 1; u <= t; u++)
			b->unacked[u] = false;
	}
}

Test(worker_acks, in_order_settles_go_out_as_one_multiple_ack)
{
	loop_acks a;
	acks_init(&a, 4, 50 * MS);
	sent s = {0};
	track(&a, 1, 1, 3);
	cr_assert(acks_settle(&a, 1, 1, true));
	cr_assert(acks_settle(&a, 1, 2, true));
	cr_assert(acks_settle(&a, 1, 3, true));
	cr_expect_not(acks_due(&a));
	cr_expect_eq(acks_flush(&a, 1, 0, false, record, &s), 1);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 3);
	cr_expect(s.multiple[0]);
	cr_expect_eq(a.n, 0);
	s.n = 0;
	cr_expect_eq(acks_flush(&a, 1, 0, false, record, &s), 0, "nothing left");
	acks_release(&a);
}

Test(worker_acks, never_passes_over_an_unsettled_delivery)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	broker_view b = {0};
	track(&a, 1, 1, 5);
	for (int t = 1; t <= 5; t++)
		b.unacked[t] = true;
	/* out of order: 2 and 4 and 5 done, 1 and 3 still running */
	acks_settle(&a, 1, 2, true);
	acks_settle(&a, 1, 4, true);
	acks_settle(&a, 1, 5, true);
	cr_expect_eq(acks_flush(&a, 1, 0, false, record, &s), 0, "1 blocks the front");
	acks_settle(&a, 1, 1, true);
	cr_expect_eq(acks_flush(&a, 1, 1 * MS, false, record, &s), 1);
	cr_expect_eq(s.tag[0], 2, "up to 2: 3 is not settled");
	cr_expect(s.multiple[0]);
	apply(&b, &s);
	cr_expect(b.unacked[3], "3 still unacked at the broker");
	s.n = 0;
	acks_settle(&a, 1, 3, true);
	acks_flush(&a, 1, 2 * MS, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 5);
	apply(&b, &s);
	for (int t = 1; t <= 5; t++)
		cr_expect_not(b.unacked[t]);
	acks_release(&a);
}

Test(worker_acks, nacks_and_rejects_are_forgotten_and_never_the_multiple_tag)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	broker_view b = {0};
	track(&a, 1, 1, 4);
	for (int t = 1; t <= 4; t++)
		b.unacked[t] = true;
	acks_settle(&a, 1, 1, true);
	cr_assert(acks_settle(&a, 1, 2, false)); /* the caller nacked it */
	b.unacked[2] = false;
	acks_flush(&a, 1, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 1, "not 2: it is gone at the broker");
	apply(&b, &s);
	s.n = 0;
	/* a nack at the tail: the multiple ack passes over it, harmlessly */
	acks_settle(&a, 1, 3, true);
	acks_settle(&a, 1, 4, false);
	b.unacked[4] = false;
	acks_flush(&a, 1, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 3);
	apply(&b, &s);
	cr_expect_eq(a.n, 0);
	acks_release(&a);
}

Test(worker_acks, gaps_in_tags_from_no_ack_consumers_are_fine)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	/* 2 and 5 went to a no-ack consumer (pidbox): never tracked */
	cr_assert_eq(acks_track(&a, 1, 1), 0);
	cr_assert_eq(acks_track(&a, 1, 3), 0);
	cr_assert_eq(acks_track(&a, 1, 4), 0);
	cr_assert_eq(acks_track(&a, 1, 6), 0);
	cr_expect_eq(acks_track(&a, 1, 6), WARREN_EINVAL, "tags only grow");
	cr_expect_eq(acks_track(&a, 1, 5), WARREN_EINVAL);
	cr_expect_not(acks_settle(&a, 1, 2, true), "not tracked: the caller acks it");
	acks_settle(&a, 1, 6, true);
	acks_settle(&a, 1, 4, true);
	acks_settle(&a, 1, 1, true);
	acks_settle(&a, 1, 3, true);
	acks_flush(&a, 1, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 6);
	cr_expect_not(acks_settle(&a, 1, 6, true), "already acked: not ours any more");
	acks_release(&a);
}

Test(worker_acks, settling_twice_keeps_one_ack)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	track(&a, 1, 1, 2);
	cr_expect(acks_settle(&a, 1, 2, true));
	cr_expect(acks_settle(&a, 1, 2, true), "absorbed, not sent on its own");
	cr_expect_eq(a.settled, 1);
	acks_settle(&a, 1, 1, true);
	acks_flush(&a, 1, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	acks_release(&a);
}

Test(worker_acks, held_acks_behind_a_long_task_go_out_singly_at_the_bound)
{
	loop_acks a;
	acks_init(&a, 3, 50 * MS);
	sent s = {0};
	broker_view b = {0};
	track(&a, 1, 1, 6);
	for (int t = 1; t <= 6; t++)
		b.unacked[t] = true;
	acks_settle(&a, 1, 2, true);
	acks_settle(&a, 1, 3, true);
	cr_expect_not(acks_due(&a));
	cr_expect_eq(acks_flush(&a, 1, 10 * MS, false, record, &s), 0);
	cr_expect_eq(acks_deadline_ns(&a), 60 * MS, "held since the flush that saw them");
	acks_settle(&a, 1, 4, true);
	cr_expect(acks_due(&a));
	cr_expect_eq(acks_flush(&a, 1, 11 * MS, false, record, &s), 3);
	for (size_t i = 0; i < s.n; i++)
		cr_expect_not(s.multiple[i], "singles: 1 is still running");
	apply(&b, &s);
	cr_expect(b.unacked[1]);
	cr_expect_eq(a.n, 3, "1, 5, 6 outstanding");
	cr_expect_eq(acks_deadline_ns(&a), 0);
	/* 1 ends: a multiple ack up to 1 only (5, 6 still run) */
	s.n = 0;
	acks_settle(&a, 1, 1, true);
	acks_flush(&a, 1, 12 * MS, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 1);
	apply(&b, &s);
	acks_release(&a);
}

Test(worker_acks, held_acks_go_out_after_the_hold_time_or_when_forced)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	track(&a, 1, 1, 4);
	acks_settle(&a, 1, 2, true);
	cr_expect_eq(acks_flush(&a, 1, 100 * MS, false, record, &s), 0);
	cr_expect_eq(acks_flush(&a, 1, 149 * MS, false, record, &s), 0);
	cr_expect_eq(acks_flush(&a, 1, 150 * MS, false, record, &s), 1, "50 ms held");
	cr_expect_eq(s.tag[0], 2);
	cr_expect_not(s.multiple[0]);
	s.n = 0;
	acks_settle(&a, 1, 4, true);
	cr_expect_eq(acks_flush(&a, 1, 151 * MS, true, record, &s), 1, "forced: shutdown");
	cr_expect_eq(s.tag[0], 4);
	cr_expect_not(s.multiple[0]);
	cr_expect_eq(a.n, 2, "1 and 3 still outstanding");
	cr_expect_eq(a.settled, 0);
	acks_release(&a);
}

Test(worker_acks, front_progress_restarts_the_hold_clock)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	track(&a, 1, 1, 4);
	acks_settle(&a, 1, 3, true);
	acks_flush(&a, 1, 0, false, record, &s); /* 3 held behind 1, 2 */
	acks_settle(&a, 1, 1, true);
	acks_flush(&a, 1, 40 * MS, false, record, &s); /* 1 goes; 3 still held behind 2 */
	cr_expect_eq(s.n, 1);
	cr_expect_eq(acks_deadline_ns(&a), 90 * MS, "the front moved at 40 ms");
	acks_release(&a);
}

Test(worker_acks, an_old_generation_is_never_acked_on_a_new_connection)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	track(&a, 1, 1, 3);
	acks_settle(&a, 1, 1, true);
	acks_settle(&a, 1, 2, true);
	/* reconnected: generation 2; the flush drops generation 1's acks */
	cr_expect_eq(acks_flush(&a, 2, 0, true, record, &s), 0);
	cr_expect_eq(s.n, 0);
	cr_expect_eq(a.n, 0);
	/* an old delivery settles late: not tracked, the caller's ack fails */
	cr_expect_not(acks_settle(&a, 1, 3, true));
	/* new deliveries restart from tag 1 on the new channel */
	track(&a, 2, 1, 2);
	acks_settle(&a, 2, 1, true);
	acks_settle(&a, 2, 2, true);
	acks_flush(&a, 2, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 2);
	acks_release(&a);
}

Test(worker_acks, tracking_a_new_generation_resets_before_any_flush)
{
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	sent s = {0};
	track(&a, 1, 5, 7);
	acks_settle(&a, 1, 5, true);
	track(&a, 2, 1, 1); /* a delivery of the new connection came first */
	cr_expect_eq(a.n, 1);
	cr_expect_eq(a.settled, 0);
	cr_expect_not(acks_settle(&a, 1, 6, true), "generation 1 is gone");
	acks_settle(&a, 2, 1, true);
	acks_flush(&a, 2, 0, false, record, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.tag[0], 1);
	acks_release(&a);
}

Test(worker_acks, a_failed_send_drops_the_rest)
{
	loop_acks a;
	acks_init(&a, 2, 50 * MS);
	sent s = {.fail_at = 1};
	track(&a, 1, 1, 3);
	acks_settle(&a, 1, 1, true);
	acks_settle(&a, 1, 3, true);
	acks_flush(&a, 1, 0, true, record, &s);
	cr_expect_eq(s.n, 1, "the connection is lost: nothing more is sent");
	cr_expect_eq(a.n, 0);
	acks_release(&a);
}

Test(worker_acks, many_out_of_order_settles_match_the_broker)
{
	/* A prefetch of 16, settled in a scrambled order with nacks mixed in:
	 * every send is valid for the broker and at the end nothing is unacked. */
	loop_acks a;
	acks_init(&a, 8, 50 * MS);
	broker_view b = {0};
	const int n = 100;
	uint64_t next = 1;
	unsigned seed = 7;
	uint64_t live[16];
	size_t nlive = 0;
	int64_t now = 0;
	while (next <= (uint64_t)n || nlive) {
		while (nlive < 16 && next <= (uint64_t)n) {
			cr_assert_eq(acks_track(&a, 1, next), 0);
			b.unacked[next] = true;
			live[nlive++] = next++;
		}
		seed = seed * 1103515245 + 12345;
		size_t pick = (seed >> 16) % nlive;
		uint64_t t = live[pick];
		live[pick] = live[--nlive];
		bool ack = (seed >> 8) % 7 != 0;
		if (!ack)
			b.unacked[t] = false; /* the caller's own nack */
		cr_assert(acks_settle(&a, 1, t, ack));
		sent s = {0};
		if (acks_due(&a) || (seed >> 4) % 3 == 0)
			acks_flush(&a, 1, now, false, record, &s);
		apply(&b, &s);
		now += MS;
	}
	sent s = {0};
	acks_flush(&a, 1, now, true, record, &s);
	apply(&b, &s);
	for (int t = 1; t <= n; t++)
		cr_expect_not(b.unacked[t], "tag %d never acked", t);
	acks_release(&a);
}
