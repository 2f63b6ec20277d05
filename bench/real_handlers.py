"""Real workloads for shmpool_bench's BM_Real: the same functions run by a
pool worker (shm), a pipe-JSON worker, a ZeroMQ worker and, for the compute
floor, in a loop inside one plain Python process (real_floor.py).

Each handler times its own compute (perf_counter) and counts the minor page
faults it caused (getrusage), and returns both with its result, so the
benchmark can tell the transport's cost from the handler's."""

import hashlib
import resource
import time
import zlib

import numpy as np

from python_shm_worker import Output, command


def rfft(data):
    return np.fft.rfft(np.frombuffer(data, dtype=np.float64))


def sha256(data):
    return hashlib.sha256(data).digest()


def zlib_level1(data):
    return zlib.compress(data, 1)


WORK = {"rfft": rfft, "sha256": sha256, "zlib": zlib_level1}


def timed(fn, data):
    """(result, compute us, minor faults) of fn(data)."""
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    out = fn(data)
    t1 = time.perf_counter()
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return out, (t1 - t0) * 1e6, f1 - f0


@command("real_rfft")
def real_rfft(args, ctx):
    """The spectrum of the payload (float64) as the reply payload (complex128)."""
    spectrum, us, faults = timed(rfft, ctx.payload)
    out = ctx.alloc_output(spectrum.nbytes)
    np.frombuffer(out, dtype=np.complex128)[:] = spectrum
    return Output({"us": us, "faults": faults, "dc": float(spectrum[0].real)}, out)


@command("real_sha256")
def real_sha256(args, ctx):
    digest, us, faults = timed(sha256, ctx.payload)
    return {"us": us, "faults": faults, "digest": digest.hex()}


@command("real_zlib")
def real_zlib(args, ctx):
    packed, us, faults = timed(zlib_level1, ctx.payload)
    return {"us": us, "faults": faults, "bytes": len(packed), "crc": zlib.crc32(packed)}
