#!/usr/bin/python3
"""Golden remote-control (pidbox) messages from real Celery 5.2 / kombu 5.2,
for warren's decoder tests (tests/unit/test_schemas_control.c).

Run with the Debian interpreter (TZ=UTC /usr/bin/python3 tests/interop/gen_control_fixtures.py).
No broker is needed: Celery's own client path (app.control.inspect().ping(),
app.control.revoke(...)) and the worker's Panel handlers plus kombu's
Mailbox._publish_reply run with kombu.messaging.Producer._publish patched to
capture what would go on the wire. The ticket, the client oid, the clock and
the time are pinned so the output is reproducible.

Writes tests/fixtures/control/<name>.json, each with:
  kind           "request" or "reply"
  exchange, routing_key, properties (delivery_mode, ...), content_type,
  content_encoding
  headers_msgpack  the application headers as one msgpack map (hex), the form
                   schemas/ takes them in
  headers        the same headers as JSON
  body           the body bytes exactly as kombu serialized them (hex)
  decoded        the body as Python sees it (JSON)

and tests/fixtures/control/events.json: every event type as Celery's
EventDispatcher publishes it (singly, and a buffered task.multi list), with
the clock, pid and timestamp pinned (TZ=UTC), for tests/unit/test_schemas_event.c.

Wire format note: these pin kombu 5.2.4's Mailbox and Celery 5.2.6's
worker/control.py. Regenerate (and review the diff) when the reference
versions change; schemas/control.c's SCHEMA_CONTROL_WIRE_VERSION says what to
bump on our side.
"""
import json
import os
import sys

import msgpack
import kombu.messaging
import kombu.pidbox
from celery import Celery
from celery.contrib.testing.mocks import TaskMessage
from celery.worker import control as panel
from celery.worker import state as worker_state
from celery.worker.request import Request
from kombu import Exchange, Queue

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'control')
TICKET = 'f0e1d2c3-b4a5-4697-8899-aabbccddeeff'
OID = '6c2b1a70-3d4e-3f51-9a6b-7c8d9e0f1a2b'
NOW = 1764238748.5
NODE = 'w1@host'
TASK_ID = 'd5a8e3c2-1b4f-4a9e-9c3e-00000000000a'

captured = []


def fake_publish(self, body, priority, content_type, content_encoding,
                 headers, properties, routing_key, mandatory, immediate,
                 exchange, declare, timeout=None):
    captured.append({
        'body': body if isinstance(body, bytes) else body.encode('utf-8'),
        'priority': priority,
        'content_type': content_type,
        'content_encoding': content_encoding,
        'headers': headers,
        'properties': properties,
        'routing_key': routing_key,
        'exchange': exchange.name if isinstance(exchange, Exchange) else exchange,
    })


kombu.messaging.Producer._publish = fake_publish
kombu.pidbox.uuid = lambda: TICKET
kombu.pidbox.time = lambda: NOW
kombu.pidbox.Mailbox.oid = property(lambda self: OID)
kombu.pidbox.Mailbox._collect = lambda self, *a, **kw: []


def make_app(serializer):
    return Celery('fixtures', broker='memory://', task_serializer=serializer,
                  accept_content=['msgpack', 'json'])


def decode(cap):
    if cap['content_type'] == 'application/json':
        return json.loads(cap['body'].decode('utf-8'))
    return msgpack.unpackb(cap['body'], raw=False)


def record(name, kind, cap):
    doc = {
        'kind': kind,
        'exchange': cap['exchange'],
        'routing_key': cap['routing_key'],
        'content_type': cap['content_type'],
        'content_encoding': cap['content_encoding'],
        'properties': {k: v for k, v in cap['properties'].items()
                       if k in ('delivery_mode', 'priority')},
        'headers': cap['headers'],
        'headers_msgpack': msgpack.packb(cap['headers'], use_bin_type=True).hex(),
        'body': cap['body'].hex(),
        'decoded': decode(cap),
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + '.json'), 'w') as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write('\n')


