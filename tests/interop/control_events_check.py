#!/usr/bin/python3
"""Reads events and control replies made by warren with Celery 5.2 / kombu 5.2
code, and prints what Celery sees, as JSON on stdout.

    control_events_check.py events < bodies     one event message body per
                                                line (JSON text as published)
    control_events_check.py reply CONTENT_TYPE HEX
    control_events_check.py request CONTENT_TYPE HEX_HEADERS HEX_BODY

Used by tests/interop/test_control_events_celery.c.

events: each body goes through EventReceiver._receive (what `celery events`,
Flower and any EventReceiver run: lists are task.multi, timestamps are
adjusted by utcoffset) into celery.events.state.State; prints the workers
(alive, processed, active, ...) and the tasks (state and fields).

reply: the body is decoded by kombu's serialization.loads (msgpack or json,
as `celery inspect` accepts them), flattened by Celery's flatten_reply and
rendered by the CLI's own pretty() the way `celery inspect` prints each node.

request: the request is run through kombu's Node.handle_message with Celery's
real Panel handlers for ping/registered/revoke (a worker-side check of our
encoder), printing what the node would reply.

Exit status 2 means this machine cannot run the check (no Celery).
"""
import json
import sys

try:
    from celery import Celery
    from celery.app.control import flatten_reply
    from celery.bin.base import CLIContext
    from celery.events.state import State
    from kombu.serialization import loads
except ImportError as e:
    print(f'control_events_check.py: cannot import celery: {e}', file=sys.stderr)
    sys.exit(2)

APP = Celery('interop', broker='memory://', accept_content=['msgpack', 'json'],
             task_serializer='msgpack')


def task_fields(task):
    keys = ('uuid', 'name', 'state', 'args', 'kwargs', 'result', 'runtime',
            'exception', 'traceback', 'retries', 'eta', 'expires', 'root_id',
            'parent_id', 'received', 'started', 'succeeded', 'failed',
            'retried', 'rejected', 'revoked', 'timestamp', 'clock',
            'terminated', 'signum', 'expired', 'requeue', 'sent', 'routing_key',
            'exchange', 'queue')
    out = {k: getattr(task, k, None) for k in keys}
    out['worker'] = task.worker.hostname if task.worker else None
    out['ready'] = task.ready
    return out


def worker_fields(worker):
    return {
        'hostname': worker.hostname,
        'alive': worker.alive,
        'status': worker.status_string,
        'pid': worker.pid,
        'freq': worker.freq,
        'active': worker.active,
        'processed': worker.processed,
        'loadavg': worker.loadavg,
        'sw_ident': worker.sw_ident,
        'sw_ver': worker.sw_ver,
        'sw_sys': worker.sw_sys,
        'heartbeats': len(worker.heartbeats),
        'clock': worker.clock,
    }


def check_events():
    state = State()
    with APP.connection_for_write() as conn:
        recv = APP.events.Receiver(conn, handlers={'*': state.event})
        for line in sys.stdin:
            line = line.strip()
            if line:
                recv._receive(loads(line, 'application/json', 'utf-8'), None)
    json.dump({
        'event_count': state.event_count,
        'task_count': state.task_count,
        'workers': {h: worker_fields(w) for h, w in state.workers.items()},
        'alive_workers': sorted(w.hostname for w in state.alive_workers()),
        'tasks': {u: task_fields(t) for u, t in state.tasks.items()},
        'task_types': sorted(state.task_types()),
    }, sys.stdout, default=repr)


def check_reply(content_type, payload):
    encoding = 'utf-8' if content_type == 'application/json' else 'binary'
    body = loads(payload, content_type, encoding, accept={'application/x-msgpack', 'application/json'})
    ctx = CLIContext(APP, no_color=True, workdir=None, quiet=False)
    flat = flatten_reply([body])
    pretty = {}
    for node, reply in flat.items():
        status, text = ctx.pretty(reply)
        pretty[node] = {'status': status, 'text': text}
    json.dump({'body': body, 'flat': flat, 'pretty': pretty}, sys.stdout, default=repr)


def check_request(content_type, headers_hex, body_hex):
    import msgpack
    from celery.worker import control as panel
    from kombu.pidbox import Mailbox

    encoding = 'utf-8' if content_type == 'application/json' else 'binary'
    headers = msgpack.unpackb(bytes.fromhex(headers_hex), raw=False)
    body = loads(bytes.fromhex(body_hex), content_type, encoding,
                 accept={'application/x-msgpack', 'application/json'})
    replies = []

    class Msg:
        pass
    msg = Msg()
    msg.headers = headers

    class State:
        app = APP
        hostname = 'w1@host'
        consumer = None

    mailbox = Mailbox('celery', type='fanout')
    node = mailbox.Node('w1@host', state=State(), handlers=panel.Panel.data)
    node.reply = lambda data, exchange, routing_key, ticket, **kw: replies.append(
        {'data': data, 'exchange': exchange, 'routing_key': routing_key,
         'ticket': ticket})
    result = node.handle_message(body, msg)
    json.dump({'body': body, 'headers': headers, 'result': result,
               'replies': replies, 'clock': mailbox.clock.value},
              sys.stdout, default=repr)


def main():
    mode = sys.argv[1]
    if mode == 'events':
        check_events()
    elif mode == 'reply':
        check_reply(sys.argv[2], bytes.fromhex(sys.argv[3]))
    elif mode == 'request':
        check_request(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f'unknown mode {mode}')


if __name__ == '__main__':
    main()
