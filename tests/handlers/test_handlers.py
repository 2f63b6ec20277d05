"""Handlers used by the C++ multi-process tests."""

import os
import sys
import time

from python_shm_worker import Output, command


@command("types")
def types(args, ctx):
    """Returns its args unchanged (round trip of every type)."""
    return args


@command("fail")
def fail(args, ctx):
    raise ValueError(args.get("message", "boom"))


@command("session")
def session(args, ctx):
    return {"session_id": ctx.session_id, "request_id": ctx.request_id, "command": ctx.command}


@command("noisy")
def noisy(args, ctx):
    """print() to stdout and stderr must not disturb the protocol."""
    print("noise on stdout", args.get("tag", ""))
    print("noise on stderr", args.get("tag", ""), file=sys.stderr)
    return {"ok": True}


@command("announce_and_block")
def announce_and_block(args, ctx):
    """Prints a marker the test waits for, then blocks until killed."""
    print("BLOCKING", os.getpid(), flush=True)
    while True:
        time.sleep(3600)


@command("exit_now")
def exit_now(args, ctx):
    os._exit(int(args.get("code", 7)))


@command("checksum")
def checksum(args, ctx):
    """Sum of the payload bytes, computed on the zero-copy view."""
    data = ctx.payload
    return {"bytes": len(data), "sum": sum(data.tobytes()) if len(data) < 4096 else sum(bytes(data))}


@command("numpy_sum")
def numpy_sum(args, ctx):
    import numpy as np
    arr = np.frombuffer(ctx.payload, dtype=args.get("dtype", "float64"))
    return {"sum": float(arr.sum()), "n": int(arr.size), "writeable": bool(arr.flags.writeable)}


@command("make_payload")
def make_payload(args, ctx):
    n = int(args["n"])
    return Output({"n": n}, bytes((i * 7) & 0xFF for i in range(n)))


@command("big_result")
def big_result(args, ctx):
    return {"blob": b"x" * int(args["n"])}


@command("keep_ctx")
def keep_ctx(args, ctx):
    global KEPT
    KEPT = ctx
    return {}


@command("use_kept_ctx")
def use_kept_ctx(args, ctx):
    try:
        KEPT.payload  # noqa: B018 - must raise: the call it belonged to is over
    except ValueError as exc:
        return {"raised": True, "message": str(exc)}
    return {"raised": False}


@command("sleep_ms")
def sleep_ms(args, ctx):
    """Simulates work that takes a while."""
    time.sleep(int(args.get("ms", 10)) / 1000.0)
    return {"pid": os.getpid()}


@command("whoami")
def whoami(args, ctx):
    return {"pid": os.getpid(), "session_id": ctx.session_id}


@command("segfault")
def segfault(args, ctx):
    import ctypes
    ctypes.string_at(0)


@command("abort")
def abort(args, ctx):
    os.abort()


@command("announce_and_sleep")
def announce_and_sleep(args, ctx):
    """Prints a marker the test waits for, then works for `ms`."""
    print("SLEEPING", os.getpid(), flush=True)
    time.sleep(int(args.get("ms", 10)) / 1000.0)
    return {"pid": os.getpid()}
