"""The ZeroMQ transport (``ipc://``), a benchmark peer.

The same FlatBuffers envelope as over shared memory (decoded and encoded by
the native core), carried by a REP socket: a request is ``[envelope]`` or
``[envelope, payload]``, a reply likewise. The payload frame is handed to the
handler as a read-only memoryview of ZeroMQ's message (no copy in Python).
Same handlers and ``ctx`` surface as the other transports.
"""

from __future__ import annotations

import traceback

from . import _native
from .registry import MessageContext, handlers, split_result


def serve(endpoint: str, info: dict) -> None:
    """Serve requests on a REP socket bound to ``endpoint`` until ``__shutdown__``."""
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.bind(endpoint)
    registry = handlers()
    try:
        while True:
            frames = sock.recv_multipart(copy=False)
            try:
                rid, session, cmd, args, body = _native.decode_request(frames[0].buffer)
            except ValueError as exc:
                sock.send(_native.encode_response(0, None, ("protocol_error", "invalid_request", str(exc), {})))
                continue
            if cmd == "__shutdown__":
                sock.send(_native.encode_response(rid, None))
                return
            if cmd == "info":
                sock.send(_native.encode_response(rid, info))
                continue
            handler = registry.get(cmd)
            if handler is None:
                sock.send(_native.encode_response(
                    rid, None, ("handler_error", "unknown_command",
                                f"no handler registered for command '{cmd}'", {"command": cmd})))
                continue
            payload = frames[1].buffer.toreadonly() if len(frames) > 1 else memoryview(b"")
            ctx = MessageContext(rid, session, cmd, payload, body)
            try:
                value, out = split_result(handler(args, ctx), ctx)
                env = _native.encode_response(rid, value)
            except Exception as exc:  # noqa: BLE001 - every handler failure becomes a reply
                out = None
                env = _native.encode_response(
                    rid, None, ("handler_error", "handler_exception", str(exc),
                                {"exception_type": type(exc).__name__,
                                 "traceback": "".join(traceback.format_exception(exc)),
                                 "command": cmd}))
            if out is None:
                sock.send(env)
            else:
                sock.send_multipart([env, out], copy=False)
    finally:
        sock.close(linger=0)
        context.term()
