"""When a task starts, as Celery's client and monitor see it
(tests/integration/test_worker_started.c).

    started_celery.py QUEUE HOSTNAME POOL N SECONDS

The worker HOSTNAME serves QUEUE with concurrency 1, prefetch above 1, -E and
track_started for test.sleep. This sends N test.sleep(SECONDS) at once, so
all N are delivered while one runs, and watches them with Celery's own
client: the results every 20 ms (CELERY_RESULT_BACKEND, Redis), `inspect
active` and `inspect reserved` once while the first runs, and the task
events (EventReceiver). Checks, each failure listed in "bad":
  - never more than one result is STARTED at a time, and each task's was
    seen; its pid is the worker's (threads) or another process's (prefork);
  - while the first runs, it alone is active, with time_start and the
    STARTED pid as worker_pid, and the others are reserved;
  - N task-started events, each after the previous task's task-succeeded
    (the event timestamps) and at least SECONDS after the previous start.
Prints {"ok": bool, "detail": ...}; exits 0 when it could run at all.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import msgpack  # noqa: E402
from celery.events import EventReceiver  # noqa: E402

from celery_app import app  # noqa: E402

DEADLINE_S = 60


class Events:
    def __init__(self, hostname):
        self.hostname = hostname
        self.events = []
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def on_event(self, event):
        if event.get("hostname") == self.hostname:
            with self.lock:
                self.events.append(dict(event))

    def of(self, type_, uuid=None):
        with self.lock:
            return [e for e in self.events
                    if e["type"] == type_ and (uuid is None or e.get("uuid") == uuid)]


def start_receiver(evs):
    conn = app.connection_for_read()
    recv = EventReceiver(conn, handlers={"*": evs.on_event}, app=app)
    on_ready = recv.on_consume_ready

    def ready(*args, **kwargs):
        kwargs["wakeup"] = False
        on_ready(*args, **kwargs)
        evs.ready.set()

    recv.on_consume_ready = ready
    thread = threading.Thread(target=recv.capture, kwargs={"limit": None, "timeout": None},
                              daemon=True)
    thread.start()
    return recv, thread, conn


def metas(ids):
    """Every task's stored meta in one MGET: one moment for all of them (one
    GET after another could see a task still STARTED and then the next one
    already STARTED, after the first had finished in between)."""
    keys = [app.backend.get_key_for_task(i) for i in ids]
    return [msgpack.unpackb(raw, raw=False) if raw else {"status": "PENDING", "result": None}
            for raw in app.backend.client.mget(keys)]


def inspect(hostname):
    i = app.control.inspect(destination=[hostname], timeout=2)
    active = (i.active() or {}).get(hostname, [])
    reserved = (i.reserved() or {}).get(hostname, [])
    return active, reserved


def main():
    queue, hostname, pool, n, seconds = sys.argv[1:6]
    n, seconds = int(n), float(seconds)
    evs = Events(hostname)
    recv, thread, conn = start_receiver(evs)
    if not evs.ready.wait(15):
        print(json.dumps({"ok": False, "detail": "receiver never became ready"}))
        return
    ids = [app.send_task("test.sleep", (seconds,), queue=queue).id for _ in range(n)]
    bad = []
    most_started, started_info, seen = 0, {}, None
    until = time.monotonic() + DEADLINE_S
    while time.monotonic() < until:
        now = metas(ids)
        states = [m["status"] for m in now]
        running = [i for i, s in zip(ids, states) if s == "STARTED"]
        most_started = max(most_started, len(running))
        for i, m in zip(ids, now):
            if m["status"] == "STARTED":
                started_info.setdefault(i, m["result"])
        if seen is None and running == [ids[0]]:
            active, reserved = inspect(hostname)
            seen = {"active": active, "reserved": reserved,
                    "first_still_started": app.AsyncResult(ids[0]).state == "STARTED"}
        if all(s == "SUCCESS" for s in states):
            break
        time.sleep(0.02)
    else:
        bad.append(["not all SUCCESS in time", states])
    while time.monotonic() < until and len(evs.of("task-succeeded")) < n:
        time.sleep(0.05)
    recv.should_stop = True
    thread.join(5)
    conn.release()

    if most_started != 1:
        bad.append(["results STARTED at once", most_started])
    worker_pid = next((e.get("pid") for e in evs.of("task-received")), None)
    for i in ids:
        info = started_info.get(i)
        if not isinstance(info, dict) or info.get("hostname") != hostname:
            bad.append(["STARTED never seen, or not {pid, hostname}", i, info])
        elif (info.get("pid") == worker_pid) != (pool == "threads"):
            bad.append(["STARTED pid", pool, info.get("pid"), "worker", worker_pid])
    if seen is None:
        bad.append(["never saw the first task running alone"])
    elif seen["first_still_started"]:
        active, reserved = seen["active"], seen["reserved"]
        first_pid = (started_info.get(ids[0]) or {}).get("pid")
        if [a.get("id") for a in active] != ids[:1]:
            bad.append(["inspect active", active])
        elif not active[0].get("time_start") or active[0].get("worker_pid") != first_pid:
            bad.append(["inspect active info", active[0], "STARTED pid", first_pid])
        if sorted(r.get("id") for r in reserved) != sorted(ids[1:]):
            bad.append(["inspect reserved", [r.get("id") for r in reserved], ids[1:]])
        elif any(r.get("time_start") is not None for r in reserved):
            bad.append(["reserved with a time_start", reserved])
    starts = []
    for k, i in enumerate(ids):
        st, ok = evs.of("task-started", i), evs.of("task-succeeded", i)
        if len(st) != 1 or len(ok) != 1:
            bad.append(["events of", i, len(st), len(ok)])
            continue
        starts.append(st[0]["timestamp"])
        if k > 0:
            prev = evs.of("task-succeeded", ids[k - 1])
            if prev and st[0]["timestamp"] < prev[0]["timestamp"]:
                bad.append(["task-started before the previous task-succeeded", k,
                            st[0]["timestamp"], prev[0]["timestamp"]])
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    if any(g < seconds * 0.9 for g in gaps):
        bad.append(["task-started closer than the task's run", gaps])
    detail = {"bad": bad, "most_started": most_started, "gaps": gaps,
              "inspect": seen and {"active": [a.get("id") for a in seen["active"]],
                                   "reserved": [r.get("id") for r in seen["reserved"]]}}
    print(json.dumps({"ok": not bad, "detail": detail}, default=repr))


if __name__ == "__main__":
    main()
