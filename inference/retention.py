"""Retention: `python -m inference.retention` deletes the rows the service stored longer ago than the settings keep
them, table by table, a batch of rows per transaction.

    python -m inference.retention                    # delete what is older than each table's retention
    python -m inference.retention --dry-run          # count it, delete nothing
    python -m inference.retention --batch-size 5000  # rows per transaction (default 10,000)

| table | time column | kept for (days) |
|---|---|---|
| predictions | predicted_at | INFERENCE_PREDICTIONS_RETENTION_DAYS (90) |
| rejected_rows | rejected_at | INFERENCE_PREDICTIONS_RETENTION_DAYS |
| labelled_feedback | received_at | INFERENCE_FEEDBACK_RETENTION_DAYS (365) |
| teacher_ratings | received_at | INFERENCE_RATINGS_RETENTION_DAYS (730) |

0 days keeps a table's rows forever. Ratings go by when the service received them, not by `rated_at`: that is the
teacher's date, sent by the caller (a school may post last year's ratings today), while the retention counts how
long the service has held what it was given.

Each batch is a transaction of its own, on a range of ids: a big deletion never holds a table's locks or its
write-ahead log for long, and a run stopped half-way (a signal, a lost connection) keeps the batches it committed;
the next run deletes the rest. The database is DATABASE_URL (a SQLite file beside the model store by default).
Exit status: 0 done, 1 failed (the database), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from sqlalchemy import Column, Engine, Table, delete, func, select

from inference.batch.progress import Progress
from inference.cli import positive_int
from inference.settings import Settings, pins_file
from inference.storage import labelled_feedback, predictions, rejected_rows, teacher_ratings

EXIT_FAILED = 1
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class Retention:
    """The rows of `table` whose `column` is older than the setting `setting` (days) says are deleted."""

    table: Table
    column: Column[datetime]
    setting: str

    def days(self, settings: Settings) -> float:
        return float(getattr(settings, self.setting))

    @property
    def variable(self) -> str:
        return f"INFERENCE_{self.setting.upper()}"


RETENTIONS = (
    Retention(predictions, predictions.c.predicted_at, "predictions_retention_days"),
    # Set aside by the prediction log's writer, mostly: they go with the predictions.
    Retention(rejected_rows, rejected_rows.c.rejected_at, "predictions_retention_days"),
    Retention(labelled_feedback, labelled_feedback.c.received_at, "feedback_retention_days"),
    Retention(teacher_ratings, teacher_ratings.c.received_at, "ratings_retention_days"),
)


@dataclass(frozen=True)
class Summary:
    table: str
    variable: str  # the setting of its retention
    days: float
    cutoff: datetime | None  # None: kept forever
    rows: int  # deleted, or (dry run) to delete
    transactions: int
    seconds: float

    def line(self, *, dry_run: bool) -> str:
        if self.cutoff is None:
            return f"{self.table}: kept forever ({self.variable}=0)"
        what = "would delete" if dry_run else "deleted"
        batches = "" if dry_run else f" in {self.transactions} transaction{'s' * (self.transactions != 1)}"
        return (
            f"{self.table}: {what} {self.rows:,} rows older than {self.days:g} days (before "
            f"{self.cutoff.isoformat(timespec='seconds')}){batches}, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Expired:
    """The rows of a table older than a cutoff: how many, and the range of ids they span (0, 0 when none)."""

    rows: int
    lowest_id: int
    highest_id: int


def find_expired(engine: Engine, table: Table, column: Column[datetime], cutoff: datetime) -> Expired:
    with engine.connect() as connection:
        rows, lowest, highest = connection.execute(
            select(func.count(), func.min(table.c.id), func.max(table.c.id)).where(column < cutoff)
        ).one()
    return Expired(int(rows), int(lowest or 0), int(highest or 0))


def delete_expired(
    engine: Engine,
    table: Table,
    column: Column[datetime],
    cutoff: datetime,
    found: Expired,
    *,
    batch_size: int,
    on_batch: Callable[[int], None] = lambda deleted: None,
) -> tuple[int, int]:
    """Delete the rows `found` (those of `table` whose `column` is before `cutoff`) in transactions of at most
    `batch_size` rows: each takes the next `batch_size` ids of their range (through the primary key, never a scan
    of the table) and deletes the expired ones among them. Returns (rows deleted, transactions)."""
    deleted = transactions = 0
    if not found.rows:
        return 0, 0
    # Ids grow with the time rows were stored at, so the expired rows hold the lowest ids; the time condition stays
    # on each batch, so a newer row with an id in the range is never deleted.
    for first in range(found.lowest_id, found.highest_id + 1, batch_size):
        last = min(first + batch_size - 1, found.highest_id)
        with engine.begin() as connection:
            result = connection.execute(delete(table).where(table.c.id >= first, table.c.id <= last, column < cutoff))
        transactions += 1
        deleted += result.rowcount
        on_batch(result.rowcount)
    return deleted, transactions


def apply_retention(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress_interval_s: float = 10.0,
    emit: Callable[[str], None] = print,
) -> list[Summary]:
    """Every table's retention, one table after the other: progress lines while a table's rows go (at most one per
    `progress_interval_s`), then its summary line, through `emit`."""
    now = now or datetime.now(UTC)
    summaries = []
    for retention in RETENTIONS:
        summary = _apply(retention, engine, settings, now, batch_size, dry_run, progress_interval_s, emit)
        emit(summary.line(dry_run=dry_run))
        summaries.append(summary)
    return summaries


def _apply(
    retention: Retention,
    engine: Engine,
    settings: Settings,
    now: datetime,
    batch_size: int,
    dry_run: bool,
    progress_interval_s: float,
    emit: Callable[[str], None],
) -> Summary:
    name, days, started = retention.table.name, retention.days(settings), time.monotonic()
    if days <= 0:
        return Summary(name, retention.variable, days, None, 0, 0, 0.0)
    cutoff = now - timedelta(days=days)
    found = find_expired(engine, retention.table, retention.column, cutoff)
    if dry_run:
        return Summary(name, retention.variable, days, cutoff, found.rows, 0, time.monotonic() - started)
    progress = Progress(
        total=found.rows, unit="rows", interval_s=progress_interval_s, emit=lambda line: emit(f"{name}: {line}")
    )
    rows, transactions = delete_expired(
        engine, retention.table, retention.column, cutoff, found, batch_size=batch_size, on_batch=progress.advance
    )
    return Summary(name, retention.variable, days, cutoff, rows, transactions, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    settings = Settings(_env_file=pins_file())
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True
    )
    from inference.storage import engine_for

    url = args.database_url or settings.database_url
    try:
        # A count over a large table without an index on its time column may outlast the service's statement
        # timeout: the job has the batch scorer's.
        engine = engine_for(url, statement_timeout_s=settings.batch_statement_timeout_s)
        apply_retention(
            engine,
            settings,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            progress_interval_s=settings.batch_progress_interval_s,
        )
    except sqlalchemy.exc.SQLAlchemyError as err:
        logging.getLogger("inference").error("retention stopped, the database failed: %s", getattr(err, "orig", err))
        return EXIT_FAILED
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.retention", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: DATABASE_URL, else a SQLite file)")
    parser.add_argument("--dry-run", action="store_true", help="count the rows to delete per table, delete nothing")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per transaction ({DEFAULT_BATCH_SIZE:,})",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
