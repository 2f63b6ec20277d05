"""Handlers for the numpy example: no copy on the way in or out."""

import numpy as np

from python_shm_worker import command


@command("stats")
def stats(args, ctx):
    # A read-only view of the caller's block in shared memory: no copy.
    values = np.frombuffer(ctx.payload, dtype=np.float64)
    return {"n": int(values.size), "sum": float(values.sum()), "max": float(values.max())}


@command("scale")
def scale(args, ctx):
    values = np.frombuffer(ctx.payload, dtype=np.float64)
    # The reply's block, in shared memory: numpy writes the result straight
    # into it and the caller reads it in place.
    out = ctx.alloc_output(values.nbytes)
    np.multiply(values, float(args["factor"]), out=np.frombuffer(out, dtype=np.float64))
    return out
