"""The benchmark's report: the side-by-side table, QPS ratios against each peer, and the performance targets
judged from the same run (docs/performance.md holds the latest one)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from inference.families.registry import latency_ms
from loadtests.text_bench import BATCH_CLASSIC, CLASSIC_1, CLASSIC_16, ENSEMBLE_1, PAIR_1

Row = Mapping[str, float]  # one wrk run: qps, p50, p95, p99 (ms), errors
Results = Mapping[str, Mapping[str, Sequence[Row]]]  # target key -> workload name -> one row per round

SERVICE = "service"
FULL = "full"  # the service with every family loaded, as shipped: text workloads, cold start, memory
TEXT_FASTAPI = "fastapi-text"  # the careful FastAPI app serving the text families' pipelines
INFER_1, INFER_16, INFER_64, AFTER_BURST, BATCH_100, MIXED = (
    "infer, 1 client",
    "infer, 16 clients",
    "infer, 64 clients",
    "infer, 1 client, right after the 64-client burst",
    "infer/batch 100 items, 1 client",
    "mixed (1 in 10 a batch of 100), 16 clients",
)


@dataclass(frozen=True)
class Footprint:
    cold_start_s: float  # process start to the first 200 from the readiness probe
    rss_mib: float  # summed over the server's processes; pages shared between them count once per process
    pss_mib: float  # proportional set size: shared pages split between the processes, so the sum is the total


@dataclass(frozen=True)
class Run:
    command: str
    started: str
    duration_s: float
    rounds: int
    names: Mapping[str, str]  # target key -> display name, in table order
    workloads: Sequence[str]
    results: Results
    footprints: Mapping[str, Sequence[Footprint]]
    in_process: Mapping[str, float]
    text_workloads: Sequence[str] = ()
    text_peer: str = ""  # the text workloads' peer's name; its results under TEXT_FASTAPI

    def mean(self, target: str, workload: str, figure: str) -> float:
        return statistics.fmean(row[figure] for row in self.results[target][workload])

    def errors(self, target: str, workload: str | None = None) -> int:
        text = target in (FULL, TEXT_FASTAPI)
        workloads = [workload] if workload else (self.text_workloads if text else self.workloads)
        return int(sum(row["errors"] for name in workloads for row in self.results[target][name]))

    def footprint(self, target: str, figure: str) -> float:
        return statistics.fmean(getattr(footprint, figure) for footprint in self.footprints[target])


@dataclass(frozen=True)
class Target:
    text: str
    measure: Callable[[Run], tuple[str, bool]]  # the figure as text, and whether the target is met
    needs: tuple[str, ...] = (SERVICE,)


def ratio_text(ours: float, theirs: float) -> str:
    # A peer can finish no request in a short workload (still draining a burst), so the ratio has no value.
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a (the peer completed no request)"


def _ratio(peer: str, workload: str, need: float) -> Callable[[Run], tuple[str, bool]]:
    def measure(run: Run) -> tuple[str, bool]:
        ours, theirs = run.mean(SERVICE, workload, "qps"), run.mean(peer, workload, "qps")
        return f"{ours:.0f} against {theirs:.0f} QPS = {ratio_text(ours, theirs)}", theirs > 0 and ours / theirs >= need

    return measure


def _ahead_of(peer: str) -> Callable[[Run], tuple[str, bool]]:
    def measure(run: Run) -> tuple[str, bool]:
        ratios = {
            workload: run.mean(SERVICE, workload, "qps") / theirs
            for workload in run.workloads
            if (theirs := run.mean(peer, workload, "qps")) > 0
        }
        if not ratios:
            return "the peer completed no request", False
        behind = [f"{workload} {ratio:.2f}x" for workload, ratio in ratios.items() if ratio <= 1.0]
        lowest = min(ratios, key=ratios.__getitem__)
        if behind:
            return "behind in " + "; ".join(behind), False
        return f"ahead in all {len(ratios)} workloads, least in {lowest}: {ratios[lowest]:.2f}x", True

    return measure


def _at_most(
    workload: str, figure: str, limit: float, target: str = SERVICE, *, under: bool = False
) -> Callable[[Run], tuple[str, bool]]:
    """`figure` at most `limit` ms, or strictly under it (`under`: the requirement says "< 5 ms")."""

    def measure(run: Run) -> tuple[str, bool]:
        value = run.mean(target, workload, figure)
        return f"{value:.2f} ms", value < limit if under else value <= limit

    return measure


def _qps_at_least(workload: str, limit: float, target: str = FULL) -> Callable[[Run], tuple[str, bool]]:
    def measure(run: Run) -> tuple[str, bool]:
        value = run.mean(target, workload, "qps")
        return f"{value:.0f} QPS", value >= limit

    return measure


def _after_burst(run: Run) -> tuple[str, bool]:
    idle, after = run.mean(SERVICE, INFER_1, "p50"), run.mean(SERVICE, AFTER_BURST, "p50")
    if idle <= 0 or after <= 0:
        return "no request completed in one of the two workloads", False
    return f"{after:.2f} against {idle:.2f} ms = {after / idle:.2f}x", after / idle <= 1.2


def _no_errors(run: Run) -> tuple[str, bool]:
    errors = run.errors(SERVICE)
    return f"{errors} errors or non-2xx answers in all workloads", errors == 0


def _cold_start(target: str, limit: float) -> Callable[[Run], tuple[str, bool]]:
    def measure(run: Run) -> tuple[str, bool]:
        seconds = run.footprint(target, "cold_start_s")
        return f"{seconds:.2f} s", seconds <= limit

    return measure


def _memory(target: str, limit_mib: float) -> Callable[[Run], tuple[str, bool]]:
    def measure(run: Run) -> tuple[str, bool]:
        rss, pss = run.footprint(target, "rss_mib"), run.footprint(target, "pss_mib")
        return f"PSS {pss:.0f} MiB summed over processes (RSS {rss:.0f} MiB)", pss <= limit_mib

    return measure


def _text_errors(run: Run) -> tuple[str, bool]:
    errors = run.errors(FULL)
    return f"{errors} errors or non-2xx answers in the text workloads", errors == 0


# The latency targets are the service's objectives (the alerts are generated from the same figures).
SKILLS_MS, SKILLS_BATCH_MS = latency_ms("skills", "single"), latency_ms("skills", "batch")
CLASSIC_MS, ENSEMBLE_MS = latency_ms("intent", "single", "classic"), latency_ms("intent", "single", "ensemble")
INTENT_BATCH_MS, PAIR_MS = latency_ms("intent", "batch"), latency_ms("textpair", "single")

TARGETS = [
    # Skills: against the careful FastAPI app, MLServer and BentoML's own batching, in the same run.
    Target(
        "skills `infer`, 64 clients: ≥ 2x careful FastAPI's QPS", _ratio("fastapi", INFER_64, 2.0), (SERVICE, "fastapi")
    ),
    Target(
        "skills `infer`, 1 client: ≥ 1.3x careful FastAPI's QPS", _ratio("fastapi", INFER_1, 1.3), (SERVICE, "fastapi")
    ),
    Target(
        "skills `infer/batch` 100 items: ≥ 3x careful FastAPI's QPS",
        _ratio("fastapi", BATCH_100, 3.0),
        (SERVICE, "fastapi"),
    ),
    Target("skills: ahead of MLServer in every workload", _ahead_of("mlserver"), (SERVICE, "mlserver")),
    Target(
        "in-process batcher ≥ 1.5x BentoML's batchable API, 64 clients",
        _ratio("batchable", INFER_64, 1.5),
        (SERVICE, "batchable"),
    ),
    Target("skills: 1-client P50 right after the 64-client burst ≤ 1.2x idle", _after_burst),
    Target("skills: zero errors, no 503s", _no_errors),
    Target(f"skills `infer` P95 ≤ {SKILLS_MS:g} ms at 1 client", _at_most(INFER_1, "p95", SKILLS_MS)),
    Target(
        f"skills `infer/batch` 100 items: P95 ≤ {SKILLS_BATCH_MS:g} ms at 1 client",
        _at_most(BATCH_100, "p95", SKILLS_BATCH_MS),
    ),
    # Intent and text pair: the requirement documents' own targets (< 5 ms P95, 1000+ QPS, 100 texts < 100 ms).
    Target(
        f"intent classic, uncached: P95 < {CLASSIC_MS:g} ms at 1 client",
        _at_most(CLASSIC_1, "p95", CLASSIC_MS, FULL, under=True),
        (FULL,),
    ),
    Target("intent classic, uncached: ≥ 1000 QPS at 16 clients", _qps_at_least(CLASSIC_16, 1000), (FULL,)),
    Target(
        f"intent ensemble: P95 ≤ {ENSEMBLE_MS:g} ms at 1 client",
        _at_most(ENSEMBLE_1, "p95", ENSEMBLE_MS, FULL),
        (FULL,),
    ),
    Target(
        f"intent: 100 texts in under {INTENT_BATCH_MS:g} ms (`classify/batch`, classic, P95)",
        _at_most(BATCH_CLASSIC, "p95", INTENT_BATCH_MS, FULL, under=True),
        (FULL,),
    ),
    Target(f"text pair: P95 < {PAIR_MS:g} ms at 1 client", _at_most(PAIR_1, "p95", PAIR_MS, FULL, under=True), (FULL,)),
    Target("text families: zero errors", _text_errors, (FULL,)),
    # Footprint: the skills-only replica of the side-by-side table, and the replica as shipped (every family).
    Target("cold start to `/readyz` 200 ≤ 3 s, skills only", _cold_start(SERVICE, 3.0)),
    Target("cold start to `/readyz` 200 ≤ 5 s, every family (as shipped)", _cold_start(FULL, 5.0), (FULL,)),
    Target("PSS of a replica with every family ≤ 400 MiB", _memory(FULL, 400.0), (FULL,)),
]


def render(run: Run) -> str:
    keys = list(run.names)
    lines = [
        f"Run {run.started}: `{run.command}`; wrk, {run.duration_s:g} s per workload after a 2 s warm-up, mean "
        f"of {run.rounds} round(s), targets started fresh and interleaved per round.",
        "",
        "| workload | " + " | ".join(f"{run.names[key]}: QPS / P50 / P95 / P99 ms / errors" for key in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for workload in run.workloads:
        cells = [
            f"{run.mean(key, workload, 'qps'):.0f} / {run.mean(key, workload, 'p50'):.2f} / "
            f"{run.mean(key, workload, 'p95'):.2f} / {run.mean(key, workload, 'p99'):.2f} / "
            f"{run.errors(key, workload)}"
            for key in keys
        ]
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    for label, figure, digits in (
        ("cold start to ready, s", "cold_start_s", 2),
        ("RSS summed over server processes after load, MiB", "rss_mib", 0),
        ("PSS summed over server processes after load, MiB", "pss_mib", 0),
    ):
        lines.append(f"| {label} | " + " | ".join(f"{run.footprint(key, figure):.{digits}f}" for key in keys) + " |")
    lines.append("")
    if SERVICE in keys:
        for peer in (key for key in keys if key != SERVICE):
            ratios = "; ".join(
                f"{workload}: {ratio_text(run.mean(SERVICE, workload, 'qps'), run.mean(peer, workload, 'qps'))}"
                for workload in run.workloads
            )
            lines.append(f"QPS of this service over {run.names[peer]}: {ratios}.")
        lines.append("")
    if run.in_process:
        sequential, concurrent = run.in_process["sequential_us"], run.in_process["concurrent_us"]
        lines += [
            f"In-process limit (the service's scoring path called from Python, no HTTP): {sequential:.0f} µs per "
            f"sequential request ({1e6 / sequential:.0f} QPS), {concurrent:.0f} µs per request when 3000 "
            f"concurrent ones are batched ({1e6 / concurrent:.0f} QPS).",
            "",
        ]
    if run.text_workloads:
        lines += render_text(run)
    lines += render_targets(run)
    return "\n".join(lines).rstrip()


def render_text(run: Run) -> list[str]:
    """The text workloads against the full service, beside the careful FastAPI app when it ran."""
    keys = [FULL, *([TEXT_FASTAPI] if run.text_peer else [])]
    lines = [
        f"Text families, against the full service (all families loaded, result cache off): cold start "
        f"{run.footprint(FULL, 'cold_start_s'):.2f} s, RSS {run.footprint(FULL, 'rss_mib'):.0f} MiB "
        f"(PSS {run.footprint(FULL, 'pss_mib'):.0f} MiB) summed over its processes after load.",
        "",
    ]
    if run.text_peer:
        lines += [
            f"Beside it, {run.text_peer}: cold start {run.footprint(TEXT_FASTAPI, 'cold_start_s'):.2f} s, RSS "
            f"{run.footprint(TEXT_FASTAPI, 'rss_mib'):.0f} MiB (PSS {run.footprint(TEXT_FASTAPI, 'pss_mib'):.0f} "
            "MiB).",
            "",
        ]
    headers = ["this service", "careful FastAPI"][: len(keys)]
    lines += [
        "| workload | "
        + " | ".join(f"{header}: QPS / P50 / P95 / P99 ms / errors" for header in headers)
        + (" | QPS, this service over careful FastAPI |" if run.text_peer else " |"),
        "|---|" + "---|" * (len(keys) + (1 if run.text_peer else 0)),
    ]
    for workload in run.text_workloads:
        cells = [
            f"{run.mean(key, workload, 'qps'):.0f} / {run.mean(key, workload, 'p50'):.2f} / "
            f"{run.mean(key, workload, 'p95'):.2f} / {run.mean(key, workload, 'p99'):.2f} / "
            f"{run.errors(key, workload)}"
            for key in keys
        ]
        if run.text_peer:
            cells.append(ratio_text(run.mean(FULL, workload, "qps"), run.mean(TEXT_FASTAPI, workload, "qps")))
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_targets(run: Run) -> list[str]:
    lines = ["| target | this run | met |", "|---|---|---|"]
    for target in TARGETS:
        present = {*run.names, *([FULL] if run.text_workloads else [])}
        if not all(key in present for key in target.needs):
            lines.append(f"| {target.text} | not measured: needs {', '.join(target.needs)} | - |")
            continue
        figure, met = target.measure(run)
        lines.append(f"| {target.text} | {figure} | {'yes' if met else 'no'} |")
    return lines