def capture_one(fun):
    captured.clear()
    fun()
    assert len(captured) == 1, captured
    return captured[0]


def requests():
    app = make_app('msgpack')
    record('ping_request', 'request',
           capture_one(lambda: app.control.inspect(timeout=1.0).ping()))
    record('ping_request_dest', 'request',
           capture_one(lambda: app.control.inspect(
               destination=[NODE, 'w2@host'], timeout=2.5).ping()))
    record('revoke_request', 'request',
           capture_one(lambda: app.control.revoke(TASK_ID)))
    record('terminate_request', 'request',
           capture_one(lambda: app.control.terminate(TASK_ID, signal='SIGKILL', reply=True)))
    record('registered_request', 'request',
           capture_one(lambda: app.control.inspect().registered()))
    app_json = make_app('json')
    record('ping_request_json', 'request',
           capture_one(lambda: app_json.control.inspect(timeout=1.0).ping()))
    record('rate_limit_request_json', 'request',
           capture_one(lambda: app_json.control.rate_limit('tasks.add', '10/m')))


class FakeConsumer:
    def __init__(self, queues):
        self.task_consumer = type('TC', (), {'queues': queues})()


class FakeState:
    def __init__(self, app, consumer=None):
        self.app = app
        self.consumer = consumer
        self.hostname = NODE


def reply(app, name, result):
    """Publishes result as the worker's Node.reply does and records it."""
    mailbox = app.control.mailbox(app.connection_for_write())
    node = mailbox.Node(NODE, channel=object())
    record(name, 'reply', capture_one(lambda: node.reply(
        {NODE: result}, exchange='reply.celery.pidbox', routing_key=OID, ticket=TICKET)))


def replies():
    app = make_app('msgpack')

    @app.task(name='tasks.add')
    def add(x, y):
        return x + y

    @app.task(name='tasks.mul')
    def mul(x, y):
        return x * y

    state = FakeState(app, FakeConsumer([
        Queue('celery', Exchange('celery', 'direct'), routing_key='celery'),
        Queue('hipri', Exchange('hipri', 'direct'), routing_key='hipri',
              queue_arguments={'x-max-priority': 10}),
    ]))
    reply(app, 'ping_reply', panel.ping(state))
    reply(app, 'revoke_reply', panel.revoke(state, TASK_ID))
    reply(app, 'registered_reply', panel.registered(state))
    reply(app, 'active_queues_reply', panel.active_queues(state))
    reply(app, 'rate_limit_error_reply', {'error': 'unknown task'})

    msg = TaskMessage('tasks.add', id=TASK_ID, args=(2, 3), kwargs={},
                      argsrepr='(2, 3)', kwargsrepr='{}')
    msg.delivery_info = {'exchange': '', 'routing_key': 'celery',
                         'redelivered': False}
    msg.properties = {'priority': 0}
    req = Request(msg, app=app, hostname=NODE)
    req.time_start = NOW
    req.worker_pid = 4242
    req.acknowledged = True
    reply(app, 'active_reply', [req.info()])
    worker_state.revoked.add(TASK_ID)
    reply(app, 'revoked_reply', panel.revoked(state))

    app_json = make_app('json')
    reply(app_json, 'ping_reply_json', panel.ping(state))


EV_HOST = 'w1@host'
EV_PID = 4242
EV_TS = 1764238748.123456
RAW_LOAD = (0.5693359375, 1.0, 12.3349609375)
TRACEBACK = ('Traceback (most recent call last):\n'
             '  File "tasks.py", line 7, in add\n'
             '    raise ValueError(\'boom\')\n'
             'ValueError: boom\n')


