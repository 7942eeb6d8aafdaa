"""What a Python client costs per call, and what client-side batching buys, against a running server.

    python -m loadtests.client_bench                       # starts a server of its own (skills only), ~1 min
    python -m loadtests.client_bench --url http://127.0.0.1:3000 --calls 2000

Sequential single skill calls, one after the other, through: httpx with a kept-alive connection (the floor),
`inference.client.InferenceClient` (httpx underneath, plus validation into the service's models), and BentoML's
own `SyncHTTPClient`; P50/P95 per call. Then 200 concurrent single calls through `AsyncInferenceClient` without
and with `batch_window_ms`: wall time and the number of HTTP requests that went out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from inference.synthetic import generate_students

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def items(n: int) -> list[dict]:
    sample = generate_students(n, seed=5)
    return [
        {"student_id": student_id, "skill": "communication", "features": features}
        for student_id, features in zip(sample.student_ids, sample.feature_dicts(), strict=True)
    ]


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def timed(call: Callable[[dict], object], payloads: list[dict]) -> tuple[float, float]:
    for payload in payloads[:50]:  # warm-up: connections, caches of the server's own
        call(payload)
    samples = []
    for payload in payloads:
        started = time.perf_counter()
        call(payload)
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def sequential(url: str, calls: int) -> dict[str, tuple[float, float]]:
    import bentoml

    from inference.client import InferenceClient

    payloads = items(calls)
    results = {}
    with httpx.Client(base_url=url, timeout=10) as raw:
        results["httpx, kept-alive connection (floor)"] = timed(
            lambda p: raw.post("/api/v1/skills/infer", json=p).raise_for_status(), payloads
        )
    with InferenceClient(url) as client:
        results["inference.client.InferenceClient"] = timed(
            lambda p: client.infer_skill(p["student_id"], p["skill"], p["features"]), payloads
        )
    with bentoml.SyncHTTPClient(url, server_ready_timeout=30) as bento:
        # The route takes the request body whole (a positional-only model): passed as one argument.
        results["bentoml.SyncHTTPClient"] = timed(lambda p: bento.call("skills_infer", p), payloads)
    return results


async def concurrent(url: str, calls: int, window_ms: float | None) -> tuple[float, int]:
    from inference.client import AsyncInferenceClient

    class Counting(httpx.AsyncHTTPTransport):
        requests = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            Counting.requests += 1
            return await super().handle_async_request(request)

    payloads = items(calls)
    transport = Counting()
    async with AsyncInferenceClient(url, batch_window_ms=window_ms, transport=transport, max_connections=64) as client:
        await asyncio.gather(*(client.infer_skill(p["student_id"], p["skill"], p["features"]) for p in payloads[:20]))
        Counting.requests = 0
        started = time.perf_counter()
        await asyncio.gather(*(client.infer_skill(p["student_id"], p["skill"], p["features"]) for p in payloads))
        return (time.perf_counter() - started) * 1000, Counting.requests


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.utils.servers import start_server

    with start_server(
        PROJECT_ROOT / "loadtests" / "results" / "client-bench-logs",
        env={"INFERENCE_FAMILIES": '["skills"]', "CACHE_URL": "none://"},
    ) as running:
        yield running.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start one, skills only, cache off)")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args(argv)
    with server(args.url) as url:
        print(f"sequential single skill calls ({args.calls} after 50 to warm up), ms per call:")
        print("| client | P50 | P95 |\n|---|---|---|")
        for name, (p50, p95) in sequential(url, args.calls).items():
            print(f"| {name} | {p50:.2f} | {p95:.2f} |")
        print("\n200 concurrent single calls through AsyncInferenceClient:")
        print("| batching | wall time ms | HTTP requests |\n|---|---|---|")
        for window in (None, 5.0):
            wall, requests = asyncio.run(concurrent(url, 200, window))
            label = "off" if window is None else f"batch_window_ms={window:g}"
            print(f"| {label} | {wall:.0f} | {requests} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
