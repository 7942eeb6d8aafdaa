"""Side-by-side benchmark: this service against the peers a user would otherwise pick, in one run.

    python -m loadtests.bench                       # ~20 minutes; prints the table
    python -m loadtests.bench --write-doc           # ...and regenerates the results section of docs/performance.md
    python -m loadtests.bench --duration 2 --rounds 1 --targets service   # a quick look

Targets are started fresh for each round and run in turn (A B A B), each warmed up for 2 s and then driven
through the same workloads by wrk (loadtests/bench.lua) on loopback. Needs the skill models in the model store ($BENTOML_HOME) and `wrk`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from deploy.canary import backend_home
from loadtests.inprocess import scorer_us
from loadtests.latency import request_bodies
from loadtests.peers import mlserver
from loadtests.report import (
    AFTER_BURST,
    BATCH_100,
    FULL,
    INFER_1,
    INFER_16,
    INFER_64,
    MIXED,
    TEXT_FASTAPI,
    Footprint,
    Run,
    render,
)
from loadtests.text_bench import TEXT_WORKLOADS, write_text_request_files

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = PROJECT_ROOT / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- bench:start -->", "<!-- bench:end -->"
READY_TIMEOUT_S = 120
WARM_UP = 2.0  # seconds of 4-connection load before the measured workloads, for every target alike


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]  # "{port}" and "{work}" are filled in per run
    ready_path: str
    # "service": this API's JSON; "v2": the Open Inference Protocol (MLServer); "batchable": lists of requests
    protocol: str = "service"
    env: tuple[tuple[str, str], ...] = ()


WORKERS = len(os.sched_getaffinity(0))  # what `workers: cpu_count` gives this service; the peers get as many
SERVE = [str(BIN / "bentoml"), "serve", "service:Inference", "--host", "127.0.0.1", "--port", "{port}"]
FULL_SERVICE = Target("this service, all families, cache off", SERVE, "/readyz", env=(("CACHE_URL", "none://"),))


def uvicorn(app: str, workers: int = 1) -> list[str]:
    command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    return [*command, "--workers", str(workers), "--no-access-log"] if workers > 1 else command


# The text families' peer: the same stored scikit-learn pipelines behind a careful FastAPI app.
TEXT_PEER = Target(
    f"FastAPI done carefully, text families ({WORKERS} uvicorn workers, scikit-learn predict_proba, orjson)",
    uvicorn("loadtests.peers.fastapi_text:app", WORKERS),
    "/readyz",
)


@dataclass(frozen=True)
class Workload:
    name: str
    connections: int
    batch_every: int  # 0: single requests only; 1: batches only; n: every n-th request is a batch of 100


TARGETS = {
    # The peers serve only the skill models and cache nothing, so here this service loads only those models and
    # its result cache is off (the workloads repeat 500 students: a cache would answer nearly everything). The
    # full service is measured on its own below; the cache's effect is measured by loadtests/cache_run.py.
    "service": Target(
        "this service (bentoml serve, skills family, cache off)",
        SERVE,
        "/readyz",
        env=(("INFERENCE_FAMILIES", '["skills"]'), ("CACHE_URL", "none://")),
    ),
    "bentoml-api": Target(
        "this service, skills routes as @bentoml.api methods (BentoML's IO layer)",
        [*SERVE[:2], "loadtests.peers.bentoml_api:ApiSkills", *SERVE[3:]],
        "/readyz",
        env=(("INFERENCE_FAMILIES", '["skills"]'), ("CACHE_URL", "none://")),
    ),
    "fastapi": Target(
        f"FastAPI done carefully ({WORKERS} uvicorn workers, inplace_predict, orjson)",
        uvicorn("loadtests.peers.fastapi_careful:app", WORKERS),
        "/readyz",
    ),
    "ceiling": Target(
        f"HTTP ceiling: bare Starlette, fixed answer ({WORKERS} uvicorn workers)",
        uvicorn("loadtests.peers.ceiling:app", WORKERS),
        "/readyz",
    ),
    "fastapi-naive": Target(
        "FastAPI naive (1 uvicorn worker, predict_proba per request)",
        uvicorn("loadtests.peers.fastapi_app:app"),
        "/readyz",
    ),
    "batchable": Target(
        "this service's scoring behind BentoML's batchable API",
        [*SERVE[:2], "loadtests.peers.bentoml_batchable:BatchableSkills", *SERVE[3:]],
        "/readyz",
        "batchable",
        env=(("INFERENCE_FAMILIES", '["skills"]'),),
    ),
    "mlserver": Target(
        f"MLServer 1.7.1 (XGBoost runtime, {WORKERS} parallel workers, adaptive batching)",
        [str(mlserver.EXECUTABLE), "start", "{work}/mlserver-{port}"],
        "/v2/health/ready",
        "v2",
        env=(("OMP_NUM_THREADS", "1"),),
    ),
}
# The order matters: the single-client run right after the 64-client burst measures what a burst leaves behind.
WORKLOADS = [
    Workload(INFER_1, 1, 0),
    Workload(INFER_16, 16, 0),
    Workload(INFER_64, 64, 0),
    Workload(AFTER_BURST, 1, 0),
    Workload(BATCH_100, 1, 1),
    Workload(MIXED, 16, 10),
]


@contextlib.contextmanager
def running(target: Target, work: Path) -> Iterator[tuple[str, psutil.Process, float]]:
    """Start `target` on a free port; yield its URL, process and seconds from start to ready; stop it."""
    port = mlserver.free_port()
    command = [part.replace("{port}", str(port)).replace("{work}", str(work)) for part in target.command]
    if target.protocol == "v2":
        mlserver.write_repository(work / f"mlserver-{port}", port)
    env = {**os.environ, **dict(target.env)}
    # A BentoML server (`bentoml serve`, or BentoML's start command for one service) gets a BentoML home of its own
    # (metrics files), sharing the stores.
    if target.command[0].endswith("bentoml") or "bentoml_cli._internal.start" in target.command:
        env["BENTOML_HOME"] = str(backend_home(work, "bench", port))
    log_path = work / f"{port}.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name} exited: see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + target.ready_path, timeout=1).status_code == 200:
                    break
            if time.perf_counter() - started > READY_TIMEOUT_S:
                raise TimeoutError(f"{target.name} not ready in {READY_TIMEOUT_S} s: see {log_path}")
            time.sleep(0.05)
        yield url, psutil.Process(process.pid), time.perf_counter() - started
    finally:
        with contextlib.suppress(ProcessLookupError):  # stopped already (a benchmark that stops its server)
            os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def memory_mib(process: psutil.Process) -> tuple[float, float]:
    """RSS and PSS summed over a server's process tree, in MiB."""
    rss = pss = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            info = member.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
    return rss / 2**20, pss / 2**20


