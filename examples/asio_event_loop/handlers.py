"""Handlers of the asio_event_loop example."""
import time

from python_shm_worker import command


@command("square")
def square(args, ctx):
    return {"x": args["x"], "square": args["x"] * args["x"]}


@command("tokens")
def tokens(args, ctx):
    """A generator: its items stream to the caller as they are made."""
    for word in args["text"].split():
        yield {"token": word}


@command("slow")
def slow(args, ctx):
    """Cooperative: stops early when the caller cancels."""
    for _ in range(1000):
        if ctx.cancelled:
            return {"stopped": "cancelled"}
        time.sleep(0.01)
    return {"stopped": "done"}
