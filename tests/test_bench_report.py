"""The benchmark report judges each target from the run's own figures, and can say no."""

from loadtests.report import (
    AFTER_BURST,
    BATCH_100,
    BATCH_CLASSIC,
    FULL,
    INFER_1,
    INFER_16,
    INFER_64,
    MIXED,
    Footprint,
    Run,
    render,
    render_targets,
)

WORKLOADS = [INFER_1, INFER_16, INFER_64, AFTER_BURST, BATCH_100, MIXED]
TEXT_WORKLOADS = [BATCH_CLASSIC, "predict (text pair), 1 client"]


def row(qps: float, p50: float = 1.0, p95: float = 2.0, errors: int = 0) -> dict[str, float]:
    return {"qps": qps, "p50": p50, "p95": p95, "p99": p95 * 2, "errors": errors}


def make_run(
    service: dict[str, dict[str, float]],
    *,
    fastapi_qps: float = 300,
    mlserver_qps: float = 400,
    text_batch_p95: float = 40.0,
    text_errors: int = 0,
    **footprint,
):
    results = {
        "service": {workload: [service.get(workload, row(1000))] for workload in WORKLOADS},
        "fastapi": {workload: [row(fastapi_qps)] for workload in WORKLOADS},
        "mlserver": {workload: [row(mlserver_qps)] for workload in WORKLOADS},
        FULL: {workload: [row(50, p95=text_batch_p95, errors=text_errors)] for workload in TEXT_WORKLOADS},
    }
    sizes = {"cold_start_s": 3.0, "rss_mib": 450.0, "pss_mib": 350.0, **footprint}
    return Run(
        command="python -m loadtests.bench",
        started="2026-11-23T00:00+00:00",
        duration_s=10,
        rounds=1,
        names={"service": "this service", "fastapi": "FastAPI", "mlserver": "MLServer"},
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
    run = make_run({INFER_64: row(1200), BATCH_100: row(90, p95=15)})
    assert set(verdicts(run).values()) == {"yes"}


def test_each_missed_target_is_judged_no():
    run = make_run(
        {
            INFER_1: row(300, p50=2.0, p95=6.0),
            INFER_64: row(800),  # 2.67x FastAPI's 300, 2x MLServer's 400: only the MLServer ratio holds
            AFTER_BURST: row(200, p50=3.5),  # 1.75x the idle P50
            BATCH_100: row(50, p95=25.0, errors=3),
        },
        cold_start_s=6.0,
        rss_mib=600.0,
        text_batch_p95=140.0,
        text_errors=1,
    )
    judged = verdicts(run)
    assert judged["64 clients: ≥ 2x MLServer's QPS"] == "yes"
    assert [text for text, verdict in judged.items() if verdict == "yes"] == ["64 clients: ≥ 2x MLServer's QPS"]


def test_targets_needing_an_absent_peer_are_reported_as_not_measured():
    run = make_run({})
    run = Run(**{**run.__dict__, "names": {"service": "this service"}, "text_workloads": []})
    judged = verdicts(run)
    assert judged["intent: 100 texts in under 100 ms (`classify/batch`, classic)"] == "-"
    assert judged["64 clients: ≥ 3x FastAPI's QPS"] == "-"
    assert judged["64 clients: ≥ 2x MLServer's QPS"] == "-"
    assert "over FastAPI" not in render(run)


def test_a_peer_that_completed_no_request_gets_no_ratio_and_fails_its_target():
    run = make_run({}, mlserver_qps=0)
    assert verdicts(run)["64 clients: ≥ 2x MLServer's QPS"] == "no"
    assert "n/a (the peer completed no request)" in render(run)


def test_start_and_memory_are_judged_for_the_skills_only_replica_and_for_the_replica_as_shipped():
    run = make_run({})
    run.footprints[FULL] = [Footprint(cold_start_s=5.8, rss_mib=573.0, pss_mib=471.0)]
    judged = verdicts(run)
    assert judged["cold start to `/readyz` 200 ≤ 5 s, skills only"] == "yes"
    assert judged["RSS of a serving replica ≤ 500 MiB, skills only"] == "yes"
    assert judged["cold start to `/readyz` 200 ≤ 5 s, every family (as shipped)"] == "no"
    assert judged["RSS of a serving replica ≤ 500 MiB, every family (as shipped)"] == "no"
