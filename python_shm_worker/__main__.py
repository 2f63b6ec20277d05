"""Worker entry point: ``python3 -m python_shm_worker --help``."""

from __future__ import annotations

import argparse
import os
import sys

from . import builtins as _builtins  # noqa: F401  (registers ping/echo/ack/info)
from .registry import Output, handlers, load_handler_module


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python3 -m python_shm_worker",
        description="A shmpool Python worker. Normally started by the C++ host "
        "(shmpool::Worker / shmpool::Pool), which passes these flags.")
    p.add_argument("--transport", choices=["shm", "pipe-json", "zmq-ipc"], default="shm",
                   help="shm: serve a slot of a shared-memory pool; pipe-json: "
                   "length-prefixed JSON on stdin/stdout (baseline); zmq-ipc: the same "
                   "envelope over a ZeroMQ REP socket (benchmark peer, needs python3-zmq)")
    p.add_argument("--endpoint", help="ZeroMQ endpoint to bind, for --transport zmq-ipc "
                   "(e.g. ipc:///tmp/w.sock)")
    p.add_argument("--pool", help="pool (segment) name, for --transport shm")
    p.add_argument("--slot", type=int, default=0, help="slot index in the pool")
    p.add_argument("--owner-pid", type=int, default=0,
                   help="exit as soon as this process (the host) exits")
    p.add_argument("--handlers", action="append", default=[],
                   help="handler module to import (dotted name or path to .py); repeatable")
    p.add_argument("--wait-strategy", choices=["spin", "hybrid", "block"], default="hybrid")
    p.add_argument("--spin-ns", type=int, default=50_000,
                   help="hybrid: how long to poll for a request before sleeping")
    return p.parse_args(argv)


def _exit_with_owner(owner_pid: int) -> None:
    """Exits this process as soon as `owner_pid` does (a thread waits on its pidfd)."""
    import os
    import select
    import threading
    try:
        fd = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        os._exit(0)

    def wait() -> None:
        select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=wait, daemon=True).start()


def main(argv=None) -> int:
    args = parse_args(argv)
    for spec in args.handlers:
        load_handler_module(spec)
    info = _builtins.worker_info()
    if args.transport == "pipe-json":
        from . import pipe_json
        pipe_json.serve(info)
        return 0
    if args.transport == "zmq-ipc":
        if not args.endpoint:
            print("--endpoint is required with --transport zmq-ipc", file=sys.stderr)
            return 2
        from . import zmq_ipc
        if args.owner_pid:
            _exit_with_owner(args.owner_pid)
        zmq_ipc.serve(args.endpoint, info)
        return 0
    if not args.pool:
        print("--pool is required with --transport shm", file=sys.stderr)
        return 2
    # Forward print() output line by line to the host's log callback.
    sys.stdout.reconfigure(line_buffering=True)
    from . import _native
    worker = _native.ShmWorker(args.pool, args.slot, args.owner_pid, args.wait_strategy,
                               args.spin_ns)
    worker.serve(handlers(), info, Output)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        os._exit(130)
