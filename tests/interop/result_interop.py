#!/usr/bin/python3
"""Decodes one result message made by warren the way a Python Celery 5.2
client does, and prints what that client would see, as JSON on stdout.

    /usr/bin/python3 tests/interop/result_interop.py rpc|redis <hex>

Used by tests/interop/test_result_interop.c. The decode path is Celery's:
Backend.decode (kombu's msgpack loads, under result_accept_content) and
Backend.meta_from_decoded (exception_to_python for RETRY/FAILURE/REVOKED).
Exit status 2 means this machine cannot run the check (no Celery).
"""
import json
import sys

try:
    from celery import Celery
    from celery.backends.rpc import RPCBackend
    from celery.utils.iso8601 import parse_iso8601
except ImportError as e:
    print(f'result_interop.py: cannot import celery: {e}', file=sys.stderr)
    sys.exit(2)


def describe_exception(exc):
    cls = type(exc)
    module = sys.modules.get(cls.__module__)
    resolved = module
    for part in cls.__qualname__.split('.'):
        resolved = getattr(resolved, part, None)
    return {
        'class': cls.__qualname__,
        'module': cls.__module__,
        # True when Celery found the real class, not a synthesized stand-in.
        'is_real_class': resolved is cls,
        'args': list(exc.args),
        'str': str(exc),
    }


def main():
    kind, payload = sys.argv[1], bytes.fromhex(sys.argv[2])
    app = Celery('interop', broker='memory://', backend='redis://localhost:1/0',
                 result_serializer='msgpack', accept_content=['msgpack'],
                 result_accept_content=['msgpack'])
    backend = RPCBackend(app=app) if kind == 'rpc' else app.backend
    meta = backend.meta_from_decoded(backend.decode(payload))
    out = {k: v for k, v in meta.items() if k != 'result'}
    result = meta['result']
    if isinstance(result, BaseException):
        out['exception'] = describe_exception(result)
    else:
        out['result'] = result
    if meta.get('date_done'):
        out['date_done_parsed'] = parse_iso8601(meta['date_done']).isoformat()
    json.dump(out, sys.stdout, default=repr)


if __name__ == '__main__':
    main()
