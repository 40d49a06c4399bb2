"""A progress line while a LoadGen test runs: samples completed, current rate, expected end.

Written to the terminal only (the file descriptor the runner had before its stdout.txt tee, so
neither stdout.txt nor LoadGen's logs see it). `tick()` runs on the runner's main thread, which only
waits while StartTest blocks a helper thread: it reads the SUT's counters (`completed`, `issued`,
`flushed`, `first_issue`) and never touches the measured path. On a terminal the line is redrawn
in place every `every_s` seconds (1 s); elsewhere (a pipe, a log file) a full line is written every
60 s, so a long run is never silent.

Expected end: once LoadGen has issued everything (`flushed`; at once for Offline) it is now plus
the outstanding samples at the current rate; before that LoadGen keeps issuing until min duration,
so it is the later of the first issue + min duration and the backlog's end. An accuracy run issues
every QSL sample once (`total`), however long that takes (a Server accuracy run at 2.5 QPS over
11,205 samples: 75 min): its end is now plus the samples not yet done at the current rate.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

WINDOW_S = 10.0  # the current rate is measured over the last WINDOW_S seconds
QUIET_S = 2.0  # a redrawn line is cleared this long before the expected end: LoadGen's summary,
# printed from its own thread the moment the test ends, must not start on the progress line


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Progress of one test, drawn on `fd` (None: nothing is drawn)."""

    def __init__(
        self,
        sut: Any,
        min_duration_s: float,
        fd: int | None,
        every_s: float | None = None,
        total: int | None = None,
    ):
        self.sut, self.min_duration_s, self.fd, self.total = sut, min_duration_s, fd, total
        self.interactive = fd is not None and os.isatty(fd)
        self.every_s = every_s if every_s is not None else (1.0 if self.interactive else 60.0)
        self._seen: deque[tuple[float, int]] = deque()
        self._last_draw: float | None = None
        self._drawn = False
        self.remaining_s: float | None = None

    def line(self, now: float) -> str | None:
        """The progress text at time.monotonic() `now`, or None before the first query (sets
        `self.remaining_s`, the seconds to the expected end, None when not known)."""
        sut = self.sut
        if sut.first_issue is None:
            return None
        done, outstanding = sut.completed, sut.issued - sut.completed
        self._seen.append((now, done))
        while len(self._seen) > 2 and now - self._seen[1][0] >= WINDOW_S:
            self._seen.popleft()
        t0, d0 = self._seen[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        if rate <= 0:
            elapsed = now - sut.first_issue
            rate = done / elapsed if elapsed > 0 else 0.0
        backlog_end = now + outstanding / rate if rate > 0 else None
        if self.total is not None:  # an accuracy run: every sample, at the current rate
            end = now + (self.total - done) / rate if rate > 0 else None
        elif sut.flushed:
            end = backlog_end
        else:
            end = max(sut.first_issue + self.min_duration_s, backlog_end or 0.0)
        self.remaining_s = None if end is None else end - now
        eta = (
            f"ends in about {_duration(end - now)} "
            f"({time.strftime('%H:%M:%S', time.localtime(time.time() + end - now))})"
            if end is not None
            else "end not known yet"
        )
        return f"progress: {done:,} samples done, {rate:,.1f}/s, {eta}"

    def tick(self, now: float | None = None) -> None:
        """Draw the line when it is due (call often; it draws at most every `every_s`)."""
        if self.fd is None:
            return
        if self.sut.flushed and self.sut.issued == self.sut.completed:
            self.close()  # the test is ending: LoadGen prints its summary next
            return
        now = time.monotonic() if now is None else now
        if self._last_draw is not None and now - self._last_draw < self.every_s:
            return
        text = self.line(now)
        if text is None:
            return
        if self._last_draw is None and not self.interactive:
            self._last_draw = now  # a pipe: the first line after every_s, not at once
            return
        self._last_draw = now
        if self.interactive and self.remaining_s is not None and self.remaining_s < QUIET_S:
            self.close()
        elif self.interactive:
            self._write(f"\r{text}\033[K")
            self._drawn = True
        else:
            self._write(text + "\n")

    def close(self) -> None:
        """Clear the redrawn line, so LoadGen's summary starts on a clean line."""
        if self._drawn:
            self._write("\r\033[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        try:
            os.write(self.fd, text.encode())
        except OSError:
            self.fd = None  # the terminal went away: stay quiet
