"""A handler module that fails to import (startup_failed test)."""
import module_that_does_not_exist_anywhere  # noqa: F401
