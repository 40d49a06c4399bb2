"""SIGINT / SIGTERM during `python -m harness run`: the first signal ends the run cleanly, a second
one at once.

`SignalGate` installs handlers on the main thread (Python runs signal handlers there only; the
runner therefore keeps the main thread free while LoadGen's StartTest blocks a helper thread):
  * first signal while the LoadGen test runs: `on_signal(signum)` (the runner makes the SUT complete
    everything outstanding and every later query at once, with empty responses), and the test ends;
  * first signal at any other time (preparing, scoring): `Interrupted` is raised in the main thread,
    so preparation unwinds and the runner records the interruption;
  * second signal: `last_words(code)` (best effort), then `os._exit(128 + signum)` at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from common.exit_codes import interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt: `except Exception` lets it pass
    """Raised in the main thread by the first signal outside the LoadGen test."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return interrupted(self.signum)


class SignalGate:
    """SIGINT/SIGTERM handlers for one run (see the module doc). `signum`/`at`: the first signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at: float | None = None  # time.monotonic() of the first signal
        self.last_words: Callable[[int], None] | None = None
        self._on_signal: Callable[[int], None] | None = None
        self._saved: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int | None:
        return interrupted(self.signum) if self.signum else None

    def install(self) -> bool:
        """Install the handlers; False (and nothing installed) off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return True

    def reclaim(self) -> None:
        """Install the handlers again over whatever a library put in their place since `install()`
        (ray.init installs Ray's own SIGTERM handler in the driver, which ends the process at once:
        no results.json, no clean stop of the actors). The handlers saved by `install()` stay."""
        if self._saved and threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    @contextmanager
    def during(self, on_signal: Callable[[int], None]) -> Iterator[None]:
        """While the block runs, a first signal calls `on_signal(signum)` instead of raising."""
        self._on_signal = on_signal
        try:
            yield
        finally:
            self._on_signal = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: leave now
            code = interrupted(signum)
            try:
                if self.last_words is not None:
                    self.last_words(code)
            finally:
                os._exit(code)
        self.signum, self.at = signum, time.monotonic()
        if self._on_signal is not None:
            self._on_signal(signum)
            return
        raise Interrupted(signum)
