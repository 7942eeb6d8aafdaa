"""Batch scoring benchmark: a full run of N students x the served skills (the 7 demo skills) into PostgreSQL and
SQLite, end to end, against the pure in-process scoring time of the same rows.

    python -m loadtests.batch_bench                          # 1,000,000 students, PostgreSQL then SQLite (~5 min)
    python -m loadtests.batch_bench --students 200000 --databases postgresql

For each database: a fresh database (PostgreSQL: a throwaway database on --postgres; SQLite: a file in a temporary
directory), load the demo population (`python -m train.data.population`), then time `python -m inference.batch
score` as a process (interpreter start, model loading and all), a second full run over unchanged data (writes
nothing), an incremental run after 5% of the students changed, and an incremental run over unchanged data (the
runs' lookback is 5 s: they follow each other within seconds, where nightly runs are a day apart). The pure scoring time is `score_chunk` over the
same rows, already in memory, in the same chunks, with nothing else running. Models are the pinned versions of the
served skills in the model store (models.env; `make serve` imports them).
Results are printed and written to loadtests/results/batch-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "loadtests" / "results"
CHANGED_SHARE = 0.05
LOOKBACK_S = 5.0  # INFERENCE_BATCH_LOOKBACK_S of the runs, unless set in the environment


@contextmanager
def postgres_database(admin: str) -> Iterator[str]:
    import psycopg

    name = f"inference_batch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    params = dict(part.split("=", 1) for part in admin.split())
    try:
        yield f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as directory:
        yield f"sqlite:///{directory}/bench.db"


def batch(*args: str, database_url: str, module: str = "inference.batch") -> tuple[float, str]:
    """Run `python -m MODULE ARGS`; its wall time and output. Fails loudly on a non-zero exit."""
    # The runs follow each other within seconds here, a night apart in production: a lookback of an hour would make
    # every incremental run look at every student stamped during the benchmark, which is all of them.
    env = {
        "INFERENCE_BATCH_LOOKBACK_S": str(LOOKBACK_S),
        **os.environ,
        "DATABASE_URL": database_url,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}")
    return elapsed, run.stdout + run.stderr


def populate(*args: str, database_url: str) -> float:
    """Demo students into student_features (`python -m train.data.population ARGS`); its wall time."""
    elapsed, _ = batch(*args, database_url=database_url, module="train.data.population")
    return elapsed


def last_run(database_url: str) -> dict[str, float]:
    """The scorer's own figures of its latest run, from `scoring_runs`."""
    from inference.batch.database import BatchDatabase, RunRecord
    from inference.storage import engine_for

    engine = engine_for(database_url)
    try:
        (run,) = BatchDatabase(engine, ()).recent_runs(1)
    finally:
        engine.dispose()
    if run.status != "succeeded":
        raise RuntimeError(f"run {run.run_id} ended {run.status}: {run.error}")
    return {
        "run_s": run.duration_s,
        "in_run_scoring_s": run.scoring_s,
        "students_read": run.students_read,
        "skills": len(RunRecord.from_row(run).model_versions),
    }


def pure_scoring_seconds(database_url: str, chunk_size: int) -> float:
    """score_chunk over every student, read into memory first (not timed), chunk by chunk as a run does."""
    from inference.batch.chunks import score_chunk, served_feature_names
    from inference.batch.database import BatchDatabase
    from inference.families.skills.family import pinned_skill_models
    from inference.settings import Settings
    from inference.sharding import EVERYONE
    from inference.storage import engine_for

    engine = engine_for(database_url)
    models = pinned_skill_models(Settings())
    database = BatchDatabase(engine, served_feature_names(models))
    chunks, after = [], None
    while True:
        chunk = database.read_chunk(mode="full", shard=EVERYONE, after=after, limit=chunk_size)
        if not len(chunk):
            break
        chunks.append(chunk)
        after = chunk.student_ids[-1]
    engine.dispose()
    started = time.perf_counter()
    for chunk in chunks:
        score_chunk(chunk, models)
    return time.perf_counter() - started


def bench_database(kind: str, database_url: str, students: int, chunk_size: int) -> dict[str, Any]:
    print(f"{kind}: generating {students:,} students", flush=True)
    generate_s = populate("--students", str(students), database_url=database_url)
    print(f"{kind}: full run", flush=True)
    chunking = ("--chunk-size", str(chunk_size))
    full_s, _ = batch("score", *chunking, database_url=database_url)
    full = last_run(database_url)
    print(f"{kind}: full run over unchanged data", flush=True)
    rerun_s, _ = batch("score", *chunking, database_url=database_url)
    rerun = last_run(database_url)
    populate("--students", str(students), "--seed", "8", "--share", str(CHANGED_SHARE), database_url=database_url)
    print(f"{kind}: incremental run after {CHANGED_SHARE:.0%} changed", flush=True)
    incremental_s, _ = batch("score", "--mode", "incremental", *chunking, database_url=database_url)
    incremental = last_run(database_url)
    print(f"{kind}: incremental run over unchanged data", flush=True)
    incremental_again_s, _ = batch("score", "--mode", "incremental", *chunking, database_url=database_url)
    incremental_again = last_run(database_url)
    print(f"{kind}: pure in-process scoring of the same rows", flush=True)
    pure_s = pure_scoring_seconds(database_url, chunk_size)
    return {
        "database": kind,
        "students": students,
        "skills": full["skills"],
        "assessments": students * full["skills"],
        "generate_s": round(generate_s, 1),
        "full_process_s": round(full_s, 1),
        "full_run_s": round(full["run_s"], 2),
        "full_in_run_scoring_s": full["in_run_scoring_s"],
        "pure_scoring_s": round(pure_s, 2),
        "ratio_full_process_to_pure_scoring": round(full_s / pure_s, 2),
        "students_per_s": round(students / full["run_s"]),
        "incremental_students_read": incremental["students_read"],
        "unchanged_rerun_process_s": round(rerun_s, 1),
        "unchanged_rerun_run_s": round(rerun["run_s"], 2),
        "incremental_process_s": round(incremental_s, 1),
        "incremental_run_s": round(incremental["run_s"], 2),
        "unchanged_incremental_students_read": incremental_again["students_read"],
        "unchanged_incremental_process_s": round(incremental_again_s, 1),
        "unchanged_incremental_run_s": round(incremental_again["run_s"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--databases", nargs="+", choices=("postgresql", "sqlite"), default=["postgresql", "sqlite"])
    parser.add_argument(
        "--postgres", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres", help="admin connection"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: loadtests/results/)")
    args = parser.parse_args(argv)
    results = []
    for kind in args.databases:
        context = postgres_database(args.postgres) if kind == "postgresql" else sqlite_database()
        with context as url:
            results.append(bench_database(kind, url, args.students, args.chunk_size))
    print()
    print(
        "| database | students x skills | full run, process (run) | pure scoring | ratio | full rerun, unchanged | "
        f"incremental ({CHANGED_SHARE:.0%} changed), process (run) | incremental, unchanged, process (run) | "
        "students/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result['database']} | {result['students']:,} x {result['skills']} | {result['full_process_s']} s "
            f"({result['full_run_s']} s) | {result['pure_scoring_s']} s | "
            f"{result['ratio_full_process_to_pure_scoring']}x | {result['unchanged_rerun_process_s']} s | "
            f"{result['incremental_process_s']} s ({result['incremental_run_s']} s) | "
            f"{result['unchanged_incremental_process_s']} s ({result['unchanged_incremental_run_s']} s) | "
            f"{result['students_per_s']:,} |"
        )
    out = args.out or RESULTS / f"batch-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
