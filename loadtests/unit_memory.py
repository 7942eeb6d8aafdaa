"""Memory of each unit of k8s/units after a fixed warm-up, beside today's all-in-one replica.

    .venv/bin/python -m loadtests.unit_memory                       # every unit once, ~1 min
    .venv/bin/python -m loadtests.unit_memory --rounds 2 --json unit-memory.json
    .venv/bin/python -m loadtests.unit_memory --units skills --requests 20     # a quick look at one unit

Each unit runs as its pod runs it (docs/deployment.md, "One Deployment per family"), with one worker: a unit's
limit is one CPU. Today's all-in-one replica (every family, the ensemble in the intent worker) runs with one worker
and with two, what its Deployment's two CPUs gave it. Units run one after another, each server with a BentoML home
of its own sharing the model store. A unit is started, waited for (/readyz), sent `--requests` requests of each of
its families' routes from 4 clients (intent: every second one asks for the ensemble), and then PSS and RSS are
summed over its process tree, BentoML's supervising process included (loadtests.bench.memory_mib), and over its
workers alone.

The intent front and the ensemble need each other for the warm-up, so both are started for either's row: the
ensemble first, the front at its URL, the warm-up through the front; then the server not measured is stopped
before the measure. PSS splits a shared page between the processes that map it, so a unit is measured with no
other server of this run alive. Needs the models in the store ($BENTOML_HOME).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil

from loadtests.bench import memory_mib
from loadtests.latency import request_bodies
from tests.utils.servers import RunningServer, start_server, stop
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries

GOAL_MIB = 250.0  # issue 30: the skills unit and the classic front, each, read against the pod's PSS total
READY_TIMEOUT_S = 180.0  # two workers loading every family on a shared 2-core machine
CLIENTS = 4
SEED = 30
WORKER_MODULE = "_bentoml_impl.worker.service"  # what BentoML runs in every worker process
# The ensemble's pods' command (k8s/units/ensemble): BentoML's start command for the one service of the Bento.
ENSEMBLE_POD = [
    *(sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server"),
    *("--service-name", "intent-ensemble", "service:Inference"),
]
ENSEMBLE_ENV = {"INFERENCE_FAMILIES": '["intent"]', "INFERENCE_ENSEMBLE_SERVICE": "apart", "INFERENCE_WORKERS": "1"}
FRONT_ENV = {"INFERENCE_FAMILIES": '["intent"]', "INFERENCE_WORKERS": "1"}  # + the ensemble's URL
EVERY_FAMILY = ("skills", "intent", "textpair")


@dataclass(frozen=True)
class Unit:
    name: str
    families: tuple[str, ...]  # the families it serves (the ensemble: the intent front's), whose routes are sent
    workers: int = 1
    goal_mib: float | None = None
    # "front" or "ensemble": one side of the intent pair, started together and measured apart (see above).
    intent_side: Literal["front", "ensemble"] | None = None


UNITS = {
    "skills": Unit("skills", ("skills",), goal_mib=GOAL_MIB),
    "intent": Unit("intent, the classic front", ("intent",), goal_mib=GOAL_MIB, intent_side="front"),
    "ensemble": Unit("ensemble", ("intent",), intent_side="ensemble"),
    "textpair": Unit("textpair", ("textpair",)),
    "all-1": Unit("all-in-one (every family, ensemble in the intent worker)", EVERY_FAMILY, workers=1),
    "all-2": Unit("all-in-one (every family, ensemble in the intent worker)", EVERY_FAMILY, workers=2),
}


def family_calls(family: str, count: int) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """`count` requests of `family`'s scoring route, each for an input not sent before: (path, body, headers)."""
    if family == "skills":
        return [("/api/v1/skills/infer", body, {}) for body in request_bodies(count, seed=SEED)]
    if family == "intent":
        texts = generate_queries(count, seed=SEED).texts
        preferences = ("classic", "ensemble")
        return [
            ("/api/classify", {"text": text}, {"X-Model-Preference": preferences[index % 2]})
            for index, text in enumerate(texts)
        ]
    if family == "textpair":
        pairs = generate_pairs(count, seed=SEED).pairs
        return [("/predict", {"text1": first, "text2": second}, {}) for first, second in pairs]
    raise ValueError(f"no warm-up for family {family!r}")


