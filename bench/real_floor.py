"""The compute floor of BM_Real: a real_handlers function called in a loop
inside this one Python process, on the bytes of FILE, no IPC at all.

    python3 real_floor.py WORK FILE REPS

Prints one JSON line: p50/p99 compute us, median minor faults per call and
what the result must be (for the benchmark to check the transports). The
benchmark runs it twice, with glibc's malloc defaults and with the settings
a pool gives its workers (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_)."""

import json
import sys
import zlib

from real_handlers import WORK, timed

name, path, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = memoryview(open(path, "rb").read())
fn = WORK[name]
fn(data)  # warm-up, as the benchmark's first call
# Each result is dropped before the next call, as a handler's is after its
# reply (keeping them all would fault in fresh memory on every call).
us, faults = [], []
for _ in range(reps):
    out, t, f = timed(fn, data)
    us.append(t)
    faults.append(f)
us.sort()
faults.sort()
check = {"rfft": lambda o: {"dc": float(o[0].real)},
         "sha256": lambda o: {"digest": o.hex()},
         "zlib": lambda o: {"bytes": len(o), "crc": zlib.crc32(o)}}[name](out)
print(json.dumps({"p50_us": us[len(us) // 2], "p99_us": us[min(len(us) - 1, len(us) * 99 // 100)],
                  "faults": faults[len(faults) // 2], **check}))
