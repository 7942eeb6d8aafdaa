"""The benchmark harness runs end to end (1-second workloads) against real servers of every target (this service,
the careful and the naive FastAPI apps, BentoML's batchable API, MLServer; the careful FastAPI app of the text
families), with no request to this service failing, and judges the targets from its own figures."""

import json
import re
import subprocess
import sys

import pytest

from loadtests.report import TARGETS
from tests.utils.needs import tool
from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


def benchmark(module: str, *arguments: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """`python -m module arguments` from the project's root; fails the test, with the output's end, unless it
    exits 0."""
    run = subprocess.run(
        [sys.executable, "-m", module, *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_the_harness_compares_the_service_with_both_peers(trained_versions, text_reports):
    tool("wrk", "apt-get install wrk")
    targets = ("service", "fastapi", "fastapi-naive", "batchable", "mlserver", "bentoml-api", "ceiling")
    # 900 s: the first run creates MLServer's virtual environment.
    run = benchmark("loadtests.bench", "--duration", "1", "--rounds", "1", "--targets", *targets, timeout=900)
    rows = re.findall(r"^  (.+?)\s+(\d+) QPS .* errors (\d+)$", run.stdout, flags=re.MULTILINE)
    assert len(rows) == 58  # 6 workloads x 7 targets, and 8 text workloads x 2 (the service, the text peer)
    # A peer may complete nothing, or time out, in a 1-second workload while it drains the 64-client burst: that
    # is its figure to print. This service must answer, without errors; so must the text peer (no burst there),
    # or its figures would not be of the same answers.
    ours, text_peer = rows[:6] + rows[42:50], rows[50:]
    assert all(int(qps) > 0 for _, qps, _ in ours + text_peer), run.stdout
    assert all(errors == "0" for _, _, errors in ours + text_peer), run.stdout
    assert "careful FastAPI: QPS / P50" in run.stdout
    assert "| infer, 64 clients |" in run.stdout and "In-process limit" in run.stdout
    peers = ("FastAPI done carefully", "FastAPI naive", "this service's scoring behind BentoML", "MLServer")
    for peer in (*peers, "this service, skills routes as @bentoml.api", "HTTP ceiling"):
        assert f"QPS of this service over {peer}" in run.stdout
    judged = re.findall(r"^\| (.+?) \| (.+?) \| (yes|no) \|$", run.stdout, flags=re.MULTILINE)
    assert len(judged) == len(TARGETS), run.stdout[-3000:]  # every target judged, none left unmeasured


def test_the_cache_memory_benchmark_runs_and_prints_the_workers_rss(trained_versions):
    run = benchmark("loadtests.cache_memory", "--keys", "20000", "--max-entries", "2000", timeout=600)
    rows = re.findall(r"^\| ([\d,]+) \| ([\d.]+) \|$", run.stdout, flags=re.MULTILINE)
    assert [keys for keys, _ in rows] == [f"{n:,}" for n in range(0, 20001, 2000)], run.stdout
    assert all(float(rss) > 0 for _, rss in rows)
    print(run.stdout[-1500:])


def test_the_unit_memory_benchmark_sums_a_units_supervisor_and_its_worker(trained_versions, tmp_path):
    figures = tmp_path / "units.json"
    run = benchmark(
        "loadtests.unit_memory", "--units", "skills", "--requests", "20", "--json", str(figures), timeout=300
    )
    rows = re.findall(r"^\| skills \| 1 \| (\d+) \| (\d+) \| (\d+) \| (yes|no)", run.stdout, flags=re.MULTILINE)
    assert len(rows) == 1, run.stdout
    pss_total, pss_workers, rss_total = (int(figure) for figure in rows[0][:3])
    assert 0 < pss_workers < pss_total <= rss_total, run.stdout  # the supervisor's share is in the total only
    (measured,) = json.loads(figures.read_text())["units"]["skills"]["rounds"]
    assert (measured["processes"], measured["workers"], measured["requests"]) == (2, 1, 20)


def test_the_profiler_writes_a_flame_graph_and_names_where_the_samples_are(trained_versions, tmp_path):
    tool("wrk", "apt-get install wrk")
    run = benchmark(
        "loadtests.profile", "--only", "skills-batch", "--seconds", "3", "--out", str(tmp_path), timeout=300
    )
    assert (tmp_path / "skills-batch.svg").read_text().lstrip().startswith("<?xml")
    shares = re.findall(r"^\s+([\d.]+)%  (.+)$", run.stdout, flags=re.MULTILINE)
    assert len(shares) >= 10 and all(0 < float(share) <= 100 for share, _ in shares), run.stdout
    assert "endpoint (inference/http/scoring.py)" in run.stdout, run.stdout  # the scoring route


def test_the_tails_benchmark_runs_both_configurations(trained_versions):
    run = benchmark("loadtests.tails", "--seconds", "1", "--rounds", "1", timeout=300)
    rows = re.findall(r"^\| 1 \| (.+?) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", run.stdout, flags=re.MULTILINE)
    assert [name for name, *_ in rows] == ["prediction log on (shipped; SQLite)", "prediction log off"], run.stdout
    assert all(int(requests) > 0 and float(p50) <= float(p99) <= float(p999) for _, requests, p50, p99, p999 in rows)


def test_the_flush_benchmark_prints_each_flush_and_the_longest_wait_beside_it():
    run = benchmark("loadtests.tails", "--flushes", "2", timeout=300)
    rows = re.findall(r"^\| sqlite \| ([\d.]+) \| ([\d.]+) \|$", run.stdout, flags=re.MULTILINE)
    assert len(rows) == 2 and all(float(flush) > 0 and float(wait) >= 0 for flush, wait in rows), run.stdout
