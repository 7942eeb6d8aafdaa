"""Memory of the in-process result cache over many distinct students: does a worker's RSS stay bounded?

    .venv/bin/python -m loadtests.cache_memory                       # 1,000,000 distinct keys, ~2-3 minutes
    .venv/bin/python -m loadtests.cache_memory --keys 200000 --max-entries 20000

A `bentoml serve` of the skills family with one worker and the `memory://` cache of `--max-entries` answers
(INFERENCE_CACHE_MAX_ENTRIES) gets `--keys` skill requests, each for a student it has never seen, in batches of
1000 through `/api/v1/skills/infer/batch`: every answer is a new cache entry (and, before the cache's student
index was pruned with its entries, a new index entry that was never freed). The worker's RSS is printed before
the first key and after every tenth of them: it should rise while the cache fills to its bound and then stay flat.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from loadtests.bench import SERVE, Target, running
from loadtests.latency import request_bodies

BATCH = 1000


def worker_rss_mib(server: psutil.Process) -> float:
    """RSS of the one worker process (the largest child of the supervisor), in MiB."""
    children = server.children(recursive=True)
    return max(child.memory_info().rss for child in children) / 2**20


def batch_body(template: list[dict[str, object]], first_student: int) -> bytes:
    items = [{**item, "student_id": f"mem-{first_student + n}"} for n, item in enumerate(template)]
    return json.dumps({"items": items}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct students sent (default 1,000,000)")
    parser.add_argument("--max-entries", type=int, default=100_000, help="INFERENCE_CACHE_MAX_ENTRIES (default)")
    parser.add_argument("--connections", type=int, default=2, help="concurrent batch requests (default 2)")
    args = parser.parse_args(argv)
    if args.keys % BATCH:
        parser.error(f"--keys must be a multiple of {BATCH}")

    template = request_bodies(BATCH, seed=7)
    target = Target(
        "skills, one worker, memory cache",
        SERVE,
        "/readyz",
        env=(
            ("INFERENCE_FAMILIES", '["skills"]'),
            ("INFERENCE_WORKERS", "1"),
            ("CACHE_URL", "memory://"),
            ("INFERENCE_CACHE_MAX_ENTRIES", str(args.max_entries)),
            ("INFERENCE_CACHE_TTL_S", "86400"),
        ),
    )
    batches = args.keys // BATCH
    checkpoints = {max(1, round(batches * tenth / 10)) for tenth in range(1, 11)}
    rows: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="cache-memory-") as work, running(target, Path(work)) as (url, server, _):
        rows.append((0, worker_rss_mib(server)))
        print(f"{0:>10,} keys  worker RSS {rows[-1][1]:7.1f} MiB", flush=True)
        with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(args.connections) as pool:

            def send(index: int) -> None:
                answer = client.post(
                    "/api/v1/skills/infer/batch",
                    content=batch_body(template, index * BATCH),
                    headers={"Content-Type": "application/json"},
                )
                answer.raise_for_status()
                if answer.json()["failed"]:
                    raise RuntimeError(f"batch {index}: {answer.json()['failed']} items failed")

            for done, _ in enumerate(pool.map(send, range(batches)), start=1):
                if done in checkpoints:
                    rows.append((done * BATCH, worker_rss_mib(server)))
                    print(f"{done * BATCH:>10,} keys  worker RSS {rows[-1][1]:7.1f} MiB", flush=True)

    at_bound = min(rows, key=lambda row: abs(row[0] - args.max_entries) if row[0] >= args.max_entries else 1e18)
    print()
    print(f"| distinct keys | worker RSS (MiB) |  (cache bound {args.max_entries:,} entries)")
    print("|---:|---:|")
    for keys, rss in rows:
        print(f"| {keys:,} | {rss:.1f} |")
    print(
        f"\nRSS before: {rows[0][1]:.1f} MiB; at {at_bound[0]:,} keys (cache full): {at_bound[1]:.1f} MiB; "
        f"after {rows[-1][0]:,} keys: {rows[-1][1]:.1f} MiB "
        f"({rows[-1][1] - at_bound[1]:+.1f} MiB after the cache was full)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
