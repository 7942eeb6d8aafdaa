"""Logging helpers: one logger name for the package, and a gate for messages that could repeat per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LOGGER_NAME = "inference"


class EveryInterval:
    """Lets a repeated event through at most once per `interval_s`; says how many it held back meanwhile.

    A failing dependency would otherwise write one log line per request: thousands a second under load.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held_back = 0

    def allow(self) -> int | None:
        """None when the event should stay quiet; otherwise the number of events held back since the last one."""
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._held_back += 1
                return None
            held_back, self._held_back = self._held_back, 0
            self._next = now + self.interval_s
            return held_back
