"""The `children` a worker stores with a task's result, as Python Celery 5.2
reads it back (tests/interop/test_children_celery.c).

    children_celery.py MODE QUEUE RUN

Sends one canvas (MODE, below) from Celery's own client to QUEUE, where a
Celery worker or a warren worker serves it, waits until every task of it has
finished, and prints one JSON object {"ok": bool, "detail": ...}; exits 0 when
it could run at all. The C side runs each mode once on a Celery worker and once
on a warren worker and compares the two details, which are made comparable:
every task and group id the canvas pins is RUN-<label> and is printed as
<label>; an id the worker made up itself (the group Celery's trace.py wraps
several callbacks in) is printed as <gen N>, N in order of first appearance.

The detail holds, per pinned task id that stores a result:
  meta      the raw `children` of its result, as the worker stored it
            (redis: msgpack under celery-task-meta-<id>; rpc: the reply's
            children, as AsyncResult kept them)
  children  AsyncResult(id).children: each child's class and as_tuple()
and, for the first task of the canvas:
  graph     AsyncResult(id).graph, as sorted [node, [children]] pairs
  collect   AsyncResult(id).collect(): [node, value] in Celery's order

The result backend is CELERY_RESULT_BACKEND (redis:// for every mode; the
rpc modes want rpc://). The canvases:
  link1       add(2, 3) linked to mul(10)
  link2       add(2, 3) linked to [mul(10), add(1)] (one group made by the worker)
  linkgroup   add(2, 3) linked to group(mul(10), mul(100))
  linkmix     add(2, 3) linked to [group(mul(2), mul(3)), add(1), mul(10)]
  linkchain   add(2, 3) linked to chain(mul(10), add(1))
  linkchord   add(2, 3) linked to chord([mul(10), mul(100)], math.sum)
  linkgchain  add(2, 3) linked to group(chain(mul(10), add(1)), mul(100))
  chain       chain(add(2, 3), mul(10), add(1))
  chaingroup  chain(add(2, 3), group(mul(10), mul(100)))
  chainchord  chain(add(2, 3), group(mul(10), mul(100)), math.sum, add(1))
  retry       test.flaky('k', 1, 30): the RETRY stored while the retry waits
  rpclink1    link1 with the rpc backend
  rpcchain    chain with the rpc backend

celery#4710 (a group signature inside a message body is packed corrupt by
msgpack) is worked around on this client only: the embed (chain, callbacks,
errbacks, chord) goes out as plain dicts, which is what the bytes should have
been. Workers of both kinds send their own messages unpatched.
"""
import inspect
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import msgpack  # noqa: E402
from celery import chain, chord, group  # noqa: E402
from celery_app import add, app, mul, total  # noqa: E402

RUN = None
DEADLINE = 30.0


def out(ok, detail=None):
    print(json.dumps({"ok": bool(ok), "detail": detail}, default=repr, sort_keys=True))
    sys.exit(0)


def plain(obj):
    return json.loads(json.dumps(obj))


_as_task_v2 = app.amqp.as_task_v2
_as_task_v2_sig = inspect.signature(_as_task_v2)


def as_task_v2_plain_embed(*args, **kwargs):
    bound = _as_task_v2_sig.bind(*args, **kwargs)
    for key in ("chain", "callbacks", "errbacks", "chord"):
        if bound.arguments.get(key) is not None:
            bound.arguments[key] = plain(bound.arguments[key])
    return _as_task_v2(*bound.args, **bound.kwargs)


app.amqp.task_protocols[2] = as_task_v2_plain_embed


def tid(label):
    return "%s-%s" % (RUN, label)


def s(task, *args, label):
    return task.s(*args).set(task_id=tid(label))


class Normalizer:
    """Pinned ids to their labels, made-up ids to <gen N>."""

    UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

    def __init__(self):
        self.gen = {}

    def __call__(self, value):
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, str):
            if value.startswith(RUN + "-"):
                return value[len(RUN) + 1:]
            if self.UUID.match(value):
                if value not in self.gen:
                    self.gen[value] = "<gen %d>" % (len(self.gen) + 1)
                return self.gen[value]
        return value


def wait_ready(labels):
    """Every pinned task has a ready state (redis: read from the store)."""
    until = time.monotonic() + DEADLINE
    pending = set(labels)
    while pending and time.monotonic() < until:
        for label in sorted(pending):
            if app.AsyncResult(tid(label)).state in ("SUCCESS", "FAILURE", "REVOKED"):
                pending.discard(label)
        time.sleep(0.05)
    return sorted(pending)


def raw_children(task_id):
    raw = app.backend.get(app.backend.get_key_for_task(task_id))
    if raw is None:
        return "<no result>"
    return msgpack.unpackb(raw, raw=False).get("children", "<no children key>")


def describe(r):
    # A result that is not ready keeps its children as the raw tuples.
    if isinstance(r, (list, tuple)):
        return ["tuple", r]
    return [type(r).__name__, r.as_tuple()]


