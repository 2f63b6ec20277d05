"""pytest: the python_shm_worker package on its own (run from ctest)."""

import base64
import json
import os
import struct
import subprocess
import sys

import pytest

import python_shm_worker
from python_shm_worker import Output, command, handlers

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_HANDLERS = os.path.join(HERE, "..", "handlers", "test_handlers.py")


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "python_shm_worker", "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert "--transport" in out.stdout and "pipe-json" in out.stdout


def test_command_decorator_registers_and_validates():
    @command("pytest_add")
    def add(args, ctx):
        return args["a"] + args["b"]

    assert handlers()["pytest_add"] is add
    with pytest.raises(ValueError):
        command("__reserved")
    with pytest.raises(ValueError):
        command("")


def test_native_core_is_built_next_to_the_package():
    from python_shm_worker import _native
    assert isinstance(_native.layout_version(), int) and _native.layout_version() >= 1
    assert hasattr(_native, "ShmWorker")


def test_output_holds_value_and_payload():
    o = Output({"a": 1}, b"xy")
    assert o.value == {"a": 1} and o.payload == b"xy"
    assert python_shm_worker.__version__


class PipeWorker:
    """Speaks the pipe-json protocol to a real worker process."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "python_shm_worker", "--transport", "pipe-json",
             "--handlers", TEST_HANDLERS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.hello = self.read()

    def read(self):
        header = self.proc.stdout.read(4)
        assert len(header) == 4, self.proc.stderr.read().decode()
        (n,) = struct.unpack(">I", header)
        return json.loads(self.proc.stdout.read(n))

    def call(self, rid, command_name, args=None, payload=None):
        req = {"id": rid, "command": command_name, "args": args or {}}
        if payload is not None:
            req["payload"] = base64.b64encode(payload).decode()
        data = json.dumps(req).encode()
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.call(999, "__shutdown__")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def pipe_worker():
    w = PipeWorker()
    yield w
    w.close()


def test_pipe_json_hello_and_ping(pipe_worker):
    assert pipe_worker.hello["result"]["pid"] == pipe_worker.proc.pid
    r = pipe_worker.call(1, "ping")
    assert r == {"id": 1, "status": "ok", "result": {"pong": True}}


def test_pipe_json_bytes_travel_as_base64(pipe_worker):
    r = pipe_worker.call(2, "types", {"b": {"__bytes__": base64.b64encode(b"\x00\xff").decode()}})
    assert base64.b64decode(r["result"]["b"]["__bytes__"]) == b"\x00\xff"
    r = pipe_worker.call(3, "echo", {}, payload=b"abc")
    assert base64.b64decode(r["payload"]) == b"abc"


def test_pipe_json_errors_are_structured(pipe_worker):
    r = pipe_worker.call(4, "fail", {"message": "nope"})
    assert r["status"] == "error"
    assert r["error"]["category"] == "handler_error"
    assert r["error"]["context"]["exception_type"] == "ValueError"
    assert "Traceback" in r["error"]["context"]["traceback"]
    r = pipe_worker.call(5, "missing")
    assert r["error"]["type"] == "unknown_command"


def test_pipe_json_print_goes_to_stderr_not_the_protocol(pipe_worker):
    r = pipe_worker.call(6, "noisy", {"tag": 1})
    assert r == {"id": 6, "status": "ok", "result": {"ok": True}}
    assert pipe_worker.call(7, "ping")["result"] == {"pong": True}


def test_package_ships_type_stubs():
    pkg = os.path.dirname(python_shm_worker.__file__)
    for name in ("__init__.pyi", "_native.pyi", "py.typed"):
        assert os.path.exists(os.path.join(pkg, name)), name
