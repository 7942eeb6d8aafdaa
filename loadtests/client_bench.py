"""What a Python client costs per call, and what client-side batching buys, against a running server.

    python -m loadtests.client_bench                       # starts a server of its own (skills only), ~1 min
    python -m loadtests.client_bench --url http://127.0.0.1:3000 --calls 2000 --rounds 10

Sequential single skill calls through: httpx with a kept-alive connection (the floor),
and `inference.client.InferenceClient` (httpx underneath, plus validation into the service's models). (BentoML's
own `SyncHTTPClient` calls `@bentoml.api` methods only, which the scoring routes no longer are.) The clients take turns in blocks of `calls / rounds` calls, the order reversed every other
round, so that a drift of the machine or the server touches them all alike; each gets the same payloads (a server
given with --url should have its result cache off, or the later clients of a round get cached answers). Reported:
P50/P95 per call over all rounds, and the median over rounds of each client's P50 minus the floor's in that round.
Then 200 concurrent single calls through `AsyncInferenceClient` (max_connections=64) without and with
`batch_window_ms`: wall time and the number of HTTP requests that went out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from train.data.students import generate_students

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def items(n: int) -> list[dict]:
    sample = generate_students(n, seed=5)
    return [
        {"student_id": student_id, "skill": "communication", "features": features}
        for student_id, features in zip(sample.student_ids, sample.feature_dicts(), strict=True)
    ]


FLOOR = "httpx, kept-alive connection (floor)"
BATCHING_MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p95_ms: float
    over_floor_p50_ms: float  # median over rounds of (this client's P50 - the floor's P50) in the same round


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def timed(call: Callable[[dict], object], payloads: list[dict]) -> list[float]:
    samples = []
    for payload in payloads:
        started = time.perf_counter()
        call(payload)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def interleaved(clients: dict[str, Callable[[dict], object]], payloads: list[dict], rounds: int) -> dict[str, Figures]:
    """Each client in turn for a block of payloads, `rounds` times, the order reversed every other round."""
    for call in clients.values():  # warm-up: connections, caches of the server's own
        timed(call, payloads[:50])
    block = max(1, len(payloads) // rounds)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    round_p50: dict[str, list[float]] = {name: [] for name in clients}
    for index in range(rounds):
        order = list(clients) if index % 2 == 0 else list(reversed(clients))
        chunk = payloads[index * block : (index + 1) * block]
        for name in order:
            taken = timed(clients[name], chunk)
            samples[name] += taken
            round_p50[name].append(statistics.median(taken))
    figures = {}
    for name in clients:
        p50, p95 = percentiles(samples[name])
        over = statistics.median(mine - floor for mine, floor in zip(round_p50[name], round_p50[FLOOR], strict=True))
        figures[name] = Figures(p50, p95, over)
    return figures


def sequential(url: str, calls: int, rounds: int) -> dict[str, Figures]:
    from inference.client import InferenceClient

    payloads = items(calls)
    with (
        httpx.Client(base_url=url, timeout=10) as raw,
        InferenceClient(url) as client,
    ):
        clients: dict[str, Callable[[dict], object]] = {
            FLOOR: lambda p: raw.post("/api/v1/skills/infer", json=p).raise_for_status(),
            "inference.client.InferenceClient": lambda p: client.infer_skill(
                p["student_id"], p["skill"], p["features"]
            ),
        }
        return interleaved(clients, payloads, rounds)


async def concurrent(url: str, calls: int, window_ms: float | None) -> tuple[float, int]:
    from inference.client import AsyncInferenceClient

    class Counting(httpx.AsyncHTTPTransport):
        requests = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            Counting.requests += 1
            return await super().handle_async_request(request)

    payloads = items(calls)
    # A transport given to the client brings its own pool: the client's max_connections does not reach it.
    pool = httpx.Limits(max_connections=BATCHING_MAX_CONNECTIONS, max_keepalive_connections=BATCHING_MAX_CONNECTIONS)
    transport = Counting(limits=pool)
    async with AsyncInferenceClient(url, batch_window_ms=window_ms, transport=transport) as client:
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
    parser.add_argument("--calls", type=int, default=1000, help="calls per client, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with server(args.url) as url:
        print(
            f"sequential single skill calls ({args.calls} per client after 50 to warm up, in {args.rounds} rounds "
            "of alternating blocks), ms per call:"
        )
        print("| client | P50 | P95 | P50 over the floor (median of rounds) |\n|---|---|---|---|")
        for name, figures in sequential(url, args.calls, args.rounds).items():
            print(f"| {name} | {figures.p50_ms:.2f} | {figures.p95_ms:.2f} | {figures.over_floor_p50_ms:+.2f} |")
        print(
            f"\n200 concurrent single calls through AsyncInferenceClient (max_connections={BATCHING_MAX_CONNECTIONS}):"
        )
        print("| batching | wall time ms | HTTP requests |\n|---|---|---|")
        for window in (None, 5.0):
            wall, requests = asyncio.run(concurrent(url, 200, window))
            label = "off" if window is None else f"batch_window_ms={window:g}"
            print(f"| {label} | {wall:.0f} | {requests} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
