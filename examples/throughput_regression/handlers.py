"""Handlers under a throughput-regression gate.

`checksum` stands for the user's own work: numpy over the request payload,
read in place from shared memory. SHMPOOL_EXAMPLE_SLOWDOWN_MS makes it sleep
first: the "deliberately slowed build" the gate must catch.
"""

import os
import time

import numpy as np

from python_shm_worker import command

_SLOWDOWN_S = float(os.environ.get("SHMPOOL_EXAMPLE_SLOWDOWN_MS", "0")) / 1000.0


@command("checksum")
def checksum(args, ctx):
    if _SLOWDOWN_S:
        time.sleep(_SLOWDOWN_S)
    values = np.frombuffer(ctx.payload, dtype=np.uint32)
    return {"n": int(values.size), "sum": int(values.sum(dtype=np.uint64))}
