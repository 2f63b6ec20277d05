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
float, bool, None or bytes; return ``Output(value, payload)`` to send a bulk
payload back as well.
"""

from .registry import Output, command, handlers, load_handler_module

__all__ = ["Output", "command", "handlers", "load_handler_module"]
__version__ = "0.1.0"
