#!/usr/bin/python3
"""Writes tests/fixtures/results/results.json: golden result messages made by
Celery 5.2's own backend code, for tests/unit/test_schemas_result.c.

Run with the Debian Celery (/usr/bin/python3 tests/interop/gen_result_fixtures.py);
no broker or Redis is needed: only the code paths that build and serialize a
result are used (RPCBackend._to_result, Backend._get_result_meta,
Backend.encode with result_serializer='msgpack').

The clock is frozen so that the Redis `date_done` is reproducible, which lets
the C test compare its own encoding byte for byte. Rerun this script, and
check the diff, whenever the Celery version we target changes.
"""
import datetime as _dt
import json
import os
import sys

import celery.backends.base as backend_base
from celery import Celery
from celery.app.task import Context
from celery.backends.rpc import RPCBackend
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult, GroupResult
from vine import barrier

FROZEN = _dt.datetime(2026, 11, 27, 10, 19, 8, 323802)
# A second for the microsecond==0 case: isoformat() then drops the fraction.
FROZEN_WHOLE = _dt.datetime(2026, 11, 27, 10, 19, 9, 0)


class FrozenDatetime(_dt.datetime):
    now_value = FROZEN

    @classmethod
    def utcnow(cls):
        return cls.now_value


backend_base.datetime = FrozenDatetime

TASK_ID = 'd5a8e3c2-1b4f-4a9e-9c3e-00000000000a'
GROUP_ID = '99999999-0000-4000-8000-000000000001'
PARENT_ID = '11111111-0000-4000-8000-000000000002'
CHILD_ID = 'cccccccc-0000-4000-8000-000000000003'
GCHILD_ID = 'cccccccc-0000-4000-8000-000000000004'
TRACEBACK = ('Traceback (most recent call last):\n'
             '  File "tasks.py", line 7, in add\n'
             '    raise ValueError(\'boom\', 42)\n'
             'ValueError: (\'boom\', 42)\n')
RETRY_TRACEBACK = ('Traceback (most recent call last):\n'
                   'celery.exceptions.Retry: Retry in 10s: ConnectionError(\'broker down\')\n')


def make_app(extended=False):
    return Celery('fixtures', broker='memory://',
                  backend='redis://localhost:1/0',
                  result_serializer='msgpack',
                  accept_content=['msgpack'],
                  result_accept_content=['msgpack'],
                  result_extended=extended)


APP = make_app()
APP_EXT = make_app(extended=True)
RPC = RPCBackend(app=APP)
REDIS = APP.backend
REDIS_EXT = APP_EXT.backend


def request(children=(), group=None, parent_id=None, **extra):
    req = Context(id=TASK_ID, group=group, parent_id=parent_id, **extra)
    req.children.extend(children)  # a property: it cannot be set by keyword
    return req


def rpc_body(state, result, traceback=None, req=None):
    body = RPC._to_result(TASK_ID, state, result, traceback, req or request())
    return RPC.encode(body)


def redis_value(backend, state, result, traceback=None, req=None):
    # What KeyValueStoreBackend._store_result sets under celery-task-meta-<id>.
    result = backend.encode_result(result, state)
    meta = backend._get_result_meta(result=result, state=state,
                                    traceback=traceback,
                                    request=req or request())
    meta['task_id'] = TASK_ID
    return backend.encode(meta)


def children():
    child = AsyncResult(CHILD_ID, app=APP)
    # An empty ready_barrier keeps GroupResult from subscribing to Redis.
    grp = GroupResult(GROUP_ID, [AsyncResult(GCHILD_ID, app=APP)], app=APP,
                      ready_barrier=barrier([]))
    return [child, grp]


def cases():
    nested = {'a': [1, 2.5, None, True], 'b': {'c': b'\x00\x01'}, 'neg': -7}
    yield 'rpc_success_int', 'rpc', rpc_body('SUCCESS', 5)
    yield 'rpc_success_str', 'rpc', rpc_body('SUCCESS', 'hello')
    yield 'rpc_success_nested', 'rpc', rpc_body('SUCCESS', nested)
    yield 'rpc_success_children', 'rpc', rpc_body(
        'SUCCESS', 5, req=request(children=children()))
    yield 'rpc_failure', 'rpc', rpc_body(
        'FAILURE', ValueError('boom', 42), TRACEBACK)
    yield 'rpc_retry', 'rpc', rpc_body(
        'RETRY', ConnectionError('broker down'), RETRY_TRACEBACK)
    for reason in ('revoked', 'expired', 'terminated'):
        yield 'rpc_revoked_' + reason, 'rpc', rpc_body(
            'REVOKED', TaskRevokedError(reason))
    yield 'rpc_started', 'rpc', rpc_body(
        'STARTED', {'pid': 4242, 'hostname': 'w1@host'})

    FrozenDatetime.now_value = FROZEN
    yield 'redis_success_int', 'redis', redis_value(REDIS, 'SUCCESS', 5)
    yield 'redis_success_ids', 'redis', redis_value(
        REDIS, 'SUCCESS', 5,
        req=request(group=GROUP_ID, parent_id=PARENT_ID))
    yield 'redis_failure', 'redis', redis_value(
        REDIS, 'FAILURE', ValueError('boom', 42), TRACEBACK,
        req=request(parent_id=PARENT_ID))
    yield 'redis_retry', 'redis', redis_value(
        REDIS, 'RETRY', ConnectionError('broker down'), RETRY_TRACEBACK)
    yield 'redis_revoked', 'redis', redis_value(
        REDIS, 'REVOKED', TaskRevokedError('terminated'))
    yield 'redis_started', 'redis', redis_value(
        REDIS, 'STARTED', {'pid': 4242, 'hostname': 'w1@host'})
    yield 'redis_extended', 'redis', redis_value(
        REDIS_EXT, 'SUCCESS', 5,
        req=request(group=GROUP_ID, task='math.add', args=[2, 3],
                    kwargs={'z': 1}, hostname='w1@host', retries=2,
                    delivery_info={'routing_key': 'celery'}))
    FrozenDatetime.now_value = FROZEN_WHOLE
    yield 'redis_success_whole_second', 'redis', redis_value(
        REDIS, 'SUCCESS', 'ok')


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       '..', 'fixtures', 'results', 'results.json')
    doc = {
        'generator': 'tests/interop/gen_result_fixtures.py',
        'celery': __import__('celery').__version__,
        'date_done': FROZEN.isoformat(),
        'cases': [{'name': n, 'backend': b, 'hex': v.hex()}
                  for n, b, v in cases()],
    }
    with open(out, 'w') as f:
        json.dump(doc, f, indent=1)
        f.write('\n')
    print(f'wrote {len(doc["cases"])} cases to {os.path.normpath(out)}',
          file=sys.stderr)


if __name__ == '__main__':
    main()
