"""Handler registry shared by both transports."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Dict

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
