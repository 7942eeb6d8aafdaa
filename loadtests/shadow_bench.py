"""Does a shadow delay the answers? The same server (skills family, result cache off) without a shadow and with
a shadow version scoring every request, each driven the same way; latency as the client sees it.

    .venv/bin/python -m loadtests.shadow_bench [--requests 1000] [--shadow-version v1.1.0]

Needs skills v1.0.0 and the shadow version in the model store ($BENTOML_HOME), e.g.
`python -m train skills --version v1.1.0 --seed 11 && python import_models.py artifacts/skills/v1.1.0`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.bench import SERVE, Target, running
from loadtests.latency import request_bodies


def sequential_ms(url: str, bodies: list[dict], requests: int) -> list[float]:
    timings = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for body in bodies[:50]:
            http.post("/api/v1/skills/infer", json=body)
        for index in range(requests):
            started = time.perf_counter()
            response = http.post("/api/v1/skills/infer", json=bodies[index % len(bodies)])
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return timings


async def concurrent_rps(url: str, bodies: list[dict], requests: int, clients: int = 16) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        queue = list(range(requests))

        async def client() -> None:
            while queue:
                index = queue.pop()
                (await http.post("/api/v1/skills/infer", json=bodies[index % len(bodies)])).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return requests / (time.perf_counter() - started)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[int(share * 100) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--shadow-version", default="v1.1.0")
    args = parser.parse_args(argv)
    bodies = request_bodies(500, seed=3)
    base = (("INFERENCE_FAMILIES", '["skills"]'), ("INFERENCE_SKILLS_VERSION", "v1.0.0"), ("CACHE_URL", "none://"))
    shadow = json.dumps({"skills": args.shadow_version})
    setups = [
        ("no shadow", Target("no shadow", SERVE, "/readyz", env=base)),
        (
            f"shadow {args.shadow_version} on every request",
            Target(
                "shadow", SERVE, "/readyz", env=(*base, ("INFERENCE_SHADOW", shadow), ("INFERENCE_SHADOW_SHARE", "1"))
            ),
        ),
    ]
    print("| server | P50 ms | P95 ms | 16 clients, req/s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as work:
        for name, target in setups:
            with running(target, Path(work)) as (url, _, _):
                timings = sequential_ms(url, bodies, args.requests)
                rps = asyncio.run(concurrent_rps(url, bodies, args.requests))
            print(f"| {name} | {percentile(timings, 0.5):.2f} | {percentile(timings, 0.95):.2f} | {rps:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
