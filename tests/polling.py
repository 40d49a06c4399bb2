"""Waiting on something another process or thread does: poll a condition, never a fixed sleep.

The timeout is a guard against a hang, not a bound on speed: it is generous (minutes) so that a busy
2-core machine never fails a test that would pass on an idle one.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

GUARD_S = 300.0


def wait_for(
    condition: Callable[[], object],
    what: str,
    alive: subprocess.Popen | None = None,
    timeout: float = GUARD_S,
    every: float = 0.05,
) -> None:
    """Return once `condition()` is true; fail if `alive` (a process the condition waits on) exits
    first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and alive.poll() is not None:
            out = alive.communicate()
            raise AssertionError(f"the process exited ({alive.returncode}) before {what}: {out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(every)
