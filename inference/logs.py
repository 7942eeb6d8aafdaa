"""Logging helpers: one logger name for the package, a gate for messages that could repeat per request, the id of
the request being answered on every record, and JSON lines (INFERENCE_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LOGGER_NAME = "inference"
# BentoML's loggers (its access log, `bentoml.access`, among them) write through the handlers of this one.
BENTOML_LOGGER_NAME = "bentoml"
# The id of the request being answered (its X-Request-ID): set by the edge (inference/http/edge.py) for the request's
# duration, so every record logged meanwhile, by this code, BentoML or a library, carries it.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


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


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id`: the id of the request being answered when the record was logged, else None. (It
    takes the place of the attribute of that name BentoML's filter sets, its tracing span id, which no BentoML
    format prints.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`; `request_id`
    when the record was logged while a request was answered (`RequestIdFilter`); `exception` with the traceback
    and `stack` with the stack when it carries them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if isinstance(request_id, str):
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """The service's logging, in a process BentoML configured (a worker, or the supervisor of `bentoml serve`):
    the `inference` logger's level, the request id on every record and, with `json`, JSON lines.

    BentoML configures logging itself in each process it starts (`bentoml._internal.log`): one handler writing to
    stdout, shared by the root logger (where the `inference` logger's records go) and BentoML's own loggers. That
    handler is kept, so lines go where BentoML sends them; it gets the request id filter and, for `json`, the JSON
    formatter. Calling this again changes nothing more."""
    logging.getLogger(LOGGER_NAME).setLevel(level)
    for handler in {*logging.getLogger().handlers, *logging.getLogger(BENTOML_LOGGER_NAME).handlers}:
        if not any(isinstance(each, RequestIdFilter) for each in handler.filters):
            handler.addFilter(RequestIdFilter())
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is at each record, not as it was when the handler was made: a progress bar
    (`inference.progress.ProgressBar`) replaces it while it shows, to print log lines above itself."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr
