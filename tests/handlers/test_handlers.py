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


@command("nul_key")
def nul_key(args, ctx):
    """A result FlexBuffers cannot carry: a key with a NUL in it."""
    return {"a\0b": 1}


@command("unsendable")
def unsendable(args, ctx):
    """A result of a type no transport carries."""
    return {"s": {1, 2}}


@command("deadline")
def deadline(args, ctx):
    """The call's deadline and the clock it is on, as the handler sees them."""
    return {"deadline_ns": ctx.deadline_ns, "now_ns": time.monotonic_ns(),
            "request_id": ctx.request_id}


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


@command("wait_for_fifo")
def wait_for_fifo(args, ctx):
    """Prints a marker the test waits for, then blocks until the test writes
    a line into the FIFO args["fifo"]."""
    print("BLOCKING", os.getpid(), flush=True)
    with open(args["fifo"], "rb") as f:
        return {"got": f.readline().decode()}


@command("wait_at_gate")
def wait_at_gate(args, ctx):
    """Prints a marker the test counts, then blocks until it takes one byte
    from the FIFO args["gate"] (the test's Gate holds it open and writes a
    byte per call it lets through); returns the worker's pid."""
    print("AT_GATE", os.getpid(), flush=True)
    fd = os.open(args["gate"], os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
    return {"pid": os.getpid()}


_served = 0


@command("next_seq")
def next_seq(args, ctx):
    """How many calls of this command this worker served before this one."""
    global _served
    _served += 1
    return {"seq": _served - 1}


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


# --- payload arena ---------------------------------------------------------

@command("echo_inplace")
def echo_inplace(args, ctx):
    """Echoes the payload through a block from ctx.alloc_output (no copy back)."""
    out = ctx.alloc_output(len(ctx.payload))
    out[:] = ctx.payload
    return out


@command("numpy_double")
def numpy_double(args, ctx):
    """Doubles an array into the output block, written in place by numpy."""
    import numpy as np
    dtype = np.dtype(args["dtype"])
    src = np.frombuffer(ctx.payload, dtype=dtype)
    out = ctx.alloc_output(src.nbytes)
    dst = np.frombuffer(out, dtype=dtype)
    np.multiply(src, 2, out=dst, casting="unsafe")
    return {"n": int(src.size), "src_writeable": bool(src.flags.writeable)}


@command("numpy_double_copy")
def numpy_double_copy(args, ctx):
    """Returns a new numpy array: copied once into shared memory."""
    import numpy as np
    return np.frombuffer(ctx.payload, dtype=np.dtype(args["dtype"])) * 2


KEPT_VIEW = None


@command("keep_view")
def keep_view(args, ctx):
    """Keeps a numpy view of the payload past the call (pins the block)."""
    global KEPT_VIEW
    import numpy as np
    KEPT_VIEW = np.frombuffer(ctx.payload, dtype=np.uint8)
    return {"n": int(KEPT_VIEW.size)}


@command("read_kept")
def read_kept(args, ctx):
    return {"sum": int(KEPT_VIEW.sum()), "first": int(KEPT_VIEW[0]), "n": int(KEPT_VIEW.size)}


@command("drop_kept")
def drop_kept(args, ctx):
    global KEPT_VIEW
    KEPT_VIEW = None
    return {}


KEPT_OUTPUT = None


@command("keep_output")
def keep_output(args, ctx):
    """Returns its output block but keeps a view of it (a numpy array when
    args["numpy"], else the memoryview itself)."""
    global KEPT_OUTPUT
    out = ctx.alloc_output(int(args["n"]))
    out[:] = b"\x05" * len(out)
    if args.get("numpy"):
        import numpy as np
        KEPT_OUTPUT = np.frombuffer(out, dtype=np.uint8)
    else:
        KEPT_OUTPUT = out
    return out


@command("touch_kept")
def touch_kept(args, ctx):
    """Reads the kept payload view or output view; reports a stale-view error."""
    view = KEPT_OUTPUT if args.get("output") else KEPT_BODY if args.get("body") else KEPT_PAYLOAD
    try:
        return {"raised": False, "first": int(view[0])}
    except ValueError as exc:
        return {"raised": True, "message": str(exc)}


KEPT_PAYLOAD = None


KEPT_BODY = None


@command("keep_payload")
def keep_payload(args, ctx):
    """Keeps the ctx.payload and ctx.body memoryviews themselves past the call."""
    global KEPT_PAYLOAD, KEPT_BODY
    KEPT_PAYLOAD = ctx.payload
    KEPT_BODY = ctx.body
    return {}


@command("drop_output")
def drop_output(args, ctx):
    global KEPT_OUTPUT, KEPT_PAYLOAD, KEPT_BODY
    KEPT_OUTPUT = None
    KEPT_PAYLOAD = None
    KEPT_BODY = None
    return {}


@command("alloc_output")
def alloc_output(args, ctx):
    """Allocates an output block of n bytes and returns {"n": n} (block = payload)."""
    n = int(args["n"])
    ctx.alloc_output(n)
    return {"n": n}


@command("alloc_and_die")
def alloc_and_die(args, ctx):
    ctx.alloc_output(int(args["n"]))
    os._exit(3)


@command("alloc_and_fail")
def alloc_and_fail(args, ctx):
    ctx.alloc_output(int(args["n"]))
    raise RuntimeError("failed after allocating")


def _mallinfo2():
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


@command("malloc_probe")
def malloc_probe(args, ctx):
    """Whether glibc serves an allocation of `bytes` by mmap (hblks grows)
    or from the heap: reads back the worker's malloc settings."""
    libc = _mallinfo2()
    before = libc.mallinfo2().hblks
    p = libc.malloc(int(args["bytes"]))
    mapped = libc.mallinfo2().hblks > before
    libc.free(p)
    return {"mmapped": bool(mapped),
            "env_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_")}


