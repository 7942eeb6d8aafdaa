"""What the result cache does under the locust profiles: hit ratio, QPS and latency, cache off against on.

    python -m loadtests.cache_run                                   # none, memory, redis; 60 s each; ~4 min
    python -m loadtests.cache_run --caches memory --duration 20
    python -m loadtests.cache_run --redis-url redis://127.0.0.1:6379/2

Each run starts a fresh server (all families) with CACHE_URL set, drives it with locust headless (the profiles
of loadtests/locustfile.py) and reads the hit ratio per family from the server's /metrics. Redis runs use the
given URL (default: a redis-server of this command's own on a free port, nothing saved).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import httpx

from loadtests.bench import SERVE, Target, running
from loadtests.peers.mlserver import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCUST = Path(sys.executable).parent / "locust"


def hit_ratios(metrics_text: str) -> dict[str, tuple[float, float, float]]:
    """family -> (hits, misses, errors) from inference_cache_requests_total."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in metrics_text.splitlines():
        if not line.startswith("inference_cache_requests_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        fields = dict(part.split("=", 1) for part in labels[labels.index("{") + 1 : -1].split(","))
        counts[fields["family"].strip('"')][fields["outcome"].strip('"')] += float(value)
    return {family: (c["hit"], c["miss"], c["error"]) for family, c in counts.items()}


def run_locust(url: str, duration: int, users: int, prefix: Path, students: int) -> dict[str, dict[str, str]]:
    command = [
        str(LOCUST),
        "-f",
        "loadtests/locustfile.py",
        "--host",
        url,
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "--csv",
        str(prefix),
        "--only-summary",
    ]
    env = {**os.environ, "LOCUST_STUDENTS": str(students)}
    subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    with open(f"{prefix}_stats.csv") as stats:
        return {row["Name"]: row for row in csv.DictReader(stats)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caches", nargs="+", choices=["none", "memory", "redis"], default=["none", "memory", "redis"])
    parser.add_argument("--duration", type=int, default=60, help="seconds of locust per run (default 60)")
    parser.add_argument("--users", type=int, default=16, help="locust users (default 16)")
    parser.add_argument("--students", type=int, default=500, help="student population of the profile (default 500)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cache-run-"))
    redis_process = None
    redis_url = args.redis_url
    if "redis" in args.caches and redis_url is None:
        port = free_port()
        redis_process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        redis_url = f"redis://127.0.0.1:{port}/0"
    urls = {"none": "none://", "memory": "memory://", "redis": redis_url}
    print(
        f"locust: {args.users} users, {args.duration} s per run, {args.students} students; cache per run:", flush=True
    )
    rows = []
    try:
        for cache in args.caches:
            target = Target(f"cache {cache}", SERVE, "/readyz", env=(("CACHE_URL", str(urls[cache])),))
            with running(target, work) as (url, _, _):
                stats = run_locust(url, args.duration, args.users, work / cache, args.students)
                ratios = hit_ratios(httpx.get(url + "/metrics").text)
            total = stats["Aggregated"]
            skills = stats.get("skills/infer", total)
            hits, misses, errors = ratios.get("skills", (0.0, 0.0, 0.0))
            all_hits = sum(h for h, _, _ in ratios.values())
            all_lookups = sum(h + m for h, m, _ in ratios.values())
            row = (
                f"| {cache} | {float(total['Requests/s']):.0f} | {float(skills['50%']):.0f} / {float(skills['95%']):.0f} | "
                f"{int(total['Failure Count'])} | "
                f"{hits / (hits + misses) if hits + misses else 0:.1%} | "
                f"{all_hits / all_lookups if all_lookups else 0:.1%} | {int(errors)} |"
            )
            rows.append(row)
            print(row, flush=True)
    finally:
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| cache | QPS (all profiles) | skills/infer P50 / P95 ms | failures | skills hit ratio | "
        "hit ratio, all families | cache errors |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
