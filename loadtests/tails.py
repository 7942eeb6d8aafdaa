"""What the background work of a worker does to single requests' tail latency, in process (no sockets, no load
generator sharing the cores): sequential skills requests through the whole ASGI stack for `--seconds` each, the
worker's timers running as in a server, per configuration, in turn, `--rounds` times.

    python -m loadtests.tails                 # ~2 min: the prediction log on (as shipped) and off

Printed per run: requests, P50, P99, P99.9 and the slowest, in ms. Skills only, the result cache off; needs the
skill models in the model store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests.stack_cost import child_figures

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = {
    "prediction log on (shipped)": {},
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12, help="seconds of requests per run (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="configurations run in turn this many times")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(PROJECT_ROOT))
        print(json.dumps(asyncio.run(_measure(args.seconds))))
        return 0
    print("| round | configuration | requests | P50 ms | P99 ms | P99.9 ms | slowest ms |")
    print("|---|---|---|---|---|---|---|")
    for round_index in range(args.rounds):
        for name, extra in CONFIGURATIONS.items():
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
