"""Normal traffic alone and while one attacker sends each hostile kind in turn; what each hostile request costs
the server; and an overload run at twice the capacity.

    python -m loadtests.hostile                   # ~6 minutes; prints the tables
    python -m loadtests.hostile --write-doc       # ...and rewrites the figures section of docs/reliability.md
    python -m loadtests.hostile --duration 4 --kinds nul_student_id --no-overload    # a quick look

One `bentoml serve` of every family (result cache off, so every request reaches the models; the default limits),
on loopback. Normal traffic is wrk (loadtests/bench.lua) with 8 connections cycling single requests of the three
families. The attacker is one client sending its hostile request back to back. CPU is the server's process tree
(user + system) read before and after a sequence of requests sent alone: a hostile request against a normal
request of the same family. The overload run measures a workload's capacity with wrk (32 connections), then sends
it open-loop at twice that rate for the duration, and reports what came back.

Goals (the reliability requirement): normal P95 under attack within 2x its idle value; no hostile request costs
more than 20x a normal one; under 2x overload every answer is a 200 or a quick 503 (with Retry-After), and the
P95 of what is served within the workload's latency objective. Needs the demo models in the model store and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import string
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from inference.families.registry import latency_ms
from inference.settings import Settings
from loadtests import bench
from loadtests.latency import request_bodies

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = PROJECT_ROOT / "docs" / "reliability.md"
DOC_START, DOC_END = "<!-- hostile:start -->", "<!-- hostile:end -->"
ADMIN_TOKEN = "loadtest-admin-token-0123456789abcdef"
WRITER_TOKEN = "loadtest-ratings-token-0123456789abcdef"
SETTINGS = Settings()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Hostile:
    name: str
    what: str
    family: str  # the normal request its cost is compared with
    request: Callable[[], Request]


def near_equal(length: int, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    first = "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(length))
    return first, first[:-1] + ("x" if first[-1] != "x" else "y")


def pairs_body(pairs: list[tuple[str, str]]) -> bytes:
    inputs = [
        {"name": name, "datatype": "BYTES", "shape": [len(pairs)], "data": [pair[index] for pair in pairs]}
        for index, name in enumerate(("text1", "text2"))
    ]
    return json.dumps({"inputs": inputs}).encode()


def post(path: str, body: object, headers: tuple[tuple[str, str], ...] = ()) -> Request:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request("POST", path, content, (("Content-Type", "application/json"), *headers))


def binary_rows(model: str, rows: int, sent_rows: int) -> Request:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [rows, 7],
                    "parameters": {"binary_data_size": sent_rows * 28},
                }
            ]
        }
    ).encode()
    headers = (("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", str(len(header))))
    return Request("POST", f"/v2/models/{model}/infer", header + bytes(sent_rows * 28), headers)


def hostile_kinds() -> list[Hostile]:
    item = request_bodies(1, seed=3)[0]
    worst = near_equal(SETTINGS.max_text_chars, seed=1)
    most_pairs = SETTINGS.max_request_chars // (2 * SETTINGS.max_text_chars)
    small = {"student_id": "s", "skill": "communication", "features": {"words_per_response": 3}}
    admin = (("Authorization", f"Bearer {ADMIN_TOKEN}"),)
    rating = {"student_id": "s", "skill": "communication", "rating": 3, "rated_at": "2026-01-01T00:00:00Z"}
    return [
        Hostile(
            "pair_flood",
            "1000 near-equal pairs of 2,000 characters (OIP)",
            "textpair",
            lambda: post("/v2/models/textpair/infer", pairs_body([worst] * 1000)),
        ),
        Hostile(
            "pair_largest",
            f"{most_pairs} near-equal pairs of 2,000 characters, the most a request may carry (OIP)",
            "textpair",
            lambda: post(
                "/v2/models/textpair/infer",
                pairs_body([near_equal(SETTINGS.max_text_chars, s) for s in range(most_pairs)]),
            ),
        ),
        Hostile(
            "pair_worst",
            "one near-equal pair of 2,000 characters (/predict)",
            "textpair",
            lambda: post("/predict", {"text1": worst[0], "text2": worst[1]}),
        ),
        Hostile(
            "oip_rows_16mib",
            "600,000 FP32 rows for skill-communication, 16 MiB",
            "skills",
            lambda: binary_rows("skill-communication", 600_000, 600_000),
        ),
        Hostile(
            "oip_rows_declared",
            "600,000 rows declared, 10 sent",
            "skills",
            lambda: binary_rows("skill-communication", 600_000, 10),
        ),
        Hostile(
            "features_million",
            "1,000,000 unknown feature names in one item",
            "skills",
            lambda: post("/api/v1/skills/infer", {**item, "features": {f"f{i}": 1.0 for i in range(1_000_000)}}),
        ),
        Hostile(
            "features_1000",
            "1,000 unknown feature names in one item",
            "skills",
            lambda: post("/api/v1/skills/infer", {**item, "features": {f"f{i}": 1.0 for i in range(1000)}}),
        ),
        Hostile(
            "batch_16mib",
            "a skills batch of 335,000 items, 16 MiB",
            "skills",
            lambda: post("/api/v1/skills/infer/batch", {"items": [small] * 335_000}),
        ),
        Hostile(
            "batch_20k",
            "a skills batch of 20,000 items within the body limit",
            "skills",
            lambda: post("/api/v1/skills/infer/batch", {"items": [small] * 20_000}),
        ),
        Hostile(
            "ratings_no_token",
            "4 MB of ratings without a writer's token",
            "skills",
            lambda: post("/api/v1/monitoring/ratings", {"ratings": [rating] * 40_000}),
        ),
        Hostile(
            "nul_student_id",
            "a NUL in student_id",
            "skills",
            lambda: post("/api/v1/skills/infer", {**item, "student_id": "evil\x00id"}),
        ),
        Hostile("unknown_path", "an unknown path", "skills", lambda: Request("GET", f"/api/nope{random.random()}")),
        Hostile(
            "lone_surrogate",
            "an OIP text with a lone surrogate",
            "intent",
            lambda: post(
                "/v2/models/intent-classic/infer",
                b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a\\ud800b"]}]}',
            ),
        ),
        Hostile(
            "admin_infinity",
            "an admin weight of Infinity",
            "skills",
            lambda: Request(
                "PUT",
                "/admin/routes/skills",
                b'{"weights": {"v1.0.0": Infinity}}',
                (("Content-Type", "application/json"), *admin),
            ),
        ),
        Hostile("bytes_lying_length", "a BYTES element announcing 1 MB, sending 4 bytes", "intent", lying_bytes),
    ]


def lying_bytes() -> Request:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = (("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", str(len(header))))
    return Request("POST", "/v2/models/intent-classic/infer", header + struct.pack("<I", 1_000_000) + b"abcd", headers)


def normal_requests() -> dict[str, Request]:
    """One normal request per family, as the normal traffic sends them."""
    item = request_bodies(1, seed=4)[0]
    return {
        "skills": post("/api/v1/skills/infer", item),
        "intent": post("/api/classify", {"text": "cheap flights to lisbon"}, (("X-Model-Preference", "classic"),)),
        "textpair": post(
            "/predict", {"text1": "the doctor fixed the car", "text2": "the car was repaired by a doctor"}
        ),
    }


def write_normal_file(work: Path) -> Path:
    """Single requests of the three families for wrk, as "PATH<TAB>BODY" lines: 4 skills, 2 intent, 1 pair."""
    lines = []
    for index, body in enumerate(request_bodies(200, seed=2026)):
        lines.append(f"/api/v1/skills/infer\t{json.dumps(body)}")
        if index % 2 == 0:
            lines.append(
                f"/api/classify\t{json.dumps({'text': f'flights to city {index}'})}\tX-Model-Preference: classic"
            )
        if index % 4 == 0:
            pair = {"text1": f"the cat sat on mat {index}", "text2": f"a cat was sitting on the mat {index}"}
            lines.append(f"/predict\t{json.dumps(pair)}")
    path = work / "normal.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def server(
    work: Path, database_url: str | None, workers: str, extra: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    """`bentoml serve` of every family with the cache off and these settings, started as the benchmark does."""
    env = {
        "CACHE_URL": "none://",
        "INFERENCE_WORKERS": workers,
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
        "INFERENCE_RATINGS_TOKEN": WRITER_TOKEN,
        "DATABASE_URL": database_url or f"sqlite:///{work / 'hostile.db'}",
        **(extra or {}),
    }
    target = bench.Target("the service under attack", bench.SERVE, "/readyz", env=tuple(env.items()))
    with bench.running(target, work) as (url, process, _):
        yield url, process


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def send(http: httpx.Client, request: Request) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        response = http.request(request.method, request.path, content=request.content, headers=dict(request.headers))
        return response.status_code, time.perf_counter() - started
    except httpx.HTTPError:
        return -1, time.perf_counter() - started


def idle_cpu_rate(process: psutil.Process, seconds: float = 2.0) -> float:
    """CPU-seconds per second the server spends with no request (its timers, the monitoring)."""
    before = cpu_seconds(process)
    time.sleep(seconds)
    return (cpu_seconds(process) - before) / seconds


def cost_per_request(
    url: str, process: psutil.Process, request: Request, count: int, idle_rate: float, least_s: float = 1.0
) -> tuple[float, Counter[int]]:
    """Server CPU-seconds per request, sent alone one after another: at least `count` of them and for at least
    `least_s` (the CPU clock counts in 10 ms ticks), less what the server spends idle over that time; and their
    statuses."""
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, timeout=60) as http:
        send(http, request)  # the first of a kind warms its path up
        time.sleep(0.3)
        before, started = cpu_seconds(process), time.perf_counter()
        sent = 0
        while sent < count or (time.perf_counter() - started < least_s and sent < 20 * count):
            statuses[send(http, request)[0]] += 1
            sent += 1
        time.sleep(0.3)  # the work a request left behind (a background task) is counted too
        elapsed = time.perf_counter() - started
        spent = cpu_seconds(process) - before - idle_rate * elapsed
    return max(spent, 0.0) / sent, statuses


def run_wrk(url: str, lines: Path, duration: float, connections: int = 8) -> dict[str, float]:
    """wrk (loadtests/bench.lua) cycling the "PATH<TAB>BODY" lines of `lines` over `connections`."""
    return bench.run_wrk(url, bench.Workload("hostile", connections, 0), duration, {"single": lines})


@dataclass
class Attack:
    statuses: Counter[int] = field(default_factory=Counter)
    sent: int = 0


def attack(url: str, request: Request, stop: threading.Event, record: Attack) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            status, _ = send(http, request)
            record.statuses[status] += 1
            record.sent += 1


def under_attack(url: str, lines: Path, request: Request | None, duration: float) -> tuple[dict[str, float], Attack]:
    record = Attack()
    stop = threading.Event()
    attacker = None
    if request is not None:
        attacker = threading.Thread(target=attack, args=(url, request, stop, record), daemon=True)
        attacker.start()
        time.sleep(0.2)
    try:
        result = run_wrk(url, lines, duration)
    finally:
        stop.set()
        if attacker is not None:
            attacker.join(60)
    return result, record


@dataclass(frozen=True)
class Answer:
    status: int  # -1: no answer (the connection failed)
    seconds: float  # from the moment the request was sent to its answer's last byte
    late: float  # how long after its due time it was sent: the client's own queue and CPU
    retry_after: str | None


async def open_loop(url: str, request: Request, rate: float, duration: float, connections: int = 256) -> list[Answer]:
    """`request` due at `rate` per second for `duration` seconds, whatever the answers (open loop), over
    `connections` kept-alive connections of raw asyncio streams (a request waits for a free one when all are
    busy). How late each was sent is kept apart from its answer's time: on a machine the server shares, the
    client's own delays are not the server's."""
    host, port = url.removeprefix("http://").split(":")
    head = f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in request.headers)
    raw = (head + f"Content-Length: {len(request.content)}\r\n\r\n").encode() + request.content
    due_times: asyncio.Queue[float | None] = asyncio.Queue()
    answers: list[Answer] = []

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, str | None, bool]:
        writer.write(raw)
        status = int((await reader.readline()).split()[1])
        length, retry_after, close = 0, None, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "retry-after":
                retry_after = value.strip()
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await reader.readexactly(length)
        return status, retry_after, close

    async def connection() -> None:
        reader = writer = None
        while (due := await due_times.get()) is not None:
            sent = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                status, retry_after, close = await exchange(reader, writer)  # type: ignore[arg-type]
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                status, retry_after, close = -1, None, True
            answers.append(Answer(status, time.perf_counter() - sent, sent - due, retry_after))
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.perf_counter()
    for index in range(int(rate * duration)):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due_times.put_nowait(due)
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.gather(*workers)
    return answers


OVERLOAD_WORKLOADS = {
    # what: (request, latency objective in ms)
    "intent batch of 100 texts": (
        lambda: post(
            "/api/classify/batch",
            {"texts": [f"cheap flights to city {i}" for i in range(100)]},
            (("X-Model-Preference", "classic"),),
        ),
        latency_ms("intent", "batch"),
    ),
    "skills batch of 100 items": (
        lambda: post("/api/v1/skills/infer/batch", {"items": request_bodies(100, seed=8)}),
        latency_ms("skills", "batch"),
    ),
}
# Single requests are left out: at twice their capacity (thousands a second) a load generator in Python, on the
# same two cores as the server, would measure itself.
CAPACITY_CONNECTIONS = 4  # as many as a worker takes batches at once (INFERENCE_MAX_CONCURRENT_BATCHES): none is shed


def capacity(url: str, work: Path, request: Request, duration: float) -> float:
    lines = work / "capacity.txt"
    lines.write_text(
        f"{request.path}\t{request.content.decode()}"
        + "".join(f"\t{k}: {v}" for k, v in request.headers if k != "Content-Type")
        + "\n"
    )
    result = run_wrk(url, lines, duration, connections=CAPACITY_CONNECTIONS)
    return (result["requests"] - result["non2xx"]) / result["seconds"]  # answered with a 200


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8, help="seconds of normal traffic per run (default 8)")
    parser.add_argument("--count", type=int, default=20, help="hostile requests sent alone to measure CPU (default 20)")
    parser.add_argument("--database-url", help="the server's DATABASE_URL (default: a SQLite file of the run)")
    parser.add_argument(
        "--workers", default="1", help="INFERENCE_WORKERS of the server (default 1: the other core drives the load)"
    )
    parser.add_argument("--kinds", nargs="*", help="hostile kinds to run (default: all; none: only the overload)")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE", help="an environment variable of the server"
    )
    parser.add_argument("--no-overload", dest="overload", action="store_false", help="skip the overload runs")
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the figures section of {DOC.name}")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    kinds = [kind for kind in hostile_kinds() if args.kinds is None or kind.name in args.kinds]
    extra = dict(setting.split("=", 1) for setting in args.setting)
    lines_out: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines_out.append(line)

    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        work = Path(scratch)
        normal_file = write_normal_file(work)
        with server(work, args.database_url, args.workers, extra) as (url, process):
            run_wrk(url, normal_file, 2)  # warm-up
            idle, _ = under_attack(url, normal_file, None, args.duration)
            normal = normal_requests()
            idle_rate = idle_cpu_rate(process)
            normal_cost = {
                family: cost_per_request(url, process, request, 200, idle_rate)[0] for family, request in normal.items()
            }
            out(
                f"Normal traffic alone: {idle['qps']:,.0f} req/s, P95 {idle['p95']:.2f} ms (wrk, 8 connections, "
                f"{args.duration:g} s; skills, intent classic and text-pair single requests)."
            )
            out()
            out(
                "| hostile request | answer | normal req/s under attack | normal P95 under attack (x idle) "
                "| normal answers not 2xx | attacker's requests | CPU per hostile request "
                "| x a normal request of its family |"
            )
            out("|---|---|---|---|---|---|---|---|")
            for kind in kinds:
                request = kind.request()
                per_request, statuses = cost_per_request(url, process, request, args.count, idle_rate)
                result, record = under_attack(url, normal_file, request, args.duration)
                answers = ", ".join(
                    f"{status}" + (f" x{n}" if len(statuses) > 1 else "") for status, n in sorted(statuses.items())
                )
                ratio = per_request / normal_cost[kind.family]
                out(
                    f"| {kind.what} | {answers} | {result['qps']:,.0f} "
                    f"| {result['p95']:.2f} ms ({result['p95'] / idle['p95']:.2f}x) | {result['non2xx']:,} "
                    f"| {record.sent} | {per_request * 1000:.2f} ms | {ratio:.1f}x |"
                )
            out()
            out(
                "Normal requests, CPU each (sent alone): "
                + ", ".join(f"{family} {cost * 1000:.2f} ms" for family, cost in normal_cost.items())
                + "."
            )
            if args.overload:
                out()
                out(
                    "| overload workload | capacity (wrk, 4 conn.) | offered | answers | 503 share | served P50 / P95 "
                    "(objective) | 503 P50 / P95 | Retry-After on every 503 | client sent late, P95 |"
                )
                out("|---|---|---|---|---|---|---|---|---|")
                for what, (make, objective) in OVERLOAD_WORKLOADS.items():
                    request = make()
                    rate = 2 * capacity(url, work, request, args.duration)
                    answers = asyncio.run(open_loop(url, request, rate, args.duration))
                    statuses = Counter(answer.status for answer in answers)
                    served = [answer.seconds * 1000 for answer in answers if answer.status == 200]
                    shed = [answer.seconds * 1000 for answer in answers if answer.status == 503]
                    late = [answer.late * 1000 for answer in answers]
                    retry = all(answer.retry_after for answer in answers if answer.status == 503)
                    out(
                        f"| {what} | {rate / 2:,.0f} req/s | {rate:,.0f} req/s | "
                        + ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
                        + f" | {len(shed) / len(answers):.0%} | {percentile(served, 50):.1f} / "
                        f"{percentile(served, 95):.1f} ms ({objective:g} ms) | {percentile(shed, 50):.1f} / "
                        f"{percentile(shed, 95):.1f} ms | {'yes' if retry else 'no'} | {percentile(late, 95):.0f} ms |"
                    )
    if args.write_doc:
        text = DOC.read_text()
        start, end = text.index(DOC_START) + len(DOC_START), text.index(DOC_END)
        DOC.write_text(text[:start] + "\n" + "\n".join(lines_out) + "\n" + text[end:])
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
