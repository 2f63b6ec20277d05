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
    """Returns the args; echoes the request payload back if there is one."""
    payload = ctx.payload
    if len(payload):
        return Output(args, payload)
    return args


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
