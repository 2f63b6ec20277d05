"""Built-in commands every worker serves: ping, echo, info."""

from __future__ import annotations

import os
import sys

from .registry import Output, command, handlers


@command("ping")
def ping(args, ctx):
    return {"pong": True}


@command("echo")
def echo(args, ctx):
    """Returns the args; echoes the request payload back if there is one,
    copied into an output block the caller then reads in place."""
    payload = ctx.payload
    if len(payload):
        out = ctx.alloc_output(len(payload))
        out[:] = payload
        return Output(args, out)
    return args


@command("numpy_sum")
def numpy_sum(args, ctx):
    """Sums the payload as a numpy array (args["dtype"], default float64),
    read in place."""
    import numpy as np

    values = np.frombuffer(ctx.payload, dtype=args.get("dtype", "float64"))
    return {"sum": float(values.sum()), "n": int(values.size)}


@command("ack")
def ack(args, ctx):
    """Acknowledges a payload: returns its length without reading it."""
    return {"bytes": len(ctx.payload)}


@command("info")
def info(args, ctx):
    return worker_info()


def worker_info():
    return {
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "handlers": sorted(handlers()),
    }
