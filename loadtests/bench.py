"""Side-by-side benchmark: this service against the peers a user would otherwise pick, in one run.

    python -m loadtests.bench                       # ~5 minutes; prints the table
    python -m loadtests.bench --write-doc           # ...and regenerates the results section of docs/performance.md
    python -m loadtests.bench --duration 2 --rounds 1 --targets service   # a quick look

Targets are started fresh for each round and run in turn (A B A B), each through the same workloads, driven by
wrk (loadtests/bench.lua) on loopback. Needs the skill models in the model store ($BENTOML_HOME) and `wrk`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bentoml
import httpx
import psutil

from loadtests.inprocess import scorer_us
from loadtests.latency import request_bodies

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = PROJECT_ROOT / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]  # "{port}" and "{work}" are filled in per run
    ready_path: str
    protocol: str = "service"  # "service": this API's JSON; "v2": the Open Inference Protocol (MLServer)


@dataclass(frozen=True)
class Workload:
    name: str
    connections: int
    batch_every: int  # 0: single requests only; 1: batches only; n: every n-th request is a batch of 100


MLSERVER_VENV = PROJECT_ROOT / ".bench" / "mlserver-venv"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-xgboost==1.7.1", "xgboost-cpu==3.2.0"]
TARGETS = {
    "service": Target(
        "this service (bentoml serve)",
        [str(BIN / "bentoml"), "serve", "service:Inference", "--host", "127.0.0.1", "--port", "{port}"],
        "/readyz",
    ),
    "fastapi": Target(
        "FastAPI + uvicorn",
        [
            str(BIN / "uvicorn"),
            "loadtests.peers.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            "warning",
        ],
        "/readyz",
    ),
    "mlserver": Target(
        "MLServer 1.7.1 (XGBoost runtime)",
        [str(MLSERVER_VENV / "bin" / "mlserver"), "start", "{work}/mlserver-{port}"],
        "/v2/health/ready",
        "v2",
    ),
}
WORKLOADS = [
    Workload("infer, 1 client", 1, 0),
    Workload("infer, 16 clients", 16, 0),
    Workload("infer, 64 clients", 64, 0),
    Workload("infer, 1 client, right after the 64-client burst", 1, 0),
    Workload("infer/batch 100 items, 1 client", 1, 1),
    Workload("mixed (1 in 10 a batch of 100), 16 clients", 16, 10),
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(target: Target, log_dir: Path) -> Iterator[tuple[str, psutil.Process, float]]:
    port = free_port()
    command = [part.replace("{port}", str(port)).replace("{work}", str(log_dir)) for part in target.command]
    if target.protocol == "v2":
        write_mlserver_repository(log_dir / f"mlserver-{port}", port)
    env = dict(os.environ)
    if target.command[0].endswith("bentoml"):  # its own metrics directory, so runs don't mix
        env["PROMETHEUS_MULTIPROC_DIR"] = str(log_dir / f"prom-{port}")
    started = time.perf_counter()
    with (log_dir / f"{port}.log").open("wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name} exited: see {log_dir / f'{port}.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + target.ready_path, timeout=1).status_code == 200:
                    break
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"{target.name} not ready in 120 s")
            time.sleep(0.05)
        yield url, psutil.Process(process.pid), time.perf_counter() - started
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def tree_rss_mib(process: psutil.Process) -> float:
    processes = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


def run_wrk(url: str, workload: Workload, duration: int, files: dict[str, Path]) -> dict[str, float]:
    env = {
        **os.environ,
        "SINGLE_FILE": str(files["single"]),
        "BATCH_FILE": str(files["batch"]),
        "BATCH_EVERY": str(workload.batch_every),
    }
    command = [
        "wrk",
        "-t1",
        f"-c{workload.connections}",
        f"-d{duration}s",
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

    MLServer serves bare boosters over the Open Inference Protocol: its requests carry rows already imputed and
    scaled (work the other targets do on the server), one skill's model per request; its batch is 100 rows of
    one skill.
    """
    from inference.features import prepare_row
    from inference.registry import load_skill_models
    from inference.settings import Settings

    bodies = request_bodies(500, seed=2024)
    models = load_skill_models(Settings().pinned_skill_versions())

    def scaled(body: dict) -> list[float]:
        model = models[body["skill"]]
        row = prepare_row(body["features"], model).values
        return [float(v) for v in (row - model.mean) / model.scale]

    def v2(rows: list[list[float]]) -> str:
        return json.dumps(
            {
                "inputs": [
                    {
                        "name": "predict",
                        "shape": [len(rows), len(rows[0])],
                        "datatype": "FP32",
                        "data": [v for r in rows for v in r],
                    }
                ]
            }
        )

    files: dict[str, dict[str, Path]] = {}
    service_single = [f"/api/v1/skills/infer\t{json.dumps(body)}" for body in bodies]
    service_batch = f"/api/v1/skills/infer/batch\t{json.dumps({'items': bodies[:100]})}"
    v2_single = [f"/v2/models/skill-{body['skill']}/infer\t{v2([scaled(body)])}" for body in bodies]
    same_skill = [body for body in bodies if body["skill"] == "communication"]
    batch_rows = [scaled(same_skill[i % len(same_skill)]) for i in range(100)]
    v2_batch = f"/v2/models/skill-communication/infer\t{v2(batch_rows)}"
    for protocol, singles, batch in (("service", service_single, service_batch), ("v2", v2_single, v2_batch)):
        files[protocol] = {"single": work / f"{protocol}-single.txt", "batch": work / f"{protocol}-batch.txt"}
        files[protocol]["single"].write_text("\n".join(singles) + "\n")
        files[protocol]["batch"].write_text(batch + "\n")
    return files