def run_wrk(url: str, workload: Workload, duration: float, files: dict[str, Path]) -> dict[str, float]:
    """Drive `url` with `files["single"]` lines (every `batch_every`-th request the `files["batch"]` line)."""
    env = {**os.environ, "SINGLE_FILE": str(files["single"]), "BATCH_EVERY": str(workload.batch_every)}
    if "batch" in files:
        env["BATCH_FILE"] = str(files["batch"])
    command = [
        "wrk",
        "-t1",
        f"-c{workload.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(PROJECT_ROOT / "loadtests" / "bench.lua"),
        url,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["qps"] = result["requests"] / result["seconds"]
    return result


def write_request_files(work: Path) -> dict[str, dict[str, Path]]:
    """The same 500 students for every target, as "PATH<TAB>BODY" lines.

    MLServer's requests carry the rows imputed and scaled, one skill's model per request; its batch is 100 rows
    of one skill (one booster call, where this service's batch spans the 7 skills).
    """
    from inference.families.skills.family import pinned_skill_models
    from inference.families.skills.features import prepare_row
    from inference.families.skills.scoring import skill_model_name
    from inference.settings import Settings

    bodies = request_bodies(500, seed=2024)
    models = pinned_skill_models(Settings())

    def scaled(body: dict) -> list[float]:
        model = models[body["skill"]]
        row = prepare_row(body["features"], model).values
        return [float(v) for v in (row - model.mean) / model.scale]

    service_single = [f"/api/v1/skills/infer\t{json.dumps(body)}" for body in bodies]
    service_batch = f"/api/v1/skills/infer/batch\t{json.dumps({'items': bodies[:100]})}"
    v2_single = [
        f"/v2/models/{skill_model_name(body['skill'])}/infer\t{mlserver.infer_body([scaled(body)])}" for body in bodies
    ]
    batchable_single = [f"/infer\t{json.dumps({'requests': [body]})}" for body in bodies]
    batchable_batch = f"/infer\t{json.dumps({'requests': bodies[:100]})}"
    same_skill = [body for body in bodies if body["skill"] == "communication"]
    batch_rows = [scaled(same_skill[i % len(same_skill)]) for i in range(100)]
    v2_batch = f"/v2/models/{skill_model_name('communication')}/infer\t{mlserver.infer_body(batch_rows)}"
    files: dict[str, dict[str, Path]] = {}
    for protocol, singles, batch in (
        ("service", service_single, service_batch),
        ("v2", v2_single, v2_batch),
        ("batchable", batchable_single, batchable_batch),
    ):
        files[protocol] = {"single": work / f"{protocol}-single.txt", "batch": work / f"{protocol}-batch.txt"}
        files[protocol]["single"].write_text("\n".join(singles) + "\n")
        files[protocol]["batch"].write_text(batch + "\n")
    return files


def in_process_limit() -> dict[str, float]:
    from inference.families.skills.family import pinned_skill_models
    from inference.families.skills.scorer import SkillsScorer
    from inference.schemas import SkillInferenceRequest
    from inference.settings import Settings

    models = pinned_skill_models(Settings())
    requests = [SkillInferenceRequest.model_validate(body) for body in request_bodies(200, seed=1)]
    scorer = SkillsScorer(models)
    sequential, concurrent = asyncio.run(scorer_us(scorer, requests, 3000))
    scorer.close()
    return {"sequential_us": sequential, "concurrent_us": concurrent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per workload (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="A B A B rounds (default 2)")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the results section of {DOC.name}")
    parser.add_argument(
        "--no-text", dest="text", action="store_false", help="skip the text families (the full service's run)"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.rounds < 1:
        parser.error("--duration must be positive and --rounds at least 1")

    if "mlserver" in args.targets:
        mlserver.ensure_venv()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    request_files = write_request_files(work)
    text_files = write_text_request_files(work) if args.text else {}
    started = datetime.now(UTC).isoformat(timespec="minutes")
    keys = [*args.targets, FULL, TEXT_FASTAPI]
    results: dict[str, dict[str, list[dict[str, float]]]] = {key: {} for key in keys}
    footprints: dict[str, list[Footprint]] = {key: [] for key in keys}

    def drive(key: str, target: Target, workloads: list[tuple[Workload, dict[str, Path]]]) -> None:
        with running(target, work) as (url, process, cold_start):
            warm_up_files = workloads[0][1]
            run_wrk(url, Workload("warm-up", 4, 10 if "batch" in warm_up_files else 0), WARM_UP, warm_up_files)
            for workload, files in workloads:
                row = run_wrk(url, workload, args.duration, files)
                results[key].setdefault(workload.name, []).append(row)
                print(
                    f"  {workload.name:<52} {row['qps']:8.0f} QPS  P50 {row['p50']:7.2f}  P95 {row['p95']:7.2f}"
                    f"  P99 {row['p99']:7.2f} ms  errors {row['errors']}",
                    flush=True,
                )
            footprints[key].append(Footprint(cold_start, *memory_mib(process)))

    for round_index in range(args.rounds):
        for key in args.targets:
            target = TARGETS[key]
            print(f"round {round_index + 1}/{args.rounds}: {target.name}", flush=True)
            drive(key, target, [(workload, request_files[target.protocol]) for workload in WORKLOADS])
        if args.text:
            text_workloads = [
                (Workload(text.name, text.connections, text.batch_every), {"single": text_files[text.lines]})
                for text in TEXT_WORKLOADS
            ]
            for key, target in ((FULL, FULL_SERVICE), (TEXT_FASTAPI, TEXT_PEER)):
                print(f"round {round_index + 1}/{args.rounds}: {target.name}", flush=True)
                drive(key, target, text_workloads)
    command = " ".join(["python -m loadtests.bench", *(argv if argv is not None else sys.argv[1:])])
    run = Run(
        command=command,
        started=started,
        duration_s=args.duration,
        rounds=args.rounds,
        names={key: TARGETS[key].name for key in args.targets},
        workloads=[workload.name for workload in WORKLOADS],
        text_workloads=[workload.name for workload in TEXT_WORKLOADS] if args.text else [],
        text_peer=TEXT_PEER.name if args.text else "",
        results=results,
        footprints=footprints,
        in_process=in_process_limit(),
    )
    report = render(run)
    print(report)
    if args.write_doc:
        text = DOC.read_text()
        head, _, rest = text.partition(DOC_START)
        _, _, tail = rest.partition(DOC_END)
        DOC.write_text(f"{head}{DOC_START}\n{report}\n{DOC_END}{tail}")
        print(f"wrote {DOC}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
