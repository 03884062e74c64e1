#!/usr/bin/python3
"""Celery 5.2's own rpc:// result backend as a client, driven from the command
line, for tests/interop/test_backend_rpc_celery.c: Python sends a task and
waits for the result that warren's rpc backend publishes to its reply queue.

    backend_rpc_celery.py call TASK QUEUE TIMEOUT ARGS_JSON KWARGS_JSON
    backend_rpc_celery.py declare-reply-queue NAME

`call` sends TASK to QUEUE with app.send_task (so reply_to is this client's oid and
correlation_id the task id, as Celery does), then AsyncResult.get(TIMEOUT)
and prints {"task_id", "status", "result"} or, when get() raised,
{"task_id", "status", "exception": {"class", "module", "str", "args"}}.
`declare-reply-queue` declares Celery's own reply queue binding
(RPCBackend.binding) under NAME: it fails (PRECONDITION_FAILED, exit 1) unless
a queue NAME that exists already was declared with the same arguments.
The broker is WARREN_TEST_BROKER; the app is tests/interop/celery_app.py
(msgpack) with CELERY_RESULT_BACKEND=rpc://. Exit status 2 means this
machine cannot run the check (no Celery).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ['CELERY_RESULT_BACKEND'] = 'rpc://'
try:
    from celery_app import app
except ImportError as e:
    print(f'backend_rpc_celery.py: cannot import celery: {e}', file=sys.stderr)
    sys.exit(2)


def call(task, queue, timeout, args, kwargs):
    result = app.send_task(task, args=json.loads(args), kwargs=json.loads(kwargs),
                           queue=queue)
    out = {'task_id': result.id}
    try:
        value = result.get(timeout=float(timeout))
        out.update(status=result.state, result=value)
    except Exception as exc:  # what a client sees when the task failed
        out.update(status=result.state, exception={
            'class': type(exc).__qualname__,
            'module': type(exc).__module__,
            'str': str(exc),
            'args': list(exc.args),
        })
    json.dump(out, sys.stdout, default=repr)


def declare_reply_queue(name):
    backend = app.backend
    backend.oid = name  # the cached oid: Celery's binding then names our queue
    with app.connection_for_write() as conn:
        backend.binding(conn.default_channel).declare()
    print(json.dumps({'declared': name}))


def main():
    if len(sys.argv) == 7 and sys.argv[1] == 'call':
        call(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == 'declare-reply-queue':
        declare_reply_queue(sys.argv[2])
    else:
        sys.exit(f'usage: {sys.argv[0]} call TASK QUEUE TIMEOUT ARGS_JSON KWARGS_JSON\n'
                 f'       {sys.argv[0]} declare-reply-queue NAME')


if __name__ == '__main__':
    main()
