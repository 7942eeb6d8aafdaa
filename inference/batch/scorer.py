"""A batch scoring run: every pending student of a shard, every served skill each, into `skill_assessments`.

The run reads students in chunks (student_id order), scores a chunk in-process while the previous one is being
written (one writer thread: PostgreSQL works on the write while Python scores), and commits each chunk with the
run's progress. Transient database errors are retried with backoff; an item the service would reject is recorded
as a failure and the rest go on, and so is a student whose rows the database refuses (set aside, see
`BatchDatabase.write_chunk`). A run that stops early (killed, SIGTERM, a database that stays down) is resumed
by the next run of the same mode and shard, from the last chunk it committed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from inference.batch.chunks import FeatureChunk, ScoredChunk, model_versions, score_chunk, served_feature_names
from inference.batch.database import (
    UNFINISHED,
    BatchDatabase,
    ChunkWrite,
    Mode,
    RunRecord,
)
from inference.errors import InferenceError
from inference.families.skills.scoring import SkillModel
from inference.logs import LOGGER_NAME
from inference.monitoring.writes import is_refused_row
from inference.progress import Progress, format_duration, progress_for
from inference.sharding import EVERYONE, Shard
from inference.storage import FAILED, INTERRUPTED, RUNNING, SUCCEEDED

logger = logging.getLogger(LOGGER_NAME)

T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    mode: Mode = "full"
    shard: Shard = EVERYONE
    chunk_size: int = 20_000
    retries: int = 3  # after the first attempt, for each database call
    retry_backoff_s: float = 1.0  # first wait; doubles per retry, with jitter
    progress_interval_s: float = 10.0
    progress_bar: bool = False  # a bar on stderr (a terminal) rather than a progress line per interval in the log
    restart: bool = False  # ignore an unfinished run's checkpoint and start from the first student
    lookback_s: float = 3600.0  # an incremental run reads students updated since the last finished run less this


@dataclass
class RunSummary:
    run_id: int
    status: str
    mode: Mode
    shard: Shard
    resumed_from: int | None
    students_pending: int
    students_read: int = 0
    assessments_written: int = 0
    assessments_unchanged: int = 0
    items_failed: int = 0
    failures_recorded: int = 0  # failed items new to scoring_failures
    items_refused: int = 0  # of the failed items, those of students whose rows the database refused
    duration_s: float = 0.0
    scoring_s: float = 0.0  # preparing and scoring in-process, the pure compute part of the run
    error: str | None = None

    @property
    def students_per_s(self) -> float:
        return self.students_read / self.duration_s if self.duration_s else 0.0

    @property
    def assessments_per_s(self) -> float:
        return (self.assessments_written + self.assessments_unchanged) / self.duration_s if self.duration_s else 0.0

    def describe(self) -> str:
        ratio = f", {self.duration_s / self.scoring_s:.1f}x the scoring time" if self.scoring_s else ""
        took = f"{self.duration_s:.1f} s" + (f" ({format_duration(self.duration_s)})" if self.duration_s >= 60 else "")
        refused = f" ({self.items_refused:,} refused by the database)" if self.items_refused else ""
        return (
            f"run {self.run_id} {self.status} in {took}: "
            f"{self.students_read:,} students read, {self.assessments_written:,} assessments written, "
            f"{self.assessments_unchanged:,} unchanged, {self.items_failed:,} items failed{refused}; "
            f"{self.students_per_s:,.0f} students/s, {self.assessments_per_s:,.0f} assessments/s; "
            f"in-process scoring {self.scoring_s:.1f} s{ratio}"
        )


class EarlierChunkFailed(Exception):
    """A chunk is not committed after the one before it failed: the run's checkpoint must not pass a gap."""


@dataclass
class _ChunkWrite:
    """A chunk on its way to the database; it commits only after the chunk before it has committed."""

    scored: ScoredChunk | None  # None: the run's starting checkpoint
    after: str | None  # the checkpoint this chunk follows
    previous: _ChunkWrite | None
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False

    @property
    def last_student_id(self) -> str | None:
        return self.scored.last_student_id if self.scored is not None else self.after

    def wait_for_previous(self) -> None:
        if self.previous is None:
            return
        self.previous.done.wait()
        if self.previous.failed:
            raise EarlierChunkFailed("the chunk before this one was not written")
        self.previous = None  # committed: nothing to wait for on a retry, and the chain is not kept alive

    def finished(self, *, failed: bool) -> None:
        self.failed = failed
        self.done.set()


def _expected(error: BaseException) -> bool:
    """Errors whose message says it all (no traceback needed in the log)."""
    return is_transient(error) or isinstance(error, InferenceError | EarlierChunkFailed)


