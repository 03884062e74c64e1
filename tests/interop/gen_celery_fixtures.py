#!/usr/bin/python3
"""Golden task messages from real Celery 5.2 (msgpack), for warren's decoder tests.

Run with the Debian interpreter (/usr/bin/python3): it drives Celery's own
send path (app.send_task / apply_async -> as_task_v2 -> kombu Producer.publish)
with kombu.messaging.Producer._publish patched to capture what would go on the
wire, so no broker is needed. Task ids, the clock, the node name and the reply
queue are pinned so the output is reproducible.

Writes tests/fixtures/celery/<name>.json, each with:
  properties       AMQP basic properties as Celery sets them
  headers_msgpack  the application headers as one msgpack map (hex), the form
                   schemas/ takes them in
  headers_amqp     the same headers as py-amqp encodes an AMQP field table
                   (4-byte length + entries, hex), for broker-adapter tests
  body             the message body (hex), exactly as kombu packed it
  expected         the decoded values: headers as JSON, args/kwargs/embed in
                   tagged JSON (see tag() below)
  expect_error     present instead of a clean decode when Celery's own bytes
                   are known to be corrupt (celery#4710)

Wire format note: these fixtures pin Celery protocol v2 as Celery 5.2.6 /
kombu 5.2.4 / msgpack 1.0.3 send it. Regenerate (and review the diff) when the
reference Celery version changes.
"""
import datetime
import io
import itertools
import json
import os
import sys

import msgpack
import kombu.messaging
from amqp.basic_message import Message as BasicMessage
from amqp.serialization import _write_table
from celery import Celery, chain, chord, group
import celery.app.amqp
import celery.app.base
import celery.app.task
import celery.canvas

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'celery')
REPLY_TO = '75a4b1d9-4266-371d-971d-6d42030b84dc'
NOW = datetime.datetime(2026, 11, 27, 10, 18, 40, 1900, tzinfo=datetime.timezone.utc)

_counter = itertools.count(1)


def fixed_uuid():
    return 'd5a8e3c2-1b4f-4a9e-9c3e-%012d' % next(_counter)


for mod in (celery.canvas, celery.app.base, celery.app.task):
    mod.uuid = fixed_uuid
celery.app.amqp.anon_nodename = lambda: 'gen4242@fixture'
celery.app.base.Celery.thread_oid = property(lambda self: REPLY_TO)
celery.app.base.Celery.now = lambda self: NOW

captured = []


def capture_publish(self, body, priority, content_type, content_encoding,
                    headers, properties, routing_key, mandatory, immediate,
                    exchange, declare, timeout=None):
    captured.append(dict(body=body, priority=priority, content_type=content_type,
                         content_encoding=content_encoding, headers=dict(headers),
                         properties=dict(properties)))


kombu.messaging.Producer._publish = capture_publish

app = Celery('tasks', broker='amqp://guest@127.0.0.1:1//', backend='cache+memory://')
app.conf.task_serializer = 'msgpack'
app.conf.accept_content = ['msgpack']


@app.task(name='tasks.add')
def add(x, y):
    return x + y


@app.task(name='tasks.mul')
def mul(x, y):
    return x * y


@app.task(name='tasks.tsum')
def tsum(xs):
    return sum(xs)


@app.task(name='tasks.on_err')
def on_err(*args):
    return None


@app.task(name='tasks.echo', bind=True)
def echo(self, *args, **kwargs):
    return args


