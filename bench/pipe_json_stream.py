"""shmpool_bench's pipe-JSON peer of the stream cases: the frames of the
pipe + JSON baseline (python_shm_worker/pipe_json.py: a 4-byte big-endian
length and UTF-8 JSON, bytes as base64, a hello with id 0 first), where one
request is answered by one frame per item and an end frame:

    {"id": N, "command": "items", "args": {"n": n}}
        {"id": N, "status": "ok", "result": {"i": k, "name": "item"}}       per item
    {"id": N, "command": "chunks", "args": {"n": n, "size": size}}
        {"id": N, "status": "ok", "result": {"i": k}, "payload": "<base64>"}  per chunk
    then {"id": N, "status": "ok", "end": true}

The items come from stream_handlers.py's generators, as over shm and gRPC.
Started by bench/pipe_json_stream.cc on a pipe pair (our stdin and stdout):
    python3 pipe_json_stream.py --owner-pid PID
It exits when stdin closes, or when the --owner-pid process does.
"""

import argparse
import base64
import json
import os
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--owner-pid", type=int, default=0, help="exit as soon as this process does")
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stream_handlers
    from python_shm_worker.__main__ import _exit_with_owner
    from python_shm_worker.pipe_json import _error, _read_exact, _send

    if args.owner_pid:
        _exit_with_owner(args.owner_pid)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # print() must not touch the protocol stream
    inp = sys.stdin.buffer
    _send(out, {"id": 0, "status": "ok", "result": {"pid": os.getpid()}})
    while (header := _read_exact(inp, 4)) is not None:
        raw = _read_exact(inp, int.from_bytes(header, "big"))
        if raw is None:
            break
        req = json.loads(raw)
        rid, cmd, a = req.get("id", 0), req.get("command"), req.get("args") or {}
        if cmd == "items":
            for item in stream_handlers.stream_items_gen(a["n"]):
                _send(out, {"id": rid, "status": "ok", "result": item})
        elif cmd == "chunks":
            for k, chunk in enumerate(stream_handlers.stream_chunks_gen(a["n"], a["size"])):
                _send(out, {"id": rid, "status": "ok", "result": {"i": k},
                            "payload": base64.b64encode(chunk).decode("ascii")})
        else:
            _send(out, _error(rid, "handler_error", "unknown_command",
                              f"no stream named '{cmd}'", command=str(cmd)))
            continue
        _send(out, {"id": rid, "status": "ok", "end": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
