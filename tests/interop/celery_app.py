"""A real Celery 5.2 app speaking warren's dialect: msgpack tasks and results.

Used by the interop tests, the demo and the benchmark as the reference peer:
`/usr/bin/python3 -m celery -A celery_app worker` runs the same task names as
warren's example plugins (math.*, text.*, test.*), so either side can serve.

Environment: WARREN_TEST_BROKER (amqp URL), CELERY_RESULT_BACKEND (rpc:// by
default, or a redis:// URL).
"""
import os
import time

from celery import Celery

app = Celery(
    "warren_interop",
    broker=os.environ.get("WARREN_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "rpc://"),
)
app.conf.update(
    task_serializer="msgpack",
    result_serializer="msgpack",
    accept_content=["msgpack"],
    result_accept_content=["msgpack"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="math.add")
def add(a, b):
    return a + b


@app.task(name="math.mul")
def mul(a, b):
    return a * b


@app.task(name="math.sum")
def total(values):
    return sum(values)


@app.task(name="text.upper")
def upper(s):
    return s.upper()


@app.task(name="text.wordcount")
def wordcount(s):
    return len(s.split())


@app.task(name="test.echo")
def echo(*args, **kwargs):
    return [list(args), kwargs]


@app.task(name="test.noop")
def noop(*args):
    return None


@app.task(name="test.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="test.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="test.flaky", bind=True)
def flaky(self, key, n, countdown=0):
    """warren's test.flaky: retries while fewer than n retries happened."""
    if self.request.retries < n:
        raise self.retry(countdown=countdown)
    return self.request.retries + 1
