"""Handler registry shared by both transports."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Dict, Optional, Tuple

Handler = Callable[[Dict[str, Any], Any], Any]

_HANDLERS: Dict[str, Handler] = {}


class Output:
    """A handler result that carries a bulk payload and/or a typed body
    besides its value.

    ``payload`` is any contiguous bytes-like object (bytes, bytearray,
    memoryview, numpy array). The block from ``ctx.alloc_output`` (or a view
    of it) is handed to the caller in place; anything else is copied once
    into shared memory. ``body`` is a finished FlatBuffer (bytes-like) the
    caller reads as ``Reply::body()``; it is copied into the reply envelope.
    """

    __slots__ = ("value", "payload", "body")

    def __init__(self, value: Any = None, payload: Any = None, body: Any = None) -> None:
        self.value = value
        self.payload = payload
        self.body = body


class MessageContext:
    """Context of a call over a message transport (pipe-JSON, ZeroMQ): the
    same surface as the shared-memory one, over private buffers."""

    __slots__ = ("request_id", "session_id", "command", "payload", "body", "output", "deadline_ns")

    def __init__(self, request_id: int, session_id: Optional[str], command: str,
                 payload: Any, body: Any = b"") -> None:
        self.request_id = request_id
        self.session_id = session_id or None
        self.command = command
        self.payload = memoryview(payload).toreadonly()
        self.body = memoryview(body)
        self.output: Optional[memoryview] = None
        self.deadline_ns = 0  # message transports carry no deadline

    def alloc_output(self, n: int) -> memoryview:
        """A writable buffer of n bytes for the reply's payload."""
        if self.output is not None:
            raise ValueError("alloc_output() may be called once per call")
        self.output = memoryview(bytearray(n))
        return self.output

    # Message transports carry neither streams nor cancellation (shm only).
    cancelled = False
    streaming = False

    def send(self, item: Any) -> bool:
        raise ValueError("ctx.send() streams items: the caller must call this command with stream()")


def split_result(result: Any, ctx: Any) -> Tuple[Any, Any]:
    """(value, payload) of a handler's result, as every transport reads it:
    Output(value, payload), a bytes-like result (the payload), or a value
    with ctx.alloc_output's block as the payload."""
    value, payload = result, None
    if isinstance(result, Output):
        value, payload = result.value, result.payload
    elif result is not None and not isinstance(result, (str, dict, list, tuple, int, float)):
        try:
            payload = memoryview(result)
            value = None
        except TypeError:
            pass
    if payload is None and getattr(ctx, "output", None) is not None:
        payload = ctx.output
    return value, payload


def command(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn(args, ctx)`` as the handler of command ``name``."""
    if not isinstance(name, str) or not name or name.startswith("__"):
        raise ValueError(f"invalid command name {name!r}")

    def register(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return register


def handlers() -> Dict[str, Handler]:
    """The registry itself (command name -> handler)."""
    return _HANDLERS


def load_handler_module(spec: str) -> None:
    """Import a handler module by dotted name or by path to a .py file."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load handler module from {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)
