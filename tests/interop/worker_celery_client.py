"""A real Celery 5.2 client driving warren-worker (tests/interop/test_worker_celery.c).

    worker_celery_client.py MODE QUEUE [ARG]

Uses celery_app (msgpack both ways) with the result backend from
CELERY_RESULT_BACKEND (redis:// or rpc://). Prints one JSON object: {"ok": bool,
"detail": ...}; exits 0 when it could run at all (the C side asserts "ok").
Modes:
  types       every msgpack type through test.echo, compared equal
  math        math.* and text.* results
  math6       six math.add tasks sent at once (the rate-limit test)
  fail        test.fail raises ValueError with its message
  many N      N test.echo tasks in flight, each result matched to its id
  expired     a task whose expires is in the past is REVOKED (TaskRevokedError)
  countdown   a countdown of 2 s is respected (result not before 2 s)
  retries     test.flaky to success (3), and past max_retries to MaxRetriesExceededError
  send N SEC  sends N test.sleep(SEC), prints their ids, does not wait
  collect F   waits for every id in JSON file F, reports the states
"""
import json
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, __import__("os").path.dirname(__file__))
from celery_app import app  # noqa: E402


def out(ok, detail=None):
    print(json.dumps({"ok": bool(ok), "detail": detail}, default=repr))
    sys.exit(0)


def send(queue, name, args=(), kwargs=None, **opts):
    return app.send_task(name, args, kwargs or {}, queue=queue, **opts)


def mode_types(q):
    args = (None, True, False, 0, -1, 127, 255, 65535, -32769, 2**63 - 1, -(2**63), 2**64 - 1,
            1.5, -0.0, 1e300, "", "é ✓ 🚀", "x" * 70000, b"", b"\x00\xff" * 40000,
            [], [1, [2, [3, [4]]]], {}, {"a": {"b": [None, {"c": b"d"}]}})
    kwargs = {"k": [1, 2.5, "s", b"b", None, {"n": True}], "ü": {}}
    got = send(q, "test.echo", args, kwargs).get(timeout=20)
    want = [list(args), kwargs]
    out(got == want, None if got == want else {"got": got, "want": want})


def mode_math(q):
    cases = [("math.add", (2, 3), 5), ("math.add", (2, 0.5), 2.5), ("math.mul", (6, 7), 42),
             ("math.sum", ([1, 2, 3.5],), 6.5), ("text.upper", ("hello é",), "HELLO É"),
             ("text.wordcount", ("a  b\tc\n d",), 4)]
    bad = []
    for name, args, want in cases:
        got = send(q, name, args).get(timeout=20)
        if got != want or type(got) is not type(want):
            bad.append([name, args, got, want])
    out(not bad, bad)


def mode_math6(q):
    rs = [send(q, "math.add", (i, i)) for i in range(6)]
    got = [r.get(timeout=30) for r in rs]
    out(got == [2 * i for i in range(6)], got)


def mode_fail(q):
    try:
        send(q, "test.fail", ("it broke: ünïcode",)).get(timeout=20)
    except ValueError as e:
        out(str(e) == "it broke: ünïcode", str(e))
    except Exception as e:  # noqa: BLE001
        out(False, "%s: %s" % (type(e).__name__, e))
    out(False, "no exception")


def mode_many(q, n):
    results = [(i, send(q, "test.echo", (i, "v%d" % i))) for i in range(int(n))]
    bad = []
    for i, r in results:
        got = r.get(timeout=60)
        if got != [[i, "v%d" % i], {}]:
            bad.append([r.id, i, got])
    out(not bad, {"n": len(results), "bad": bad[:5]})


def mode_expired(q):
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    r = send(q, "math.add", (1, 1), expires=past)
    try:
        r.get(timeout=20)
    except Exception as e:  # noqa: BLE001
        out(r.state == "REVOKED" and type(e).__name__ == "TaskRevokedError",
            [r.state, type(e).__name__, str(e)])
    out(False, ["no exception", r.state])


def mode_countdown(q):
    t0 = time.monotonic()
    got = send(q, "math.add", (20, 22), countdown=2).get(timeout=30)
    elapsed = time.monotonic() - t0
    out(got == 42 and elapsed >= 2.0, {"got": got, "elapsed": elapsed})


def mode_retries(q):
    ok_result = send(q, "test.flaky", ("k-ok", 2)).get(timeout=30)
    r = send(q, "test.flaky", ("k-max", 5))
    try:
        r.get(timeout=30)
        out(False, ["no exception", ok_result])
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        out(ok_result == 3 and name == "MaxRetriesExceededError", [ok_result, name, str(e)])


def mode_send(q, n, sec):
    ids = [send(q, "test.sleep", (float(sec),)).id for _ in range(int(n))]
    print(json.dumps(ids))


def mode_collect(path, timeout=120):
    ids = json.load(open(path))
    states = {}
    deadline = time.monotonic() + float(timeout)
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        left = []
        for i in pending:
            meta = app.backend.get_task_meta(i)
            if meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                states[meta["status"]] = states.get(meta["status"], 0) + 1
            else:
                left.append(i)
        pending = left
        if pending:
            time.sleep(0.2)
    states["missing"] = len(pending)
    out(states.get("SUCCESS", 0) == len(ids), states)


def main():
    mode, queue = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    fn = {"types": mode_types, "math": mode_math, "fail": mode_fail, "many": mode_many,
          "expired": mode_expired, "math6": mode_math6, "countdown": mode_countdown, "retries": mode_retries,
          "send": mode_send}.get(mode)
    if mode == "collect":
        mode_collect(queue, *rest)
    if fn is None:
        print("unknown mode %s" % mode, file=sys.stderr)
        sys.exit(2)
    try:
        fn(queue, *rest)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        out(False, "%s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
