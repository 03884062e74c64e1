#!/usr/bin/python3
"""Checks task messages warren encoded, the way a Celery 5.2 worker reads them.

Used by tests/interop/test_kombu_decode.c: for every <name>.body in the
directory given, with <name>.headers (a packed msgpack map) and <name>.json
(AMQP properties and what the C side expects), it
  - loads the body with kombu's own loader for application/x-msgpack,
  - sends the headers through py-amqp's field-table writer and reader, as a
    broker hop does, and checks the types as_task_v2 would have sent,
  - builds a celery.worker.request.Request from a kombu Message, as the
    worker's strategy does, and reads args, kwargs, id and time limits back,
  - rebuilds every embedded signature with Signature.from_dict.
Prints "OK <name>" or "FAIL <name>: <reason>" per message.
"""
import io
import json
import os
import sys

import msgpack
from amqp.serialization import _write_table, loads as amqp_loads
from kombu.serialization import loads as kombu_loads
from kombu.transport.base import Message
from celery import Celery
from celery.canvas import Signature
from celery.worker.request import Request

HEADER_TYPES = {
    'lang': str, 'task': str, 'id': str, 'shadow': (str, type(None)), 'eta': (str, type(None)),
    'expires': (str, type(None)), 'group': (str, type(None)), 'group_index': (int, type(None)),
    'retries': int, 'timelimit': list, 'root_id': str, 'parent_id': (str, type(None)),
    'argsrepr': str, 'kwargsrepr': str, 'origin': str, 'ignore_result': bool,
}

app = Celery('interop', set_as_current=True)
app.conf.accept_content = ['msgpack']


# Request looks the task up in the registry, as the worker would.
@app.task(name='tasks.add')
def add(x, y):
    return x + y


@app.task(name='tasks.echo')
def echo(*args, **kwargs):
    return args


def amqp_hop(headers):
    """Writes headers as an AMQP table and reads them back, as py-amqp does."""
    out = io.BytesIO()
    _write_table(headers, out.write, [])
    (table,), _ = amqp_loads('F', out.getvalue(), 0)
    return table


def check_signature(d, where):
    sig = Signature.from_dict(d, app=app)
    assert set(d) == {'task', 'args', 'kwargs', 'options', 'subtask_type', 'immutable'}, \
        '%s: keys %s' % (where, sorted(d))
    if d['subtask_type'] in ('group', 'chain'):
        assert len(sig.tasks) == len(d['kwargs']['tasks']), where
        for i, t in enumerate(d['kwargs']['tasks']):
            check_signature(t, '%s.tasks[%d]' % (where, i))
    return sig


def check(directory, name):
    with open(os.path.join(directory, name + '.json')) as f:
        meta = json.load(f)
    with open(os.path.join(directory, name + '.body'), 'rb') as f:
        raw_body = f.read()
    with open(os.path.join(directory, name + '.headers'), 'rb') as f:
        headers = msgpack.unpackb(f.read(), raw=False)
    props = meta['properties']
    assert props['content_type'] == 'application/x-msgpack', props
    body = kombu_loads(raw_body, props['content_type'], props['content_encoding'],
                       accept=['application/x-msgpack'])
    args, kwargs, embed = body
    assert isinstance(args, list) and isinstance(kwargs, dict), body
    assert set(embed) == {'callbacks', 'errbacks', 'chain', 'chord'}, embed
    headers = amqp_hop(headers)
    assert set(headers) == set(HEADER_TYPES), sorted(headers)
    for key, want in HEADER_TYPES.items():
        assert isinstance(headers[key], want), '%s is %r' % (key, headers[key])
    message = Message(body=raw_body, headers=headers, content_type=props['content_type'],
                      content_encoding=props['content_encoding'], channel=None,
                      accept=['application/x-msgpack'],
                      properties={'correlation_id': props['correlation_id'],
                                  'reply_to': props['reply_to'],
                                  'delivery_mode': props['delivery_mode'],
                                  'priority': props['priority']},
                      delivery_info={'exchange': '', 'routing_key': 'celery'})
    req = Request(message, app=app)
    expect = meta['expect']
    assert req.id == expect['id'] and req.task_name == expect['task'], (req.id, req.task_name)
    assert list(req.args) == expect['args'], req.args
    assert req.kwargs == expect['kwargs'], req.kwargs
    assert list(req.time_limits) == expect['timelimit'], req.time_limits
    assert req.root_id == expect['id'], req.root_id
    for key in ('callbacks', 'errbacks', 'chain'):
        for i, d in enumerate(embed[key] or []):
            check_signature(d, '%s[%d]' % (key, i))
    if embed['chord'] is not None:
        check_signature(embed['chord'], 'chord')
    assert len(embed['chain'] or []) == expect['n_chain'], embed['chain']


def main(directory):
    names = sorted(n[:-5] for n in os.listdir(directory) if n.endswith('.body'))
    for name in names:
        try:
            check(directory, name)
            print('OK %s' % name)
        except Exception as exc:  # report and go on: the C side counts
            print('FAIL %s: %s: %s' % (name, type(exc).__name__, exc))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
