"""Progress lines for long runs: done/total, rate and ETA, at most one line per interval (log-friendly: a
Kubernetes Job's log gets a readable line every few seconds, not a redrawn bar)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from inference.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    def __init__(
        self,
        *,
        total: int,
        unit: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.total = total
        self.unit = unit
        self.interval_s = interval_s
        self.done = 0
        self.extra = ""
        self._clock = clock
        self._emit = emit or logger.info
        self._started = clock()
        self._next = self._started + interval_s

    def advance(self, count: int, *, extra: str = "") -> None:
        self.done += count
        self.extra = extra
        now = self._clock()
        if now >= self._next:
            self._next = now + self.interval_s
            self._emit(self.line())

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        total = max(self.total, self.done)  # the pending count can grow while a run goes
        share = self.done / total if total else 1.0
        eta = format_duration((total - self.done) / rate) if rate > 0 else "unknown"
        extra = f", {self.extra}" if self.extra else ""
        return f"{self.done:,}/{total:,} {self.unit} ({share:.1%}){extra}, {rate:,.0f} {self.unit}/s, ETA {eta}"