def report(first, labels, rpc=False):
    norm = Normalizer()
    detail = {"meta": {}, "children": {}}
    results = {label: app.AsyncResult(tid(label)) for label in labels}
    if rpc:
        # rpc: each reply is read once, by the result that get()s it.
        for label in labels:
            results[label].get(timeout=DEADLINE)
    else:
        late = wait_ready(labels)
        if late:
            out(False, {"not finished": late})
    for label in labels:
        res = results[label]
        if rpc:
            kids = res._cache.get("children") or []
            detail["meta"][label] = norm([c.as_tuple() for c in kids])
        else:
            detail["meta"][label] = norm(raw_children(tid(label)))
        detail["children"][label] = norm([describe(c) for c in res.children or []])
    if not rpc:
        root = app.AsyncResult(tid(first))
        root.get(timeout=DEADLINE)
        graph = root.graph
        # Normalized before sorting: made-up ids sort anywhere among the pinned.
        nodes = [[norm(n.id), sorted(norm([c.id for c in graph[n]]))] for n in graph]
        detail["graph"] = sorted(nodes)
        detail["collect"] = norm([[r.id, v] for r, v in root.collect(timeout=DEADLINE)])
    out(True, detail)


def mode_link1(q):
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=s(mul, 10, label="m").set(queue=q))
    report("a", ["a", "m"])


def mode_link2(q):
    add.apply_async((2, 3), task_id=tid("a"), queue=q,
                    link=[s(mul, 10, label="m").set(queue=q), s(add, 1, label="d").set(queue=q)])
    report("a", ["a", "m", "d"])


def mode_linkgroup(q):
    g = group(s(mul, 10, label="m").set(queue=q), s(mul, 100, label="h").set(queue=q))
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=g.set(task_id=tid("g")))
    report("a", ["a", "m", "h"])


def mode_linkmix(q):
    g = group(s(mul, 2, label="m2").set(queue=q), s(mul, 3, label="m3").set(queue=q))
    add.apply_async((2, 3), task_id=tid("a"), queue=q,
                    link=[g.set(task_id=tid("g")), s(add, 1, label="d").set(queue=q),
                          s(mul, 10, label="m").set(queue=q)])
    report("a", ["a", "m2", "m3", "d", "m"])


def mode_linkchain(q):
    c = chain(s(mul, 10, label="m").set(queue=q), s(add, 1, label="d").set(queue=q))
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=c)
    report("a", ["a", "m", "d"])


def mode_linkchord(q):
    header = group(s(mul, 10, label="m").set(queue=q),
                   s(mul, 100, label="h").set(queue=q)).set(task_id=tid("g"))
    c = chord(header, s(total, label="t").set(queue=q))
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=c)
    report("a", ["a", "m", "h", "t"])


def mode_linkgchain(q):
    c = chain(s(mul, 10, label="m").set(queue=q), s(add, 1, label="d").set(queue=q))
    g = group(c, s(mul, 100, label="h").set(queue=q)).set(task_id=tid("g"))
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=g)
    report("a", ["a", "m", "d", "h"])


def mode_chain(q):
    chain(s(add, 2, 3, label="a").set(queue=q), s(mul, 10, label="m").set(queue=q),
          s(add, 1, label="d").set(queue=q)).apply_async()
    report("a", ["a", "m", "d"])


def mode_chaingroup(q):
    g = group(s(mul, 10, label="m").set(queue=q), s(mul, 100, label="h").set(queue=q))
    chain(s(add, 2, 3, label="a").set(queue=q), g.set(task_id=tid("g"))).apply_async()
    report("a", ["a", "m", "h"])


def mode_chainchord(q):
    g = group(s(mul, 10, label="m").set(queue=q), s(mul, 100, label="h").set(queue=q))
    chain(s(add, 2, 3, label="a").set(queue=q), g.set(task_id=tid("g")),
          s(total, label="t").set(queue=q), s(add, 1, label="d").set(queue=q)).apply_async()
    report("a", ["a", "m", "h", "t", "d"])


def mode_retry(q):
    app.send_task("test.flaky", ("k", 1, 30), queue=q, task_id=tid("r"))
    until = time.monotonic() + DEADLINE
    while app.AsyncResult(tid("r")).state != "RETRY":
        if time.monotonic() > until:
            out(False, {"state": app.AsyncResult(tid("r")).state})
        time.sleep(0.05)
    norm = Normalizer()
    res = app.AsyncResult(tid("r"))
    out(True, {"meta": {"r": norm(raw_children(tid("r")))},
               "children": {"r": norm([describe(c) for c in res.children or []])}})


def mode_rpclink1(q):
    # The callback's result goes to the worker's own reply queue (the link
    # was never frozen here, so it names no reply_to): only a's reaches us.
    add.apply_async((2, 3), task_id=tid("a"), queue=q, link=s(mul, 10, label="m").set(queue=q))
    report("a", ["a"], rpc=True)


def mode_rpcchain(q):
    chain(s(add, 2, 3, label="a").set(queue=q), s(mul, 10, label="m").set(queue=q),
          s(add, 1, label="d").set(queue=q)).apply_async()
    report("a", ["a", "m", "d"], rpc=True)


if __name__ == "__main__":
    mode, queue, RUN = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        globals()["mode_" + mode](queue)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        out(False, {"error": repr(exc)})
