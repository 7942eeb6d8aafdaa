"""Batch scoring of the student population: `python -m inference.batch COMMAND`.

    python -m inference.batch score                              # full run: every student, every served skill
    python -m inference.batch score --mode incremental           # only students whose features changed
    python -m inference.batch score --shard 2/4                  # one of 4 workers (a Kubernetes Indexed Job)
    python -m inference.batch runs                               # the latest runs and their figures

The database is DATABASE_URL (a SQLite file beside the model store by default); the models are the pinned
versions of the served skills in the model store (models.env: INFERENCE_SKILLS, INFERENCE_SKILLS_VERSION), the
same the service answers with. Students are read from `student_features`, one column per feature of those models
(demo students: `python -m train.data.population`).
Exit status: 0 done, 1 failed (rerun to resume), 2 bad arguments, 3 interrupted by a signal (rerun to resume),
4 another run of the shard is in progress.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

import sqlalchemy.exc
from sqlalchemy import Engine

from inference.batch.database import BatchDatabase
from inference.cli import positive_int
from inference.errors import InferenceError, RunInProgress
from inference.logs import StderrHandler
from inference.progress import on_terminal
from inference.settings import Settings, pins_file
from inference.sharding import EVERYONE, Shard
from inference.storage import INTERRUPTED

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_IN_PROGRESS = 1, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    settings = Settings(_env_file=pins_file())
    parser = _parser(settings)
    args = parser.parse_args(argv)
    # To stderr as it is at each line: while a progress bar shows, it prints them above itself.
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s", handlers=[StderrHandler()], force=True
    )
    try:
        return int(args.command(args, settings))
    except InferenceError as err:
        logging.getLogger("inference").error("%s", err.message)
    except sqlalchemy.exc.OperationalError as err:
        logging.getLogger("inference").error("cannot reach the database: %s", err.orig or err)
    return EXIT_FAILED


def score(args: argparse.Namespace, settings: Settings) -> int:
    from inference.batch.chunks import served_feature_names
    from inference.batch.scorer import BatchScorer, RunOptions
    from inference.families.skills.family import pinned_skill_models

    options = RunOptions(
        mode=args.mode,
        shard=args.shard,
        chunk_size=args.chunk_size,
        retries=settings.batch_retries,
        retry_backoff_s=settings.batch_retry_backoff_s,
        progress_interval_s=settings.batch_progress_interval_s,
        progress_bar=on_terminal(),
        restart=args.restart,
        lookback_s=settings.batch_lookback_s,
    )
    engine = _engine(args, settings)  # first: an unreachable database is reported as such, before model loading
    models = pinned_skill_models(settings)
    database = BatchDatabase(engine, served_feature_names(models))
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        summary = BatchScorer(database, models, options, stop=stop).run()
    except RunInProgress as err:
        logging.getLogger("inference").error("%s", err.message)
        return EXIT_IN_PROGRESS
    except Exception:
        return EXIT_FAILED  # logged by the scorer with where a rerun resumes
    if summary.status == INTERRUPTED:
        logging.getLogger("inference").warning("stopped by a signal; a rerun resumes where this run stopped")
        return EXIT_INTERRUPTED
    return 0


def runs(args: argparse.Namespace, settings: Settings) -> int:
    database = BatchDatabase(_engine(args, settings), ())
    header = ("run", "mode", "shard", "status", "started", "read", "written", "unchanged", "failed", "s", "students/s")
    lines = [header]
    for run in database.recent_runs(args.limit):
        lines.append(
            (
                str(run.run_id) + (f"<{run.resumed_from}" if run.resumed_from else ""),
                run.mode,
                f"{run.shard_index}/{run.shard_count}",
                run.status,
                f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                f"{run.students_read:,}",
                f"{run.assessments_written:,}",
                f"{run.assessments_unchanged:,}",
                f"{run.items_failed:,}",
                "" if run.duration_s is None else f"{run.duration_s:.1f}",
                "" if run.students_per_s is None else f"{run.students_per_s:,.0f}",
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _engine(args: argparse.Namespace, settings: Settings) -> Engine:
    from inference.storage import engine_for

    # Its own statement timeout: a chunk's bulk upsert takes seconds, far beyond the service's bound on a call.
    return engine_for(
        args.database_url or settings.database_url, statement_timeout_s=settings.batch_statement_timeout_s
    )


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM (Kubernetes stopping the pod) or Ctrl-C: finish the chunk in hand, record the run, exit 3."""

    def request_stop(signum: int, _: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logging.getLogger("inference").warning("%s: stopping after the current chunk", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.batch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def with_database(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("--database-url", help="SQLAlchemy URL (default: DATABASE_URL, else a SQLite file)")
        return command

    scoring = with_database(commands.add_parser("score", help="score pending students for every served skill"))
    scoring.add_argument(
        "--mode",
        choices=("full", "incremental"),
        default="full",
        help="full: every student; incremental: students whose features changed since they were last scored",
    )
    scoring.add_argument(
        "--shard",
        type=_shard,
        default=EVERYONE,
        help="INDEX/COUNT: this worker's share of the students, e.g. 2/4 (default 0/1: everyone)",
    )
    scoring.add_argument(
        "--chunk-size",
        type=positive_int,
        default=settings.batch_chunk_size,
        help=f"students per read, score and commit (INFERENCE_BATCH_CHUNK_SIZE, {settings.batch_chunk_size})",
    )
    scoring.add_argument(
        "--restart", action="store_true", help="do not resume an unfinished run; start from the first student"
    )
    scoring.set_defaults(command=score)

    listing = with_database(commands.add_parser("runs", help="list the latest scoring runs"))
    listing.add_argument("--limit", type=positive_int, default=10, help="how many runs (10)")
    listing.set_defaults(command=runs)
    return parser


if __name__ == "__main__":
    sys.exit(main())
