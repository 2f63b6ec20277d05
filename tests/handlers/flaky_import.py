"""A handler module whose import fails for some worker starts: start n
(counted in the file $FLAKY_COUNTER, from 0) fails when
$FLAKY_FAIL_FROM <= n < $FLAKY_FAIL_UNTIL. For the test that a transient
startup failure does not leave the pool failing fast for good."""

import os

from python_shm_worker import command

_path = os.environ["FLAKY_COUNTER"]
try:
    with open(_path) as f:
        START = int(f.read() or 0)
except FileNotFoundError:
    START = 0
with open(_path, "w") as f:
    f.write(str(START + 1))
if int(os.environ["FLAKY_FAIL_FROM"]) <= START < int(os.environ["FLAKY_FAIL_UNTIL"]):
    raise ImportError(f"flaky_import: start {START} fails on purpose")


@command("which_start")
def which_start(args, ctx):
    return {"start": START}