def write_mlserver_repository(directory: Path, port: int) -> None:
    """A model repository with the 7 pinned boosters; parallel workers off (they die at start here)."""
    from inference.catalogue import SKILLS
    from inference.settings import Settings

    settings = Settings()
    directory.mkdir(parents=True)
    for skill in SKILLS:
        version = settings.skill_version(skill)
        stored = bentoml.models.get(f"skill-{skill}:{version}")
        (directory / skill).mkdir()
        model_settings = {
            "name": f"skill-{skill}",
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": str(Path(stored.path) / "model.json"), "version": version},
        }
        (directory / skill / "model-settings.json").write_text(json.dumps(model_settings))
    server_settings = {
        "parallel_workers": 0,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
    }
    (directory / "settings.json").write_text(json.dumps(server_settings))


def ensure_mlserver_venv() -> None:
    """MLServer pins an older FastAPI than BentoML, so it gets its own virtual environment (created once)."""
    if (MLSERVER_VENV / "bin" / "mlserver").exists():
        return
    print(f"creating {MLSERVER_VENV} with {' '.join(MLSERVER_PACKAGES)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", *MLSERVER_PACKAGES], check=True)


def in_process_row() -> dict[str, float]:
    from inference.catalogue import SKILLS
    from inference.registry import load_skill_models
    from inference.schemas import SkillInferenceRequest
    from inference.settings import Settings
    from inference.skills import SkillsScorer

    models = load_skill_models(Settings().pinned_skill_versions())
    requests = [SkillInferenceRequest.model_validate(body) for body in request_bodies(200, seed=1)]
    scorer = SkillsScorer(models)
    sequential, concurrent = asyncio.run(scorer_us(scorer, requests, 3000))
    scorer.close()
    del SKILLS
    return {"sequential_us": sequential, "concurrent_us": concurrent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per workload (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="A B A B rounds (default 2)")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=["service", "fastapi", "mlserver"])
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the results section of {DOC.name}")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    if "mlserver" in args.targets:
        ensure_mlserver_venv()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    request_files = write_request_files(work)

    results: dict[str, dict[str, list[dict[str, float]]]] = {key: {} for key in args.targets}
    footprint: dict[str, list[tuple[float, float]]] = {key: [] for key in args.targets}
    for round_index in range(args.rounds):
        for key in args.targets:
            target = TARGETS[key]
            print(f"round {round_index + 1}/{args.rounds}: {target.name}", flush=True)
            with running(target, work) as (url, process, cold_start):
                for workload in WORKLOADS:
                    row = run_wrk(url, workload, args.duration, request_files[target.protocol])
                    results[key].setdefault(workload.name, []).append(row)
                    print(
                        f"  {workload.name:<52} {row['qps']:8.0f} QPS  P50 {row['p50']:7.2f}  P95 {row['p95']:7.2f}  P99 {row['p99']:7.2f} ms  errors {row['errors']}",
                        flush=True,
                    )
                footprint[key].append((cold_start, tree_rss_mib(process)))
    inprocess = in_process_row()
    table = render(args, results, footprint, inprocess)
    print(table)
    if args.write_doc:
        text = DOC.read_text()
        head, _, rest = text.partition(DOC_START)
        _, _, tail = rest.partition(DOC_END)
        DOC.write_text(f"{head}{DOC_START}\n{table}\n{DOC_END}{tail}")
        print(f"wrote {DOC}")
    return 0


