"""python_shm_worker: Python workers for shmpool.

A worker process serves commands to a C++ host, either over shared memory
(the default: the hot loop runs in the private native core ``_native``) or
over a pipe with length-prefixed JSON (the old design, kept as a baseline).

Write handlers with the ``command`` decorator::

    from python_shm_worker import command, Output

    @command("add")
    def add(args, ctx):
        return {"sum": args["a"] + args["b"]}

A handler receives ``args`` (a dict decoded from the request) and ``ctx``
(``ctx.session_id``, ``ctx.request_id``, ``ctx.command``, and ``ctx.payload``,
a read-only memoryview of the request payload in shared memory, so
``numpy.frombuffer(ctx.payload, dtype=...)`` does not copy). ``ctx`` and its
views are valid only while the handler runs. Return a dict, list, str, int,
float, bool or None; return a bytes-like object (bytes, bytearray,
memoryview, numpy array) to send it back as the reply's payload, or
``Output(value, payload)`` for both.

Zero-copy both ways: a payload above 4 KiB is the caller's block in the
shared payload arena, and ``out = ctx.alloc_output(n)`` gives a writable block
there; return ``out`` (or a numpy view of it) and the caller reads it in
place. Any other payload you return is copied once into shared memory.

Lifetimes: the caller frees its block when its PayloadBuffer dies; the
output block passes to the caller with the reply. A view that your handler
keeps past the call (a global, a numpy array made from ``ctx.payload``)
keeps its block alive until the view dies: it never sees memory reused by
another call. ``ctx`` itself raises ValueError once its call has ended. If
the worker dies, the pool's owner frees what it held.
"""

from .registry import Output, command, handlers, load_handler_module

__all__ = ["Output", "command", "handlers", "load_handler_module"]
__version__ = "0.1.0"
