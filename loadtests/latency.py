"""Closed-loop latency of single skills requests at fixed concurrency, against a running server.

    python -m loadtests.latency --url http://127.0.0.1:3000 --concurrency 1 16 --requests 2000

Each client is an asyncio task with its own keep-alive connection that sends the next request as soon as the
previous answer arrives. Students come from the synthetic generator (a fixed population, cycled). Prints one
table row per concurrency: requests, errors, QPS, P50/P95/P99 in milliseconds (client side, loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import numpy as np

from train.data.catalogue import SKILLS
from train.data.students import generate_students

INFER = "/api/v1/skills/infer"


def request_bodies(n: int, seed: int) -> list[dict[str, object]]:
    sample = generate_students(n, seed=seed)
    return [
        {"student_id": student_id, "skill": SKILLS[i % len(SKILLS)], "features": features}
        for i, (student_id, features) in enumerate(zip(sample.student_ids, sample.feature_dicts(), strict=True))
    ]


async def run_level(url: str, concurrency: int, total: int, bodies: list[dict[str, object]]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    per_client = max(1, total // concurrency)

    async def client(offset: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for i in range(per_client):
                body = bodies[(offset * per_client + i) % len(bodies)]
                started = time.perf_counter()
                try:
                    response = await http.post(INFER, json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "qps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


async def main_async(args: argparse.Namespace) -> int:
    bodies = request_bodies(500, seed=args.seed)
    await run_level(args.url, 1, 50, bodies)  # warm-up: connections, code paths
    print("| clients | requests | errors | QPS | P50 ms | P95 ms | P99 ms |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    for concurrency in args.concurrency:
        row = await run_level(args.url, concurrency, args.requests, bodies)
        failed |= row["errors"] > 0
        print(
            f"| {row['concurrency']} | {row['requests']} | {row['errors']} | {row['qps']:.0f} "
            f"| {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} |",
            flush=True,
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--seed", type=int, default=2024)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