def tag(v):
    """msgpack value -> JSON: bin as {"$bytes": hex}, ints beyond int64 as
    {"$int": "decimal"}, maps with non-str keys as {"$map": [[k, v], ...]}."""
    if isinstance(v, bytes):
        return {'$bytes': v.hex()}
    if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
        return v
    if isinstance(v, int):
        return v if -2**63 <= v < 2**63 else {'$int': str(v)}
    if isinstance(v, (list, tuple)):
        return [tag(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {k: tag(x) for k, x in v.items()}
        return {'$map': [[tag(k), tag(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def properties_of(c):
    """The properties py-amqp would put on the wire: it drops non-AMQP keys
    (Retry's replaced_task_nesting and origin) and None values."""
    props = {'content_type': c['content_type'],
             'content_encoding': c['content_encoding'],
             'priority': c['priority']}
    props.update(c['properties'])
    amqp_names = {name for name, _ in BasicMessage.PROPERTIES}
    return {k: v for k, v in props.items() if k in amqp_names and v is not None}


def write_fixture(name, c, body=None, note=None, expect_error=None):
    body = c['body'] if body is None else body
    table = io.BytesIO()
    _write_table(c['headers'], table.write, [])
    fixture = {
        'name': name,
        'note': note or '',
        'properties': properties_of(c),
        'headers_msgpack': msgpack.packb(c['headers'], use_bin_type=True).hex(),
        'headers_amqp': table.getvalue().hex(),
        'body': body.hex(),
    }
    if expect_error:
        fixture['expect_error'] = expect_error
    else:
        args, kwargs, embed = msgpack.unpackb(body, raw=False)
        fixture['expected'] = {'headers': tag(c['headers']), 'args': tag(args),
                               'kwargs': tag(kwargs), 'embed': tag(embed)}
    with open(os.path.join(OUT, name + '.json'), 'w') as f:
        json.dump(fixture, f, indent=1, sort_keys=False)
        f.write('\n')


def one(send):
    """Runs send() and returns the messages it published."""
    del captured[:]
    send()
    return list(captured)


def main():
    os.makedirs(OUT, exist_ok=True)
    [c] = one(lambda: add.apply_async((2, 3), task_id='d5a8e3c2-1b4f-4a9e-9c3e-100000000001'))
    write_fixture('plain_add', c, note='add.apply_async((2, 3))')

    [c] = one(lambda: add.apply_async(
        (2, 3), countdown=10, expires=60, priority=3, time_limit=30,
        soft_time_limit=20, task_id='d5a8e3c2-1b4f-4a9e-9c3e-100000000002',
        shadow='add-shadow', ignore_result=True))
    write_fixture('all_options', c, note='countdown, expires, priority, time limits, task_id, shadow, ignore_result')

    [c] = one(lambda: add.apply_async((2, 3), link=mul.s(10), link_error=on_err.s()))
    write_fixture('link_and_link_error', c, note='link=mul.s(10), link_error=on_err.s()')

    [c] = one(lambda: chain(add.s(1, 2), mul.s(3), add.s(4)).apply_async())
    write_fixture('chain_of_three', c, note='chain(add.s(1, 2), mul.s(3), add.s(4)); embed.chain is reversed')

    msgs = one(lambda: chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async())
    write_fixture('chord_header_member', msgs[1], note='second header task of chord([add.s(1,1), add.s(2,2)], tsum.s())')

    kwargs = {'nested': [1, [2, [3, {'deep': True}]], {'k': None}],
              'blob': b'\x00\xff\x10binary', 'text': 'h\u00e9llo \u2603 \U0001F600',
              'pi': 3.141592653589793, 'neg': -7, 'flags': [True, False, None],
              'big': 2**64 - 1, 'small': -2**63, 'i32': 2**31, 'empty': {}, 'none': None}
    # No int map keys: kombu unpacks with msgpack's strict_map_key=True, so a
    # Python worker rejects them.
    [c] = one(lambda: echo.apply_async(('a', 1.5, b'\x01'), kwargs))
    write_fixture('rich_kwargs', c, note='kwargs with nested lists/maps, bytes, unicode, floats, bools, None, big ints')

    # Task.retry from inside a "running" task: Celery republishes the same id
    # with retries + 1 and an eta.
    def retry():
        add.push_request(id='d5a8e3c2-1b4f-4a9e-9c3e-100000000007', args=(2, 3), kwargs={},
                         retries=2, called_directly=False, is_eager=False,
                         root_id='d5a8e3c2-1b4f-4a9e-9c3e-100000000006',
                         parent_id='d5a8e3c2-1b4f-4a9e-9c3e-100000000006',
                         delivery_info={'exchange': '', 'routing_key': 'celery'},
                         reply_to=REPLY_TO, hostname='celery@fixture')
        try:
            add.retry(countdown=5, throw=False)
        finally:
            add.pop_request()
    [c] = one(retry)
    write_fixture('retried', c, note='add.retry(countdown=5) on a request with retries=2')

    # A group signature in the body: Celery's msgpack packing is corrupt
    # (celery#4710: map length taken from group.__len__). Keep Celery's bytes
    # as an error case, and the same message packed correctly from plain dicts.
    [c] = one(lambda: add.apply_async((2, 3), link=group(mul.s(2), mul.s(3))))
    write_fixture('link_group_celery4710', c, note='link=group(...): Celery writes a map of 2 entries holding 6',
                  expect_error='decode')
    fixed = msgpack.packb(group_link_body(), use_bin_type=True)
    write_fixture('link_group_repacked', c, body=fixed,
                  note='link=group(mul.s(2), mul.s(3)) packed from plain dicts, as Celery would without #4710')


def group_link_body():
    """Rebuilds the body of the link=group message from Python objects, since
    Celery's own packed bytes of it cannot be unpacked."""
    sig = add.signature((2, 3), link=group(mul.s(2), mul.s(3)))
    link = json.loads(json.dumps(sig.options['link']))
    return [[2, 3], {}, {'callbacks': [link], 'errbacks': None, 'chain': None, 'chord': None}]


if __name__ == '__main__':
    sys.exit(main())
