"""Handlers of the async, streaming and cancel cases (bench/async_cases.cc).
The gRPC and pipe-JSON peers run the same functions."""
import numpy as np

from python_shm_worker import command

_CHUNKS = {}


def stream_items_gen(n):
    """n small dicts."""
    for k in range(n):
        yield {"i": k, "name": "item"}


def stream_chunks_gen(n, size):
    """n numpy arrays of `size` bytes (made once, then reused)."""
    chunk = _CHUNKS.get(size)
    if chunk is None:
        chunk = _CHUNKS[size] = np.full(size, 7, dtype=np.uint8)
    for _ in range(n):
        yield chunk


@command("stream_items")
def stream_items(args, ctx):
    return stream_items_gen(int(args["n"]))


@command("stream_chunks")
def stream_chunks(args, ctx):
    return stream_chunks_gen(int(args["n"]), int(args["size"]))


@command("started_then_poll_cancel")
def started_then_poll_cancel(args, ctx):
    """Cooperative: says it started (one item), then polls ctx.cancelled."""
    yield {"started": True}
    while not ctx.cancelled:
        pass


@command("started_then_ignore_cancel")
def started_then_ignore_cancel(args, ctx):
    """Not cooperative: says it started, then never looks."""
    import time

    yield {"started": True}
    while True:
        time.sleep(3600)
