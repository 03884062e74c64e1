"""Celery's side of bench/canvas.sh: times canvases sent by Celery 5.2's own
client (tests/interop/celery_app.py: msgpack, result backend from
CELERY_RESULT_BACKEND, a redis:// URL here) and run by whatever workers
consume QUEUE.

    canvas_celery.py QUEUE CHAIN_REPS CHORD_REPS CHORD_N

The same measure as bench/canvas_warren.c: one untimed chain first (waited on
for up to 120 s: the wait for the worker, and it opens the connections);
then CHAIN_REPS times chain(add.s(1, 1), add.s(1) x 9) (= 11) and CHORD_REPS
times chord([add.s(i, i) for i < CHORD_N], total.s()) (= N * (N - 1)), each
timed from before the signatures are built to the final result in hand and
printed as "chain SECONDS SEND" / "chord SECONDS SEND" (SEND: the part until
apply_async returned; Celery publishes without confirms by default). A wrong
result exits 1.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
from celery import chain, chord  # noqa: E402
from celery_app import add, total  # noqa: E402


def run_chain(q, timeout):
    res = chain(add.s(1, 1).set(queue=q), *[add.s(1).set(queue=q) for _ in range(9)])()
    sent = time.monotonic()
    return res.get(timeout=timeout), sent


def run_chord(q, n, timeout):
    header = [add.s(i, i).set(queue=q) for i in range(n)]
    res = chord(header)(total.s().set(queue=q))
    sent = time.monotonic()
    return res.get(timeout=timeout), sent


def check(what, got, want):
    if got != want:
        print(f"canvas_celery: {what} result {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def main():
    q, chain_reps, chord_reps, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    check("warm-up chain", run_chain(q, 120)[0], 11)
    for _ in range(chain_reps):
        t0 = time.monotonic()
        got, sent = run_chain(q, 60)
        took = time.monotonic() - t0
        check("chain", got, 11)
        print(f"chain {took:.6f} {sent - t0:.6f}", flush=True)
    for _ in range(chord_reps):
        t0 = time.monotonic()
        got, sent = run_chord(q, n, 600)
        took = time.monotonic() - t0
        check("chord", got, n * (n - 1))
        print(f"chord {took:.6f} {sent - t0:.6f}", flush=True)


if __name__ == "__main__":
    main()
