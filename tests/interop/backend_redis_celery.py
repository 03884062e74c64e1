#!/usr/bin/python3
"""Celery 5.2's own Redis result backend, driven from the command line, for
tests/interop/test_backend_redis_celery.c: Python reads what warren's redis
backend stored, and stores what warren must read.

    backend_redis_celery.py get ID TIMEOUT      AsyncResult(ID).get(); prints JSON
    backend_redis_celery.py store-success ID    backend.store_result(ID, NESTED, 'SUCCESS')
    backend_redis_celery.py store-failure ID    backend.mark_as_failure(ID, ValueError(...))
    backend_redis_celery.py store-late ID       store-success once someone waits on ID

The backend URL is WARREN_TEST_REDIS; the app is tests/interop/celery_app.py
(msgpack results). `get` prints {"status", "result"} or, when get() raised,
{"status", "exception": {"class", "module", "str", "args"}}. Exit status 2
means this machine cannot run the check (no Celery).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ['CELERY_RESULT_BACKEND'] = os.environ.get('WARREN_TEST_REDIS', '')
try:
    from celery.result import AsyncResult
    from celery_app import app
except ImportError as e:
    print(f'backend_redis_celery.py: cannot import celery: {e}', file=sys.stderr)
    sys.exit(2)

# What store-success stores; the C test expects these exact msgpack bytes.
NESTED = {'sum': [1, 2.5, 'é']}
FAILURE_MESSAGE = 'python says no'
TRACEBACK = 'Traceback (most recent call last):\nValueError: python says no\n'


def get(task_id, timeout):
    result = AsyncResult(task_id, app=app)
    try:
        value = result.get(timeout=float(timeout))
        out = {'status': result.state, 'result': value}
    except Exception as exc:  # what a client sees when the task failed
        out = {'status': result.state, 'exception': {
            'class': type(exc).__qualname__,
            'module': type(exc).__module__,
            'str': str(exc),
            'args': list(exc.args),
        }}
    json.dump(out, sys.stdout, default=repr)


def store_late(task_id):
    key = app.backend.get_key_for_task(task_id)
    deadline = time.monotonic() + 10
    while dict(app.backend.client.pubsub_numsub(key)).get(key, 0) < 1:
        if time.monotonic() > deadline:
            sys.exit(f'nobody subscribed to {key!r}')
        time.sleep(0.005)
    app.backend.store_result(task_id, NESTED, 'SUCCESS')


def main():
    cmd, task_id = sys.argv[1], sys.argv[2]
    if cmd == 'get':
        get(task_id, sys.argv[3])
    elif cmd == 'store-success':
        app.backend.store_result(task_id, NESTED, 'SUCCESS')
    elif cmd == 'store-failure':
        app.backend.mark_as_failure(task_id, ValueError(FAILURE_MESSAGE),
                                    traceback=TRACEBACK)
    elif cmd == 'store-late':
        store_late(task_id)
    else:
        sys.exit(f'unknown command {cmd!r}')


if __name__ == '__main__':
    main()
