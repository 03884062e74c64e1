"""Python Celery 5.2 starting canvases that warren workers run
(tests/interop/test_canvas_celery.c).

    canvas_celery.py MODE QUEUE

Uses celery_app (msgpack) with the Redis result backend from
CELERY_RESULT_BACKEND. Prints one JSON object {"ok": bool, "detail": ...}
and exits 0 when it could run at all. Modes:
  chain   chain(add(2, 3), mul(10), add(1)).get() == 51
  chord   chord(10 x text.wordcount, math.sum).get() == 55
  read ID the result of task ID, as Celery reads it (for a warren-sent chain)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from celery import chain, chord  # noqa: E402
from celery_app import add, app, mul, total, wordcount  # noqa: E402,F401


def out(ok, detail=None):
    print(json.dumps({"ok": bool(ok), "detail": detail}, default=repr))
    sys.exit(0)


def mode_chain(q):
    res = chain(add.s(2, 3).set(queue=q), mul.s(10).set(queue=q), add.s(1).set(queue=q))()
    value = res.get(timeout=20)
    out(value == 51, {"result": value, "parent": res.parent.get(timeout=5)})


def mode_chord(q):
    header = [wordcount.s(" ".join(["w"] * (i + 1))).set(queue=q) for i in range(10)]
    res = chord(header)(total.s().set(queue=q))
    value = res.get(timeout=20)
    out(value == 55, {"result": value})


def mode_read(_q, task_id):
    value = app.AsyncResult(task_id).get(timeout=30)
    out(True, {"result": value})


if __name__ == "__main__":
    mode = sys.argv[1]
    try:
        globals()["mode_" + mode](*sys.argv[2:])
    except Exception as exc:  # noqa: BLE001
        out(False, {"error": repr(exc)})
