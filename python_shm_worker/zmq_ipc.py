"""The ZeroMQ transport (``ipc://``), a benchmark peer.

The same FlatBuffers envelope as over shared memory (decoded and encoded by
the native core), carried by a REP socket: a request is ``[envelope]`` or
``[envelope, payload]``, a reply likewise. The payload frame is handed to the
handler as a read-only memoryview of ZeroMQ's message (no copy in Python).
Same handlers and ``ctx`` surface as the other transports.
"""

from __future__ import annotations

import traceback
from typing import Any, Optional

from . import _native
from .registry import Output, handlers


class ZmqContext:
    __slots__ = ("request_id", "session_id", "command", "payload", "body", "output")

    def __init__(self, request_id: int, session_id: Optional[str], command: str,
                 payload: memoryview, body: bytes) -> None:
        self.request_id = request_id
        self.session_id = session_id
        self.command = command
        self.payload = payload
        self.body = memoryview(body)
        self.output: Optional[memoryview] = None

    def alloc_output(self, n: int) -> memoryview:
        if self.output is not None:
            raise ValueError("alloc_output() may be called once per call")
        self.output = memoryview(bytearray(n))
        return self.output


def _split(result: Any, ctx: ZmqContext):
    """(value, payload) of a handler's result, as the other transports read it."""
    value, payload = result, None
    if isinstance(result, Output):
        value, payload = result.value, result.payload
    elif result is not None and not isinstance(result, (str, dict, list, tuple, int, float)):
        try:
            payload = memoryview(result)
            value = None
        except TypeError:
            pass
    if payload is None and ctx.output is not None:
        payload = ctx.output
    return value, payload


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
            ctx = ZmqContext(rid, session, cmd, payload, body)
            try:
                value, out = _split(handler(args, ctx), ctx)
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
