# Private native core of python_shm_worker. Not a public API.
from typing import Any, Dict

# The native Context implements the public Context protocol.
from python_shm_worker import Context as Context

class ShmWorker:
    def __init__(self, pool: str, slot: int, owner_pid: int, wait_strategy: str, spin_ns: int) -> None: ...
    def serve(self, handlers: Dict[str, Any], info: Dict[str, Any], output_type: Any) -> None: ...

def layout_version() -> int: ...