def events():
    """Events exactly as Celery's EventDispatcher publishes them, with the
    clock, pid, utcoffset and timestamp pinned. Worker events go singly;
    task events with buffer_group=['task'] become one task.multi list."""
    from functools import partial
    from math import ceil

    from celery.events.event import Event
    from celery.worker.state import SOFTWARE_INFO

    app = make_app('msgpack')
    conn = app.connection_for_write()
    ev = partial(Event, __now__=lambda: EV_TS)
    cases = {}

    # utcoffset is the machine's (the dispatcher calls celery.utils.time's
    # utcoffset() itself); run the generator with TZ=UTC.
    def single(case, disp, type_, **fields):
        captured.clear()
        disp.send(type_, Event=ev, **fields)
        assert len(captured) == 1, captured
        cases[case] = capture_doc(captured[0])

    disp = app.events.Dispatcher(conn, hostname=EV_HOST, enabled=True)
    disp.pid = EV_PID
    app.clock.value = 0
    load = tuple(ceil(v * 1e2) / 1e2 for v in RAW_LOAD)
    wfields = dict(freq=2.0, active=1, processed=17, loadavg=load,
                   sw_ident='warren', sw_ver='0.1.0', sw_sys='Linux')
    single('worker-online', disp, 'worker-online', **wfields)
    single('worker-heartbeat', disp, 'worker-heartbeat', **wfields)
    single('worker-offline', disp, 'worker-offline', **wfields)
    tid = TASK_ID
    single('task-received', disp, 'task-received',
           uuid=tid, name='tasks.add', args='(2, 3)', kwargs="{'z': 'caf\u00e9 \u2603 \U0001f600'}",
           root_id=tid, parent_id=None, retries=0, eta=None,
           expires='2026-11-27T10:19:08.323802+00:00')
    single('task-started', disp, 'task-started', uuid=tid)
    single('task-succeeded', disp, 'task-succeeded', uuid=tid, result='5',
           runtime=0.012345)
    single('task-failed', disp, 'task-failed', uuid=tid,
           exception="ValueError('boom')", traceback=TRACEBACK)
    single('task-retried', disp, 'task-retried', uuid=tid,
           exception="Retry('Retry in 10s')", traceback=TRACEBACK)
    single('task-rejected', disp, 'task-rejected', uuid=tid, requeue=False)
    single('task-revoked', disp, 'task-revoked', uuid=tid, terminated=True,
           signum=15, expired=False)
    single('task-sent', disp, 'task-sent', uuid=tid, root_id=tid,
           parent_id=None, name='tasks.add', args='(2, 3)', kwargs='{}', retries=1,
           eta='2026-11-27T10:19:18.323802+00:00', expires=None, queue='celery',
           exchange='', routing_key='celery')

    buffered = app.events.Dispatcher(conn, hostname=EV_HOST, enabled=True,
                                     buffer_group=['task'])
    buffered.pid = EV_PID
    app.clock.value = 100
    captured.clear()
    buffered.send('task-started', Event=ev, uuid=tid)
    buffered.send('task-succeeded', Event=ev, uuid=tid,
                  result="{'a': [1, 2.5, None, True]}", runtime=1e-05)
    assert not captured
    buffered.flush()
    assert len(captured) == 1, captured
    cases['task.multi'] = capture_doc(captured[0])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'events.json'), 'w') as fh:
        json.dump({'raw_loadavg': RAW_LOAD, 'cases': cases}, fh, indent=2, sort_keys=True)
        fh.write('\n')


def capture_doc(cap):
    return {
        'exchange': cap['exchange'],
        'routing_key': cap['routing_key'],
        'content_type': cap['content_type'],
        'content_encoding': cap['content_encoding'],
        'delivery_mode': cap['properties'].get('delivery_mode'),
        'headers': cap['headers'],
        'body': cap['body'].decode('utf-8'),
    }


def main():
    os.environ['TZ'] = 'UTC'
    import time
    time.tzset()
    requests()
    replies()
    events()
    print(f'wrote {OUT}', file=sys.stderr)


if __name__ == '__main__':
    main()
