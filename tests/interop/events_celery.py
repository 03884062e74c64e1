#!/usr/bin/python3
"""Celery 5.2's own event monitor watching a warren worker
(tests/interop/test_events_celery.c).

    events_celery.py run QUEUE HOSTNAME N_ADD N_FAIL N_FLAKY

Starts a celery.events.EventReceiver feeding celery.events.state.State (what
`celery events`, Flower and any monitor run), sends N_ADD math.add(2, 3),
N_FAIL test.fail('boom') and N_FLAKY test.flaky(key, 1) (one retry, then
success) to QUEUE with celery_app (msgpack), waits until HOSTNAME reported
every task finished and sent a heartbeat with processed == accepted tasks
(Celery counts a retried task once per attempt), then prints
one JSON object: {"ok": bool, "detail": ...} with the counts and every check
that failed. Exits 0 whenever it could run (the C side asserts "ok").
Environment: WARREN_TEST_BROKER.
"""
import json
import os
import sys
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
from celery.events import EventReceiver  # noqa: E402
from celery.events.state import State  # noqa: E402

from celery_app import app  # noqa: E402

DEADLINE_S = 40


class Monitor:
    def __init__(self, hostname):
        self.hostname = hostname
        self.state = State()
        self.events = []
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def on_event(self, event):
        self.state.event(event)
        if event.get("hostname") == self.hostname:
            with self.lock:
                self.events.append(dict(event))

    def counts(self):
        with self.lock:
            return Counter(e["type"] for e in self.events)

    def last(self, type_):
        with self.lock:
            found = [e for e in self.events if e["type"] == type_]
        return found[-1] if found else None


def start_receiver(mon):
    conn = app.connection_for_read()
    recv = EventReceiver(conn, handlers={"*": mon.on_event}, app=app)
    on_ready = recv.on_consume_ready

    def ready(*args, **kwargs):
        kwargs["wakeup"] = False
        on_ready(*args, **kwargs)
        mon.ready.set()

    recv.on_consume_ready = ready
    thread = threading.Thread(target=recv.capture, kwargs={"limit": None, "timeout": None},
                              daemon=True)
    thread.start()
    return recv, thread, conn


def send_all(queue, n_add, n_fail, n_flaky):
    ids = {"add": [], "fail": [], "flaky": []}
    for _ in range(n_add):
        ids["add"].append(app.send_task("math.add", (2, 3), queue=queue).id)
    for _ in range(n_fail):
        ids["fail"].append(app.send_task("test.fail", ("boom",), queue=queue).id)
    for i in range(n_flaky):
        ids["flaky"].append(app.send_task("test.flaky", (f"events-{i}", 1), queue=queue).id)
    return ids


def wait_done(mon, total, accepted):
    until = time.time() + DEADLINE_S
    while time.time() < until:
        c = mon.counts()
        hb = mon.last("worker-heartbeat")
        finished = c["task-succeeded"] + c["task-failed"]
        if finished >= total and hb and hb.get("processed", 0) >= accepted:
            return True
        time.sleep(0.2)
    return False


