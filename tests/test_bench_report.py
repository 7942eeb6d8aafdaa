"""The benchmark report judges each target from the run's own figures, and can say no."""

from loadtests.report import (
    AFTER_BURST,
    BATCH_100,
    FULL,
    INFER_1,
    INFER_16,
    INFER_64,
    MIXED,
    TARGETS,
    TEXT_FASTAPI,
    Footprint,
    Run,
    render,
    render_targets,
)
from loadtests.text_bench import BATCH_CLASSIC, CLASSIC_1, CLASSIC_16, ENSEMBLE_1, PAIR_1

WORKLOADS = [INFER_1, INFER_16, INFER_64, AFTER_BURST, BATCH_100, MIXED]
TEXT_WORKLOADS = [CLASSIC_1, CLASSIC_16, ENSEMBLE_1, BATCH_CLASSIC, PAIR_1]
PEERS = {"fastapi": "FastAPI done carefully", "mlserver": "MLServer", "batchable": "BentoML batchable"}


def row(qps: float, p50: float = 1.0, p95: float = 2.0, errors: int = 0) -> dict[str, float]:
    return {"qps": qps, "p50": p50, "p95": p95, "p99": p95 * 2, "errors": errors}


def make_run(
    service: dict[str, dict[str, float]],
    *,
    peer_qps: dict[str, float] | None = None,
    text: dict[str, dict[str, float]] | None = None,
    **footprint,
):
    qps = {"fastapi": 300, "mlserver": 400, "batchable": 500, **(peer_qps or {})}
    results = {
        "service": {workload: [service.get(workload, row(1000))] for workload in WORKLOADS},
        **{peer: {workload: [row(qps[peer])] for workload in WORKLOADS} for peer in PEERS},
        FULL: {workload: [(text or {}).get(workload, row(1200))] for workload in TEXT_WORKLOADS},
    }
    sizes = {"cold_start_s": 2.5, "rss_mib": 450.0, "pss_mib": 350.0, **footprint}
    return Run(
        command="python -m loadtests.bench",
        started="2026-11-23T00:00+00:00",
        duration_s=10,
        rounds=1,
        names={"service": "this service", **PEERS},
        workloads=WORKLOADS,
        results=results,
        footprints={key: [Footprint(**sizes)] for key in results},
        in_process={"sequential_us": 500.0, "concurrent_us": 80.0},
        text_workloads=TEXT_WORKLOADS,
    )


def verdicts(run: Run) -> dict[str, str]:
    lines = render_targets(run)[2:]
    return {line.split(" | ")[0].lstrip("| "): line.rsplit(" | ", 1)[1].rstrip(" |") for line in lines}


def test_a_run_that_meets_every_target_is_judged_so():
    run = make_run({BATCH_100: row(1000, p95=15)})
    judged = verdicts(run)
    assert len(judged) == len(TARGETS)
    assert set(judged.values()) == {"yes"}, judged


def test_each_missed_target_is_judged_no():
    run = make_run(
        {
            INFER_1: row(350, p50=2.0, p95=6.0),  # 1.17x FastAPI's 300, behind MLServer's 400
            INFER_64: row(700),  # 2.33x FastAPI's 300, 1.4x BentoML batchable's 500
            AFTER_BURST: row(200, p50=2.5),  # 1.25x the idle P50
            BATCH_100: row(800, p95=25.0, errors=3),  # 2.67x FastAPI's
        },
        text={
            CLASSIC_1: row(300, p95=5.0),  # the target is strictly under 5 ms
            CLASSIC_16: row(999),
            ENSEMBLE_1: row(40, p95=25.5),
            BATCH_CLASSIC: row(10, p95=100.0),
            PAIR_1: row(300, p95=5.2, errors=1),
        },
        cold_start_s=5.2,
        pss_mib=420.0,
    )
    judged = verdicts(run)
    met = [text for text, verdict in judged.items() if verdict == "yes"]
    assert met == ["skills `infer`, 64 clients: ≥ 2x careful FastAPI's QPS"], judged
    assert "behind in infer, 1 client 0.88x" in render(run)


def test_targets_needing_an_absent_peer_are_reported_as_not_measured():
    run = make_run({})
    run = Run(**{**run.__dict__, "names": {"service": "this service"}, "text_workloads": []})
    judged = verdicts(run)
    assert judged["intent classic, uncached: P95 < 5 ms at 1 client"] == "-"
    assert judged["skills `infer`, 64 clients: ≥ 2x careful FastAPI's QPS"] == "-"
    assert judged["skills: ahead of MLServer in every workload"] == "-"
    assert judged["in-process batcher ≥ 1.5x BentoML's batchable API, 64 clients"] == "-"
    assert "over FastAPI" not in render(run)


def test_a_peer_that_completed_no_request_gets_no_ratio_and_fails_its_target():
    run = make_run({}, peer_qps={"mlserver": 0})
    assert verdicts(run)["skills: ahead of MLServer in every workload"] == "no"
    assert "n/a (the peer completed no request)" in render(run)


def test_start_is_judged_for_the_skills_only_replica_and_memory_for_the_replica_as_shipped():
    run = make_run({})
    run.footprints[FULL] = [Footprint(cold_start_s=5.8, rss_mib=573.0, pss_mib=471.0)]
    judged = verdicts(run)
    assert judged["cold start to `/readyz` 200 ≤ 3 s, skills only"] == "yes"
    assert judged["cold start to `/readyz` 200 ≤ 5 s, every family (as shipped)"] == "no"
    assert judged["PSS of a replica with every family ≤ 400 MiB"] == "no"


def test_the_text_peer_is_shown_beside_the_service_with_its_ratio():
    run = make_run({})
    run.results[TEXT_FASTAPI] = {workload: [row(600)] for workload in TEXT_WORKLOADS}
    run.footprints[TEXT_FASTAPI] = [Footprint(cold_start_s=1.9, rss_mib=300.0, pss_mib=250.0)]
    with_peer = render(Run(**{**run.__dict__, "text_peer": "careful FastAPI (text)"}))
    assert f"| {CLASSIC_1} | 1200 / 1.00 / 2.00 / 4.00 / 0 | 600 / 1.00 / 2.00 / 4.00 / 0 | 2.00x |" in with_peer
    assert "Beside it, careful FastAPI (text): cold start 1.90 s" in with_peer
    assert "careful FastAPI" not in render(run).split("Text families")[1].split("| target |")[0]