def is_transient(error: BaseException) -> bool:
    """Worth retrying: the connection went away, the server is restarting, a lock or serialisation conflict. Never
    a row the database refuses for its data (`is_refused_row`): that would be refused again."""
    if is_refused_row(error):
        return False
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig if error.orig is not None else error
    if isinstance(error, sqlalchemy.exc.DisconnectionError | sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True  # connection lost, admin shutdown, deadlock, serialisation failure, "connection is closed"
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    return False


class BatchScorer:
    def __init__(
        self,
        database: BatchDatabase,
        models: Mapping[str, SkillModel],
        options: RunOptions,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unread = [name for name in served_feature_names(models) if name not in database.feature_names]
        if unread:
            raise ValueError(
                f"the models use features the database does not read: {unread}; make the BatchDatabase with "
                "served_feature_names(models)"
            )
        self.database = database
        self.models = models
        self.options = options
        self.stop = stop or threading.Event()
        self._clock = clock
        self._since: datetime | None = None  # an incremental run: only students updated after this are read
        self._pending_ids: list[str] | None = None  # their ids, when `_since` is set
        self._ids_read = 0

    def run(self) -> RunSummary:
        """Score the shard's pending students; raises `RunInProgress` when another run holds the shard, and
        whatever stopped the run otherwise (logged, and recorded in `scoring_runs` once the run has a row)."""
        with self.database.shard_lock(self.options.shard):
            try:
                summary, after = self._start()
            except Exception as err:
                logger.error("the run could not start: %s", err, exc_info=not _expected(err))
                raise
            started = self._clock()
            try:
                self._score_all(summary, after)
            except BaseException as err:
                summary.duration_s = self._clock() - started
                summary.status, summary.error = FAILED, f"{type(err).__name__}: {err}"
                self._finish(summary)
                logger.error(
                    "%s; stopped by %s; a rerun resumes after the last chunk committed",
                    summary.describe(),
                    summary.error,
                    exc_info=isinstance(err, Exception) and not _expected(err),
                )
                raise
            summary.duration_s = self._clock() - started
            summary.status = INTERRUPTED if self.stop.is_set() else SUCCEEDED
            self._finish(summary)
            if summary.assessments_written or summary.failures_recorded:
                self._retrying("refreshing the planner's statistics", self.database.refresh_statistics)()
            logger.info("%s", summary.describe())
            if summary.items_failed:
                logger.warning(
                    "run %d: %d items could not be scored; see scoring_failures%s",
                    summary.run_id,
                    summary.items_failed,
                    " (and rejected_rows for students the database refused)" if summary.items_refused else "",
                )
            return summary

    def _start(self) -> tuple[RunSummary, str | None]:
        options, versions = self.options, model_versions(self.models)
        started_at = datetime.now(UTC)  # before anything is read: what changes from now on is the next run's
        previous = self.database.latest_run(mode=options.mode, shard=options.shard)
        resumed = self._resumable(previous)
        after = resumed.last_student_id if resumed else None
        skipped, examples = self._retrying("looking for unreadable time stamps", self.database.unreadable_students)(
            shard=options.shard
        )
        if skipped:
            logger.warning(
                "%d students of shard %s are left out: their updated_at is not a time this tool can read (infinite, "
                "or past the year 9999); fix it to have them scored. First ones: %s",
                skipped,
                options.shard,
                ", ".join(examples),
            )
        if options.mode == "incremental":
            watermark = self._retrying("reading the last finished run", self.database.incremental_since)(options.shard)
            self._since = watermark - timedelta(seconds=options.lookback_s) if watermark is not None else None
        if self._since is not None:
            self._pending_ids = self._retrying("finding the students changed", self.database.pending_since)(
                shard=options.shard, since=self._since
            )
            pending = len(self._pending_ids)
        else:
            pending = self._retrying("counting pending students", self.database.count_pending)(
                mode=options.mode, shard=options.shard, after=after
            )
        run_id = self.database.start_run(
            mode=options.mode,
            shard=options.shard,
            model_versions=versions,
            resumed_from=resumed,
            # Left "running" by a process that is gone: we hold the shard's lock, which died with it.
            abandoned=previous if previous is not None and previous.status == RUNNING else None,
            students_pending=pending,
            students_skipped=skipped,
            started_at=started_at,
        )
        logger.info(
            "run %d started: %s scoring of shard %s, %s students pending%s%s; models %s",
            run_id,
            options.mode,
            options.shard,
            f"{pending:,}",
            f", resuming run {resumed.run_id} after {after!r}" if resumed else "",
            f" (students updated since {self._since:%Y-%m-%d %H:%M:%S} UTC)" if self._since is not None else "",
            ", ".join(sorted(set(versions.values()))),
        )
        resumed_from = resumed.run_id if resumed else None
        return RunSummary(run_id, RUNNING, options.mode, options.shard, resumed_from, pending), after

    def _read_chunk(self, after: str | None) -> FeatureChunk:
        """The next chunk: after `after` among the pending students, or, for an incremental run with a watermark,
        the next ids found at its start that are still there (empty: none left)."""
        if self._pending_ids is None:
            return self._retrying(f"reading students after {after!r}", self.database.read_chunk)(
                mode=self.options.mode, shard=self.options.shard, after=after, limit=self.options.chunk_size
            )
        while True:
            start = self._ids_read
            ids = self._pending_ids[start : start + self.options.chunk_size]
            self._ids_read += len(ids)
            chunk = self._retrying(f"reading students after {after!r}", self.database.read_students)(ids)
            if len(chunk) or not ids:
                return chunk

    def _resumable(self, previous: RunRecord | None) -> RunRecord | None:
        if previous is None or previous.status not in UNFINISHED:
            return None
        if self.options.mode == "incremental":
            # Its pending students are found afresh (what the stopped run committed is no longer pending), and
            # starting after its checkpoint would miss students changed meanwhile before it.
            return None
        if self.options.restart:
            logger.info("run %d (%s) is not resumed: restart requested", previous.run_id, previous.status)
            return None
        if previous.model_versions != model_versions(self.models):
            logger.info(
                "run %d (%s) is not resumed: it scored with other model versions", previous.run_id, previous.status
            )
            return None
        return previous

    def _score_all(self, summary: RunSummary, after: str | None) -> None:
        options = self.options
        progress = progress_for(
            description=f"scoring run {summary.run_id}",
            total=summary.students_pending,
            unit="students",
            interval_s=options.progress_interval_s,
            bar=options.progress_bar,
            emit=logger.info,
        )
        writers = self.database.concurrent_writers
        in_flight: deque[Future[tuple[ScoredChunk, ChunkWrite]]] = deque()
        previous = _ChunkWrite(None, after, None)  # the checkpoint the run starts from, as if just committed
        previous.finished(failed=False)
        with progress, ThreadPoolExecutor(max_workers=writers, thread_name_prefix="batch-writer") as pool:
            try:
                while not self.stop.is_set():
                    chunk = self._read_chunk(after)
                    if not len(chunk):
                        break
                    after = chunk.student_ids[-1]
                    started = self._clock()
                    scored = score_chunk(chunk, self.models)
                    summary.scoring_s += self._clock() - started
                    for failure in scored.failures:
                        logger.warning(
                            "student %s, skill %s: not scored (%s): %s",
                            failure.student_id,
                            failure.skill,
                            failure.code,
                            failure.message,
                        )
                    if len(in_flight) >= writers:
                        self._account(summary, progress, *in_flight.popleft().result())
                    previous = _ChunkWrite(scored, previous.last_student_id, previous)
                    in_flight.append(pool.submit(self._write, previous, summary.run_id))
                while in_flight:
                    self._account(summary, progress, *in_flight.popleft().result())
            except BaseException:
                for write in in_flight:  # count what the writers committed before the run stopped
                    with suppress(Exception):
                        self._account(summary, progress, *write.result())
                raise

    def _write(self, write: _ChunkWrite, run_id: int) -> tuple[ScoredChunk, ChunkWrite]:
        assert write.scored is not None
        ids = write.scored.chunk.student_ids
        what = f"writing {len(ids):,} students ({ids[0]} .. {ids[-1]})"
        try:
            result = self._retrying(what, self.database.write_chunk)(
                write.scored, run_id=run_id, after=write.after, before_commit=write.wait_for_previous
            )
        except BaseException as err:
            write.finished(failed=True)
            if not isinstance(err, EarlierChunkFailed):
                logger.error("%s failed, not retried further: %s", what, err)
            raise
        write.finished(failed=False)
        return write.scored, result

    def _account(self, summary: RunSummary, progress: Progress, scored: ScoredChunk, write: ChunkWrite) -> None:
        summary.students_read += len(scored.chunk)
        summary.assessments_written += write.written
        summary.assessments_unchanged += write.unchanged
        summary.items_failed += write.failed
        summary.failures_recorded += write.failures_recorded
        summary.items_refused += write.refused
        progress.advance(len(scored.chunk), extra=f"{summary.assessments_written:,} assessments written")

    def _finish(self, summary: RunSummary) -> None:
        figures: dict[str, Any] = {
            "duration_s": round(summary.duration_s, 3),
            "scoring_s": round(summary.scoring_s, 3),
            "students_per_s": round(summary.students_per_s, 1),
            "assessments_per_s": round(summary.assessments_per_s, 1),
        }
        try:
            self._retrying("recording the run's end", self.database.finish_run)(
                summary.run_id, status=summary.status, error=summary.error, **figures
            )
        except Exception as err:  # the figures are in the log; the next run finds this one unfinished and resumes
            logger.error("run %d: could not record its end (%s): %s", summary.run_id, summary.status, err)

    def _retrying(self, what: str, function: Callable[..., T]) -> Callable[..., T]:
        options = self.options

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1f s",
                what,
                state.attempt_number,
                options.retries + 1,
                error,
                wait,
            )

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(options.retries + 1),
            wait=wait_exponential_jitter(
                multiplier=options.retry_backoff_s, max=30.0, jitter=options.retry_backoff_s / 2
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        return lambda *args, **kwargs: retrying(function, *args, **kwargs)
