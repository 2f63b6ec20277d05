"""Handlers for the numpy example: the payload is read without a copy."""

import numpy as np

from python_shm_worker import Output, command


@command("stats")
def stats(args, ctx):
    # A view into shared memory: no copy, read-only.
    values = np.frombuffer(ctx.payload, dtype=np.float64)
    return {"n": int(values.size), "sum": float(values.sum()), "max": float(values.max())}


@command("scale")
def scale(args, ctx):
    values = np.frombuffer(ctx.payload, dtype=np.float64)
    return Output({"n": int(values.size)}, values * float(args["factor"]))
