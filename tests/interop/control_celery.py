"""Celery 5.2's remote control against warren workers
(tests/interop/test_control_celery.c).

    control_celery.py MODE [ARG...]

Uses celery_app (msgpack) with the result backend from CELERY_RESULT_BACKEND.
Prints one JSON value on stdout; exits 0 when it could run at all (the C side
judges the value). Modes:
  ping TIMEOUT                   app.control.inspect(timeout).ping()
  registered NODE...             inspect(destination).registered()
  countdown-revoke QUEUE         sends test.echo with countdown 3, revokes it
                                 (app.control.revoke), waits for its state
  send-id QUEUE ID               sends test.echo with that task id, no wait
  state ID                       waits up to 15 s for the task to be ready
  terminate QUEUE NODE           test.sleep(30) on NODE; once active there,
                                 revoke(terminate=True); waits for the state
  rate-limit NODE TASK RATE      app.control.rate_limit(..., reply=True)
  timed QUEUE N                  N test.noop tasks; seconds until all are done
  shutdown NODE                  app.control.shutdown(destination=[NODE])
"""
import json
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from celery_app import app  # noqa: E402


def out(value):
    print(json.dumps(value, default=repr))
    sys.exit(0)


def wait_ready(result, seconds=15):
    until = time.monotonic() + seconds
    while time.monotonic() < until and not result.ready():
        time.sleep(0.1)
    return {"id": result.id, "state": result.state, "result": repr(result.result)}


def mode_ping(timeout):
    out(app.control.inspect(timeout=float(timeout)).ping() or {})


def mode_registered(*nodes):
    out(app.control.inspect(timeout=3, destination=list(nodes)).registered() or {})


def mode_countdown_revoke(queue):
    r = app.send_task("test.echo", ["never"], queue=queue, countdown=3)
    app.control.revoke(r.id)
    out(wait_ready(r))


def mode_send_id(queue, task_id):
    out(app.send_task("test.echo", ["again"], queue=queue, task_id=task_id).id)


def mode_state(task_id):
    out(wait_ready(app.AsyncResult(task_id)))


def mode_terminate(queue, node):
    r = app.send_task("test.sleep", [30], queue=queue)
    insp = app.control.inspect(timeout=1, destination=[node])
    until = time.monotonic() + 10
    seen = False
    while time.monotonic() < until and not seen:
        active = (insp.active() or {}).get(node) or []
        seen = any(t.get("id") == r.id for t in active)
    reply = app.control.revoke(r.id, terminate=True, destination=[node], reply=True,
                               timeout=3)
    state = wait_ready(r)
    state.update({"seen_active": seen, "reply": reply})
    out(state)


def mode_rate_limit(node, task, rate):
    out(app.control.rate_limit(task, rate, destination=[node], reply=True, timeout=3))


def mode_timed(queue, n):
    start = time.monotonic()
    results = [app.send_task("test.noop", [], queue=queue) for _ in range(int(n))]
    for r in results:
        r.get(timeout=30)
    out(time.monotonic() - start)


def mode_shutdown(node):
    app.control.shutdown(destination=[node])
    out(True)


def main():
    mode = sys.argv[1].replace("-", "_")
    globals()["mode_" + mode](*sys.argv[2:])


if __name__ == "__main__":
    main()
