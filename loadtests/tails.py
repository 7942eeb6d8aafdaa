"""What the background work of a worker does to single requests' tail latency, in process (no sockets, no load
generator sharing the cores): sequential skills requests through the whole ASGI stack for `--seconds` each, the
worker's timers running as in a server, per configuration, in turn, `--rounds` times.

    python -m loadtests.tails                 # ~2 min: the prediction log on (as shipped) and off
    python -m loadtests.tails --postgres-url postgresql+psycopg://postgres@127.0.0.1/bench   # and into PostgreSQL
    python -m loadtests.tails --flushes 8     # ~10 s: a flush of 2,000 rows beside a thread that wants the lock

Printed per run: requests, P50, P99, P99.9 and the slowest, in ms. Skills only, the result cache off; needs the
skill models in the model store. `--flushes N`: N flushes of 2,000 prediction-log rows each (SQLite in a temporary
file, and `--postgres-url` if given) in a thread while the main thread sleeps 0.2 ms at a time, as an event loop
waiting for a request would; printed per flush: its wall time and the longest the main thread waited to run again
(the interpreter lock held by the flush).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.stack_cost import child_figures

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = {
    "prediction log on (shipped; SQLite)": {},
    "prediction log off": {"INFERENCE_PREDICTION_LOG_SHARE": "0"},
}


async def _measure(seconds: float) -> dict[str, float]:
    import numpy as np

    from inference.http import paths
    from loadtests.latency import request_bodies
    from loadtests.stack_cost import _call, in_process

    bodies = [json.dumps(body).encode() for body in request_bodies(500, seed=2024)]
    latencies = []
    async with in_process() as app:
        for body in bodies[:200]:
            await _call(app, paths.SKILLS_INFER_ROUTE, body)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await _call(app, paths.SKILLS_INFER_ROUTE, bodies[len(latencies) % len(bodies)])
            latencies.append(time.perf_counter() - started)
    values = np.array(latencies) * 1000
    return {
        "requests": len(values),
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "p999": float(np.percentile(values, 99.9)),
        "max": float(values.max()),
    }


def _flush_waits(url: str, flushes: int) -> None:
    import threading
    from datetime import UTC, datetime

    from inference.monitoring.writes import insert_rows
    from inference.storage import engine_for, metadata, predictions

    engine = engine_for(url)
    metadata.create_all(engine, tables=[predictions])
    now = datetime.now(UTC)
    rows = [
        {"student_id": f"s-{index}", "skill": "leadership", "model_version": "v1", "score": 0.5, "predicted_at": now}
        for index in range(2000)
    ]
    insert_rows(engine, predictions, rows[:10])  # connections and statements warm
    for _ in range(flushes):
        took: list[float] = []
        thread = threading.Thread(target=_timed, args=(took, insert_rows, engine, predictions, rows))
        thread.start()
        longest = 0.0
        while thread.is_alive():
            started = time.perf_counter()
            time.sleep(0.0002)
            longest = max(longest, time.perf_counter() - started - 0.0002)
        thread.join()
        print(f"| {engine.dialect.name} | {took[0] * 1000:.1f} | {longest * 1000:.2f} |", flush=True)


def _timed(took: list[float], function: Any, *args: Any) -> None:
    started = time.perf_counter()
    function(*args)
    took.append(time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12, help="seconds of requests per run (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="configurations run in turn this many times")
    parser.add_argument(
        "--postgres-url",
        help="also run with the prediction log in this PostgreSQL database (SQLAlchemy URL; its tables are created)",
    )
    parser.add_argument("--flushes", type=int, help="measure this many flushes of the prediction log instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flushes:
        sys.path.insert(0, str(PROJECT_ROOT))
        print("| database | flush of 2,000 rows, ms | longest wait of the other thread, ms |")
        print("|---|---|---|")
        with tempfile.TemporaryDirectory(prefix="tails-") as directory:
            for url in [f"sqlite:///{directory}/flushes.db", *([args.postgres_url] if args.postgres_url else [])]:
                _flush_waits(url, args.flushes)
        return 0
    if args.child:
        sys.path.insert(0, str(PROJECT_ROOT))
        print(json.dumps(asyncio.run(_measure(args.seconds))))
        return 0
    print("| round | configuration | requests | P50 ms | P99 ms | P99.9 ms | slowest ms |")
    print("|---|---|---|---|---|---|---|")
    for round_index in range(args.rounds):
        configurations = dict(CONFIGURATIONS)
        if args.postgres_url:
            configurations["prediction log on, PostgreSQL"] = {"DATABASE_URL": args.postgres_url}
        for name, extra in configurations.items():
            env = {**extra, "CACHE_URL": "none://", "INFERENCE_FAMILIES": '["skills"]'}
            row = child_figures("loadtests.tails", ["--seconds", str(args.seconds)], env)
            print(
                f"| {round_index + 1} | {name} | {row['requests']} | {row['p50']:.2f} | {row['p99']:.2f} | "
                f"{row['p999']:.2f} | {row['max']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
