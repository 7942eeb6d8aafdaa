"""CPU per request through the service's whole ASGI stack (BentoML's middlewares, routing, validation, the
batcher, the models, serialisation), called in process with no sockets, per server configuration.

    python -m loadtests.stack_cost                 # the shipped configuration and the per-request extras
    python -m loadtests.stack_cost --requests 5000

Each configuration runs in a fresh process (BentoML reads its configuration when service.py is imported), the
configurations in turn, `--rounds` times. Figures are process CPU time (event loop and batch thread) per
request, the minimum over 5 blocks and the rounds: the minimum is what survives a shared machine's noise best. The
server loads the skills family only, with the result cache off, so every request is scored. Needs the skill models
in the model store ($BENTOML_HOME).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = {
    "shipped (no access log, scoring routes not traced)": {},
    # The same, with the skills routes as @bentoml.api methods (BentoML's IO layer) in place of mounted routes.
    "skills routes as @bentoml.api methods": {"STACK_COST_SERVICE": "loadtests.peers.bentoml_api:ApiSkills"},
    "+ access log": {"INFERENCE_ACCESS_LOG": "true"},
    "+ tracing spans on the scoring routes": {"INFERENCE_TRACE_SCORING": "true"},
    "+ both (BentoML's defaults)": {"INFERENCE_ACCESS_LOG": "true", "INFERENCE_TRACE_SCORING": "true"},
}
BLOCKS = 5


async def _call(app, path: str, body: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client never disconnects
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"{path} answered {status}")


@contextlib.asynccontextmanager
async def in_process(reference: str = "service:Inference") -> AsyncIterator[Any]:
    """The BentoML service `reference` names as an ASGI app in this process, started (its lifespan, its worker's
    timers) and ready (models loaded); shut down on leaving."""
    import bentoml

    from inference.families.registry import attribute

    app = attribute(reference).to_asgi()
    startup: asyncio.Queue[dict] = asyncio.Queue()
    events: asyncio.Queue[dict] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, events.put))
    assert (await events.get())["type"] == "lifespan.startup.complete"
    deadline = time.monotonic() + 60
    while not bentoml.get_current_service().__is_ready__():
        if time.monotonic() > deadline:
            raise TimeoutError("models not loaded in 60 s")
        await asyncio.sleep(0.05)
    try:
        yield app
    finally:
        await startup.put({"type": "lifespan.shutdown"})
        await lifespan


def child_figures(module: str, arguments: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """`python -m <module> --child <arguments>` in a fresh process (BentoML reads its configuration when
    service.py is imported), with `env` over this one's and a Prometheus directory of its own: the JSON it printed
    last."""
    with tempfile.TemporaryDirectory(prefix="child-metrics-") as metrics_dir:
        child_env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "INFERENCE_LOG_LEVEL": "WARNING", **env}
        output = subprocess.run(
            [sys.executable, "-m", module, "--child", *arguments],
            cwd=PROJECT_ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


async def _measure(requests: int) -> dict[str, float]:
    async with in_process(os.environ.get("STACK_COST_SERVICE", "service:Inference")) as app:
        return await _measure_app(app, requests)


async def _measure_app(app: Any, requests: int) -> dict[str, float]:
    from inference.http import paths
    from loadtests.latency import request_bodies

    bodies = [json.dumps(body).encode() for body in request_bodies(500, seed=2024)]
    batch = json.dumps({"items": request_bodies(100, seed=7)}).encode()
    single_path, batch_path = paths.SKILLS_INFER_ROUTE, paths.SKILLS_BATCH_ROUTE
    for body in bodies[:100]:
        await _call(app, single_path, body)

    async def sequential(count: int) -> None:
        for i in range(count):
            await _call(app, single_path, bodies[i % len(bodies)])

    async def concurrent(count: int) -> None:
        for start in range(0, count, 64):
            await asyncio.gather(*(_call(app, single_path, bodies[(start + j) % len(bodies)]) for j in range(64)))

    async def batches(count: int) -> None:
        for _ in range(count):
            await _call(app, batch_path, batch)

    figures = {}
    for name, run, count in (
        ("single, sequential", sequential, requests),
        ("single, 64 at a time", concurrent, requests),
        ("batch of 100, sequential", batches, max(10, requests // 50)),
    ):
        per_block = max(1, count // BLOCKS)
        samples = []
        for _ in range(BLOCKS):
            started = time.process_time()
            await run(per_block)
            samples.append((time.process_time() - started) / per_block * 1e6)
        figures[name] = min(samples)
    return figures


def run_configuration(env: dict[str, str], requests: int) -> dict[str, float]:
    # Every request must reach the models: with the default in-process cache, the repeated bodies would be
    # answered from it after their first pass and the figures would be those of cache hits.
    child_env = {**env, "CACHE_URL": "none://", "INFERENCE_FAMILIES": '["skills"]'}
    return child_figures("loadtests.stack_cost", ["--requests", str(requests)], child_env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2500, help="single requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="configurations run in turn this many times")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(PROJECT_ROOT))
        print(json.dumps(asyncio.run(_measure(args.requests))))
        return 0
    rows: dict[str, dict[str, float]] = {}
    for round_index in range(args.rounds):
        for name, env in CONFIGURATIONS.items():
            print(f"round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            figures = run_configuration(env, args.requests)
            rows[name] = {key: min(value, rows.get(name, figures)[key]) for key, value in figures.items()}
    columns = list(next(iter(rows.values())))
    print("| configuration | " + " | ".join(f"{column}, µs CPU per request" for column in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, figures in rows.items():
        print(f"| {name} | " + " | ".join(f"{figures[column]:.0f}" for column in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