def render(args: argparse.Namespace, results, footprint, inprocess) -> str:
    def mean(rows: list[dict[str, float]], key: str) -> float:
        return statistics.fmean(row[key] for row in rows)

    names = [TARGETS[key].name for key in args.targets]
    lines = [
        f"Run {datetime.now(UTC).isoformat(timespec='minutes')}: `python -m loadtests.bench --duration {args.duration:g} --rounds {args.rounds}`; "
        f"wrk, {args.duration:g} s per workload, mean of {args.rounds} rounds, targets interleaved per round.",
        "",
        "| workload | " + " | ".join(f"{name}: QPS / P50 / P95 / P99 ms / errors" for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for workload in WORKLOADS:
        cells = []
        for key in args.targets:
            rows = results[key][workload.name]
            cells.append(
                f"{mean(rows, 'qps'):.0f} / {mean(rows, 'p50'):.2f} / {mean(rows, 'p95'):.2f} / {mean(rows, 'p99'):.2f} / {sum(r['errors'] for r in rows):.0f}"
            )
        lines.append(f"| {workload.name} | " + " | ".join(cells) + " |")
    lines.append(
        "| cold start to ready, s | "
        + " | ".join(f"{statistics.fmean(c for c, _ in footprint[key]):.2f}" for key in args.targets)
        + " |"
    )
    lines.append(
        "| RSS of all server processes after load, MiB | "
        + " | ".join(f"{statistics.fmean(r for _, r in footprint[key]):.0f}" for key in args.targets)
        + " |"
    )
    if "service" in args.targets and "fastapi" in args.targets:
        ratios = []
        for workload in WORKLOADS:
            ours = statistics.fmean(r["qps"] for r in results["service"][workload.name])
            theirs = statistics.fmean(r["qps"] for r in results["fastapi"][workload.name])
            ratios.append(f"{workload.name}: {ours / theirs:.2f}x")
        lines += ["", "QPS of this service over FastAPI: " + "; ".join(ratios) + "."]
    idle = statistics.fmean(r["p50"] for r in results[args.targets[0]][WORKLOADS[0].name])
    after = statistics.fmean(r["p50"] for r in results[args.targets[0]][WORKLOADS[3].name])
    lines += [
        f"Single-client P50 after the burst / idle P50 ({TARGETS[args.targets[0]].name}): {after / idle:.2f}x.",
        "",
        f"In-process limit (same scoring, no HTTP): {inprocess['sequential_us']:.0f} µs per sequential request "
        f"({1e6 / inprocess['sequential_us']:.0f} QPS), {inprocess['concurrent_us']:.0f} µs per request when 3000 "
        f"concurrent ones are batched ({1e6 / inprocess['concurrent_us']:.0f} QPS).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
