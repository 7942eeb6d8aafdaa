"""Progress of a long command (training, an import, a batch run, retention): a bar on a terminal, plain lines
anywhere else.

On a terminal (stderr is a TTY) a rich bar redraws in place. In CI, a file or a Kubernetes Job's log a redrawn bar
is noise, so the same counts come out as plain lines instead: done/total, rate and ETA, at most one line per
interval (an interval of 0: one line per step, for commands of a few slow steps). The command line decides which
(`on_terminal`); the code doing the work only calls `advance`."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TextIO

from inference.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

# The progress a command line shows, for code it calls but cannot hand it to: the store's steps of an import,
# which every family's importer reaches through functions that take no progress argument.
CURRENT_PROGRESS: ContextVar[Progress | None] = ContextVar("current_progress", default=None)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress shows as a bar: `stream` (stderr by default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


class Progress:
    """Plain progress lines through `emit` (default: the `inference` logger), at most one per `interval_s`.

    `total` may be unknown (None): the lines then give the count and the time elapsed. It may also be learnt late
    (`set_total`), as a trainer learns how many models it trains once it has read its data."""

    def __init__(
        self,
        *,
        total: int | None,
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

    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, count: int = 1, *, extra: str = "") -> None:
        """`count` more done; `extra` says what (the last model trained, the assessments written so far)."""
        self.done += count
        self.extra = extra
        now = self._clock()
        if now >= self._next:
            self._next = now + self.interval_s
            self._emit(self.line())

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        extra = f", {self.extra}" if self.extra else ""
        if self.total is None:
            return f"{self.done:,} {self.unit}{extra}, {format_duration(elapsed)} elapsed"
        rate = self.done / elapsed
        total = max(self.total, self.done)  # the pending count can grow while a run goes
        share = self.done / total if total else 1.0
        eta = format_duration((total - self.done) / rate) if rate > 0 else "unknown"
        return f"{self.done:,}/{total:,} {self.unit} ({share:.1%}){extra}, {_rate(rate)} {self.unit}/s, ETA {eta}"

    def close(self) -> None:
        """Nothing to end for plain lines; a bar stops redrawing."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class ProgressBar(Progress):
    """A rich bar on `stream` (stderr by default), redrawn in place, for a terminal. While it shows, what is written
    to `sys.stderr` (log lines through `inference.logs.StderrHandler`) is printed above it; stdout is left alone, so
    what a command prints there stays there."""

    def __init__(self, *, total: int | None, unit: str, description: str, stream: TextIO | None = None) -> None:
        # Imported here: rich costs ~50 ms to import, which plain lines (a Job's log) have no use for.
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        super().__init__(total=total, unit=unit, interval_s=0.0, emit=_ignore)
        self._bar = RichProgress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit, markup=False),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[extra]}", markup=False),
            console=Console(file=sys.stderr if stream is None else stream),
            redirect_stdout=False,
        )
        self._task = self._bar.add_task(description, total=total, extra="")
        self._bar.start()

    def set_total(self, total: int) -> None:
        super().set_total(total)
        self._bar.update(self._task, total=total)

    def advance(self, count: int = 1, *, extra: str = "") -> None:
        self.done += count
        self.extra = extra
        total = None if self.total is None else max(self.total, self.done)
        self._bar.update(self._task, completed=self.done, total=total, extra=extra)

    def close(self) -> None:
        self._bar.stop()


def progress_for(
    *, description: str, total: int | None, unit: str, interval_s: float, bar: bool, emit: Callable[[str], None]
) -> Progress:
    """A bar (`bar`: the command runs on a terminal, `on_terminal()`), else plain lines through `emit`."""
    if bar:
        return ProgressBar(total=total, unit=unit, description=description)
    return Progress(total=total, unit=unit, interval_s=interval_s, emit=emit)


def quiet_progress() -> Progress:
    """A progress nobody is shown: for work called without one (a test, a library caller)."""
    return Progress(total=None, unit="", interval_s=math.inf, emit=_ignore)


@contextmanager
def current(progress: Progress) -> Iterator[Progress]:
    """`progress` as the one `advance_current` advances, for the duration of the block."""
    token = CURRENT_PROGRESS.set(progress)
    try:
        yield progress
    finally:
        CURRENT_PROGRESS.reset(token)


def advance_current(count: int = 1, *, extra: str = "") -> None:
    """Advance the progress the command line shows (`current`), if it shows one."""
    progress = CURRENT_PROGRESS.get()
    if progress is not None:
        progress.advance(count, extra=extra)


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2g}"


def _ignore(line: str) -> None:
    pass