def check_fields(mon, ids, bad):
    """The fields Celery's worker sends, as a monitor reads them."""
    with mon.lock:
        evs = list(mon.events)
    by = {}
    for e in evs:
        by.setdefault((e["type"], e.get("uuid")), e)
    add = ids["add"][0]
    fail = ids["fail"][0]
    rec = by.get(("task-received", add), {})
    for key, want in (("name", "math.add"), ("args", "(2, 3)"), ("kwargs", "{}"),
                      ("retries", 0), ("root_id", add), ("parent_id", None), ("eta", None),
                      ("expires", None)):
        if rec.get(key, "<missing>") != want:
            bad.append(["task-received", key, rec.get(key, "<missing>"), want])
    suc = by.get(("task-succeeded", add), {})
    if suc.get("result") != "5" or not isinstance(suc.get("runtime"), float) \
            or suc["runtime"] < 0:
        bad.append(["task-succeeded", suc])
    fl = by.get(("task-failed", fail), {})
    if fl.get("exception") != "ValueError('boom')" or not isinstance(fl.get("traceback"), str):
        bad.append(["task-failed", fl])
    ret = by.get(("task-retried", ids["flaky"][0]), {}) if ids["flaky"] else {}
    if ids["flaky"] and ("exception" not in ret or "traceback" not in ret):
        bad.append(["task-retried", ret])
    for e in evs:
        for key in ("hostname", "utcoffset", "pid", "clock", "timestamp", "type"):
            if key not in e:
                bad.append(["missing", key, e])
                return
    hb = mon.last("worker-heartbeat") or {}
    for key in ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"):
        if key not in hb:
            bad.append(["worker-heartbeat", "missing", key])
    if hb.get("freq") != 2.0 or hb.get("sw_ident") != "warren" or len(hb.get("loadavg", [])) != 3:
        bad.append(["worker-heartbeat", hb])


def check_state(mon, ids, accepted, bad):
    """What Celery's State made of it: the worker and every task."""
    worker = mon.state.workers.get(mon.hostname)
    wdetail = None
    if worker is None:
        bad.append(["State has no worker", list(mon.state.workers)])
    else:
        wdetail = {"alive": worker.alive, "processed": worker.processed,
                   "active": worker.active, "status": worker.status_string,
                   "pool": getattr(worker, "warren_pool", None)}
        if not worker.alive or worker.processed != accepted or worker.status_string != "ONLINE":
            bad.append(["State worker", wdetail])
    states = Counter()
    for kind, want in (("add", "SUCCESS"), ("fail", "FAILURE"), ("flaky", "SUCCESS")):
        for tid in ids[kind]:
            task = mon.state.tasks.get(tid)
            got = task.state if task else None
            states[f"{kind}:{got}"] += 1
            if got != want:
                bad.append(["State task", kind, tid, got, want])
                break
            if task.worker is None or task.worker.hostname != mon.hostname:
                bad.append(["State task worker", tid])
                break
    flaky = mon.state.tasks.get(ids["flaky"][0]) if ids["flaky"] else None
    if flaky is not None and (flaky.retries != 1 or flaky.retried is None):
        bad.append(["State flaky task", flaky.retries, flaky.retried])
    return wdetail, dict(states)


def main():
    if len(sys.argv) != 7 or sys.argv[1] != "run":
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    queue, hostname = sys.argv[2], sys.argv[3]
    n_add, n_fail, n_flaky = (int(x) for x in sys.argv[4:7])
    total = n_add + n_fail + n_flaky
    mon = Monitor(hostname)
    recv, thread, conn = start_receiver(mon)
    if not mon.ready.wait(15):
        print(json.dumps({"ok": False, "detail": "receiver never became ready"}))
        return
    ids = send_all(queue, n_add, n_fail, n_flaky)
    # Celery's `processed` counts accepted tasks: a retried one twice.
    accepted = total + n_flaky
    done = wait_done(mon, total, accepted)
    recv.should_stop = True
    thread.join(5)
    conn.release()
    bad = [] if done else [["timed out", dict(mon.counts())]]
    want = {"task-received": total + n_flaky, "task-started": total + n_flaky,
            "task-succeeded": n_add + n_flaky, "task-failed": n_fail,
            "task-retried": n_flaky}
    counts = mon.counts()
    for key, n in want.items():
        if counts[key] != n:
            bad.append(["count", key, counts[key], n])
    check_fields(mon, ids, bad)
    worker, states = check_state(mon, ids, accepted, bad)
    print(json.dumps({"ok": not bad, "detail": {"bad": bad, "counts": dict(counts),
                                                "worker": worker, "states": states}},
                     default=repr))


if __name__ == "__main__":
    main()