@command("heap_churn")
def heap_churn(args, ctx):
    """Allocates `count` buffers of `bytes`, touches them, frees them all."""
    bufs = [bytearray(int(args["bytes"])) for _ in range(int(args["count"]))]
    return {"held": sum(len(b) for b in bufs)}


# ---- streams and cancellation (async_test.cc) ----


@command("count_stream")
def count_stream(args, ctx):
    """Yields {"i": k} for k < args["n"]; prints "YIELDING k" before each
    item, raises at item args["fail_at"] if given, and prints "FINALLY
    <tag>" when the generator ends in any way (cancelled included)."""
    n = int(args.get("n", 10))
    fail_at = int(args.get("fail_at", -1))
    tag = args.get("tag", "")
    try:
        for k in range(n):
            if k == fail_at:
                raise ValueError("failed at item %d" % k)
            print("YIELDING", tag, k, flush=True)
            yield {"i": k}
    finally:
        print("FINALLY", tag, flush=True)


@command("chunk_stream")
def chunk_stream(args, ctx):
    """Yields args["n"] numpy arrays of args["size"] bytes, chunk k filled with k % 251."""
    import numpy as np

    size = int(args.get("size", 1 << 20))
    for k in range(int(args.get("n", 4))):
        print("YIELDING", k, flush=True)
        yield np.full(size, k % 251, dtype=np.uint8)


@command("send_stream")
def send_stream(args, ctx):
    """Sends args["n"] items with ctx.send, then returns a last one."""
    for k in range(int(args.get("n", 3))):
        ctx.send({"i": k})
    return {"i": "last"}


@command("crash_stream")
def crash_stream(args, ctx):
    """Yields args["n"] items, then the worker dies."""
    for k in range(int(args.get("n", 3))):
        yield {"i": k}
    os._exit(9)


@command("until_cancelled")
def until_cancelled(args, ctx):
    """Prints "RUNNING", then polls ctx.cancelled (cooperative); returns
    how it ended."""
    print("RUNNING", os.getpid(), flush=True)
    while not ctx.cancelled:
        time.sleep(0.001)
    print("STOPPED", os.getpid(), flush=True)
    return {"cancelled": True}


@command("ignore_cancel")
def ignore_cancel(args, ctx):
    """Prints "RUNNING", then never returns (not cooperative)."""
    print("RUNNING", os.getpid(), flush=True)
    while True:
        time.sleep(3600)


@command("generator_plain")
def generator_plain(args, ctx):
    yield {"i": 0}
