from typing import Any, Callable, Dict, Optional, Protocol

__version__: str

class Context(Protocol):
    """What a handler sees of its call; valid only while the handler runs."""

    @property
    def request_id(self) -> int: ...
    @property
    def deadline_ns(self) -> int:
        """The call's deadline in time.monotonic_ns() nanoseconds (the
        caller's timeout); 0 when the transport carries none (pipe-JSON)."""
    @property
    def session_id(self) -> Optional[str]: ...
    @property
    def command(self) -> str: ...
    @property
    def payload(self) -> memoryview:
        """Read-only view of the request payload. Above 4 KiB it is the
        caller's block in shared memory (no copy); a view kept past the call
        keeps the block alive until the view dies."""
    @property
    def body(self) -> memoryview: ...
    def alloc_output(self, n: int) -> memoryview:
        """A writable n-byte block in shared memory for the reply's payload
        (once per call). Fill it and return it (or a numpy view of it, or
        anything else with the block as the payload): it is handed to the
        caller without a copy. Raises ArenaError (a MemoryError) when the
        arena cannot hold it before the call's deadline. In a stream: once
        per item."""
    @property
    def cancelled(self) -> bool:
        """True once the caller has cancelled the call (Call::cancel,
        Stream::cancel or a dropped Stream): return soon. A handler that
        does not is killed after the pool's cancel grace."""
    @property
    def streaming(self) -> bool:
        """True when the caller takes a stream of items (Pool::stream)."""
    def send(self, item: Any) -> bool:
        """Sends item (a value, bytes, numpy array or Output) as the next
        item of a stream call; waits while the caller's window of unread
        items is full. False (the item dropped) once the call is cancelled."""

Handler = Callable[[Dict[str, Any], Context], Any]

class Output:
    value: Any
    payload: Any
    body: Any
    def __init__(self, value: Any = ..., payload: Any = ..., body: Any = ...) -> None: ...

def command(name: str) -> Callable[[Handler], Handler]: ...
def handlers() -> Dict[str, Handler]: ...
def load_handler_module(spec: str) -> None: ...
