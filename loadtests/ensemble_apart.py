"""What running the intent ensemble as its own service costs a caller: ensemble answers through the intent front
with the ensemble in the front's worker (`local`) and at its own server's URL (two process groups, as two
Deployments), then the front's classic fallback with the ensemble's server stopped.

    python -m loadtests.ensemble_apart --requests 400 --concurrency 1 8

Each server runs one worker, the result cache off and new texts on every request (so the models answer). Clients
are closed-loop asyncio tasks with their own keep-alive connection, asking for the ensemble by header. Prints one
row per configuration and concurrency: requests, answers by the ensemble, fallbacks, QPS, P50/P95/P99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np

from loadtests.bench import SERVE, Target, running

CLASSIFY = "/api/classify"
BASE_ENV = (("INFERENCE_FAMILIES", '["intent"]'), ("INFERENCE_WORKERS", "1"), ("CACHE_URL", "none://"))
# The ensemble's pods' command (k8s/units/ensemble): BentoML's start command for one service of the Bento.
ALONE = [
    sys.executable,
    "-m",
    "bentoml_cli._internal.start",
    "start-http-server",
    "--service-name",
    "intent-ensemble",
    "service:Inference",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
]


async def drive(url: str, concurrency: int, total: int, first: int) -> dict[str, float]:
    latencies: list[float] = []
    variants: dict[str, int] = {}
    errors = 0
    per_client = max(1, total // concurrency)

    async def client(offset: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for i in range(per_client):
                text = f"cheap flights to city {first + offset * per_client + i} next week"
                started = time.perf_counter()
                try:
                    response = await http.post(
                        CLASSIFY, json={"text": text}, headers={"X-Model-Preference": "ensemble"}
                    )
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                    continue
                answer = response.json()
                key = "fallback" if answer["fallback"] else answer["variant"]
                variants[key] = variants.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + errors,
        "ensemble": variants.get("ensemble", 0),
        "fallback": variants.get("fallback", 0),
        "errors": errors,
        "qps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


@contextlib.contextmanager
def front(work: Path, ensemble_at: str) -> Iterator[str]:
    target = Target(
        f"intent front, ensemble {ensemble_at}",
        SERVE,
        "/readyz",
        env=(*BASE_ENV, ("INFERENCE_ENSEMBLE_SERVICE", ensemble_at)),
    )
    with running(target, work) as (url, _, _):
        yield url


def measure(label: str, url: str, args: argparse.Namespace, counter: list[int]) -> None:
    asyncio.run(drive(url, 1, 50, counter[0]))  # warm-up: connections, the batchers' first calls
    counter[0] += 100
    for concurrency in args.concurrency:
        row = asyncio.run(drive(url, concurrency, args.requests, counter[0]))
        counter[0] += args.requests + concurrency
        print(
            f"| {label} | {concurrency} | {row['requests']:.0f} | {row['ensemble']:.0f} | {row['fallback']:.0f} "
            f"| {row['errors']:.0f} | {row['qps']:.0f} | {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} |",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per configuration and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    counter = [0]  # texts never repeat across the runs
    print("| ensemble | clients | requests | by the ensemble | fallbacks | errors | QPS | P50 ms | P95 ms | P99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ensemble-apart-") as scratch:
        work = Path(scratch)
        with front(work, "local") as url:
            measure("in the front's worker", url, args, counter)
        ensemble = Target(
            "the ensemble alone", ALONE, "/readyz", env=(*BASE_ENV, ("INFERENCE_ENSEMBLE_SERVICE", "apart"))
        )
        with running(ensemble, work) as (ensemble_url, ensemble_process, _), front(work, ensemble_url) as url:
            measure("its own server", url, args, counter)
            os.killpg(ensemble_process.pid, signal.SIGTERM)  # its supervisor and workers
            ensemble_process.wait(20)
            measure("its own server, stopped", url, args, counter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
