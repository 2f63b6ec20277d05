"""The pipe + JSON transport: the design shmpool replaces, kept as a baseline.

Frames are a 4-byte big-endian length followed by UTF-8 JSON, on stdin
(requests) and on the original stdout (responses). ``print()`` in a handler
goes to stderr, so it cannot corrupt the channel. Bytes travel as base64:
the request/response ``payload`` field, and ``{"__bytes__": "<base64>"}`` for
bytes values inside args and results.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO, Optional

from .registry import MessageContext, handlers, split_result


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "tolist"):
        return _encode(value.tolist())
    return value


def _read_exact(stream: BinaryIO, n: int) -> Optional[bytes]:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _dumps(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def _send(out: BinaryIO, message: dict, data: Optional[bytes] = None) -> None:
    if data is None:
        data = _dumps(message)
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def _error(rid: int, category: str, type_: str, message: str, **context: str) -> dict:
    return {"id": rid, "status": "error",
            "error": {"category": category, "type": type_, "message": message,
                      "context": {k: v for k, v in context.items() if v}}}


def serve(info: dict) -> None:
    """Serve requests until stdin closes or ``__shutdown__`` arrives."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # print() must not touch the protocol stream
    inp = sys.stdin.buffer
    registry = handlers()
    _send(out, {"id": 0, "status": "ok", "result": info})
    while True:
        header = _read_exact(inp, 4)
        if header is None:
            return
        (length,) = struct.unpack(">I", header)
        raw = _read_exact(inp, length)
        if raw is None:
            return
        try:
            req = json.loads(raw)
            rid = int(req.get("id", 0))
            cmd = str(req.get("command", ""))
        except (ValueError, AttributeError) as exc:
            _send(out, _error(0, "protocol_error", "invalid_request", str(exc)))
            continue
        if cmd == "__shutdown__":
            _send(out, {"id": rid, "status": "ok"})
            return
        handler = registry.get(cmd)
        if handler is None:
            _send(out, _error(rid, "handler_error", "unknown_command",
                              f"no handler registered for command '{cmd}'", command=cmd))
            continue
        payload = base64.b64decode(req["payload"]) if req.get("payload") else b""
        ctx = MessageContext(rid, req.get("session_id"), cmd, payload)
        prefix = ""
        try:
            result = handler(_decode(req.get("args") or {}), ctx)
            response = {"id": rid, "status": "ok"}
            value, payload = split_result(result, ctx)
            prefix = "cannot encode the handler's result: "
            response["result"] = _encode(value)
            if payload is not None:
                response["payload"] = base64.b64encode(memoryview(payload).cast("B")).decode("ascii")
            data = _dumps(response)
        except Exception as exc:  # noqa: BLE001 - every handler failure becomes a reply
            data = _dumps(_error(rid, "handler_error", "handler_exception", prefix + str(exc),
                                 exception_type=type(exc).__name__,
                                 traceback="".join(traceback.format_exception(exc)), command=cmd))
        _send(out, {}, data)