def warm_up(url: str, families: Sequence[str], count: int) -> dict[str, int]:
    """Send `count` requests of each family from `CLIENTS` clients; the counts of requests and of ensemble answers.
    Raises when a request is not answered with 200, or when no request that asked for the ensemble got it."""
    calls = [call for family in families for call in family_calls(family, count)]

    def send(http: httpx.Client, call: tuple[str, dict[str, Any], dict[str, str]]) -> bool:
        path, body, headers = call
        response = http.post(path, json=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
        return headers.get("X-Model-Preference") == "ensemble" and response.json()["variant"] == "ensemble"

    with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(CLIENTS) as pool:
        by_ensemble = sum(pool.map(lambda call: send(http, call), calls))
    asked = sum(call[2].get("X-Model-Preference") == "ensemble" for call in calls)
    if asked and not by_ensemble:
        raise RuntimeError(f"none of the {asked} requests for the ensemble was answered by it")
    return {"requests": len(calls), "asked_for_the_ensemble": asked, "answered_by_the_ensemble": by_ensemble}


@contextlib.contextmanager
def warmed_up(unit: Unit, work: Path, count: int) -> Iterator[tuple[psutil.Process, dict[str, int]]]:
    """Start `unit` (for a side of the intent pair, both sides), warm it up, and yield its server's process (any
    other server of the pair stopped) and the warm-up's counts; stop everything on leaving."""

    def start(env: dict[str, str], command: list[str] | None = None) -> RunningServer:
        return stack.enter_context(start_server(work, command=command, env=env, timeout=READY_TIMEOUT_S))

    with contextlib.ExitStack() as stack:
        if unit.intent_side is None:
            families = json.dumps(list(unit.families))
            env = {"INFERENCE_FAMILIES": families, "INFERENCE_ENSEMBLE_SERVICE": "local"}
            measured = driven = start({**env, "INFERENCE_WORKERS": str(unit.workers)})
            other = None
        else:
            ensemble = start(ENSEMBLE_ENV, ENSEMBLE_POD)
            driven = start({**FRONT_ENV, "INFERENCE_ENSEMBLE_SERVICE": ensemble.url})
            measured, other = (driven, ensemble) if unit.intent_side == "front" else (ensemble, driven)
        counts = warm_up(driven.url, unit.families, count)
        if other is not None:
            stop(other.process)  # its supervisor and workers: its process group
        yield psutil.Process(measured.process.pid), counts


def footprint(server: psutil.Process) -> dict[str, Any]:
    """PSS and RSS in MiB summed over `server`'s process tree (its supervising process and workers) and over its
    workers alone."""
    tree = [server, *server.children(recursive=True)]
    workers = [process for process in tree if WORKER_MODULE in " ".join(process.cmdline())]
    rss_total, pss_total = memory_mib(server)
    by_worker = [memory_mib(worker) for worker in workers]  # a worker's tree is the worker: it starts no process
    return {
        "pss_total_mib": pss_total,
        "pss_workers_mib": sum(pss for _, pss in by_worker),
        "rss_total_mib": rss_total,
        "rss_workers_mib": sum(rss for rss, _ in by_worker),
        "processes": len(tree),
        "workers": len(workers),
    }


def spread(values: Sequence[float]) -> str:
    """One figure, or the range over the rounds when they differ, in whole MiB."""
    low, high = round(min(values)), round(max(values))
    return f"{low}" if low == high else f"{low}-{high}"


def goal_check(unit: Unit, rows: Sequence[dict[str, Any]]) -> str:
    """The goal read against the highest PSS total of the rounds, the workers' alone beside it."""
    if unit.goal_mib is None:
        return "(no goal)"
    total, workers = (max(row[key] for row in rows) for key in ("pss_total_mib", "pss_workers_mib"))
    verdict = "yes" if total <= unit.goal_mib else f"no, {total - unit.goal_mib:+.0f} MiB"
    return f"{verdict} (workers alone: {'yes' if workers <= unit.goal_mib else 'no'})"


def render(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        f"| unit | workers | PSS total, MiB | PSS workers only, MiB | RSS total, MiB | goal: PSS total ≤ {GOAL_MIB:.0f} MiB |",
        "|---|---|---|---|---|---|",
    ]
    for key, rows in results.items():
        unit = UNITS[key]
        figures = (
            spread([row[name] for row in rows]) for name in ("pss_total_mib", "pss_workers_mib", "rss_total_mib")
        )
        lines.append(f"| {unit.name} | {unit.workers} | {' | '.join(figures)} | {goal_check(unit, rows)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="times each unit is measured (default 1)")
    parser.add_argument("--requests", type=int, default=200, help="warm-up requests per family (default 200)")
    parser.add_argument("--units", nargs="+", choices=list(UNITS), default=list(UNITS), help="default: all")
    parser.add_argument("--json", type=Path, help="also write every round's figures to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")

    started = datetime.now(UTC).isoformat(timespec="minutes")
    results: dict[str, list[dict[str, Any]]] = {key: [] for key in args.units}
    with tempfile.TemporaryDirectory(prefix="unit-memory-") as scratch:
        for round_index in range(args.rounds):
            for key in args.units:
                unit = UNITS[key]
                with warmed_up(unit, Path(scratch), args.requests) as (server, counts):
                    row = {**footprint(server), **counts}
                if row["workers"] != unit.workers:
                    raise RuntimeError(f"{unit.name}: {row['workers']} worker processes, expected {unit.workers}")
                results[key].append(row)
                print(
                    f"round {round_index + 1}/{args.rounds}: {unit.name}, {unit.workers} worker(s), "
                    f"{row['processes']} processes: PSS {row['pss_total_mib']:.1f} MiB "
                    f"(workers {row['pss_workers_mib']:.1f}), RSS {row['rss_total_mib']:.1f} MiB "
                    f"(workers {row['rss_workers_mib']:.1f}); warm-up {row['requests']} requests, "
                    f"{row['answered_by_the_ensemble']} of {row['asked_for_the_ensemble']} asking for the ensemble "
                    "answered by it",
                    flush=True,
                )
    print()
    print(render(results))
    print(
        "\nPSS total: summed over the unit's process tree, BentoML's supervising process and its workers (what the "
        "pod holds, so the goal is read against it); workers only: the worker processes alone."
        + (
            f" Ranges: lowest-highest of {args.rounds} rounds; the goal is read against the highest."
            if args.rounds > 1
            else ""
        )
    )
    if args.json:
        command = " ".join(["python -m loadtests.unit_memory", *(argv if argv is not None else sys.argv[1:])])
        report = {
            "command": command,
            "started": started,
            "requests_per_family": args.requests,
            "goal_mib": GOAL_MIB,
            "units": {
                key: {"name": UNITS[key].name, "workers": UNITS[key].workers, "rounds": rows}
                for key, rows in results.items()
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
