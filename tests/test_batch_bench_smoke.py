"""The batch benchmark runs end to end on both databases (a small population) and reports its figures."""

import json
import subprocess
import sys

import pytest

from tests.utils.servers import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_the_batch_benchmark_reports_full_rerun_incremental_and_pure_scoring(trained_versions, postgres_url, tmp_path):
    out = tmp_path / "batch.json"
    run = subprocess.run(
        [sys.executable, "-m", "loadtests.batch_bench", "--students", "600", "--chunk-size", "200", "--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = {result["database"]: result for result in json.loads(out.read_text())["results"]}
    assert set(results) == {"postgresql", "sqlite"}
    for result in results.values():
        assert result["assessments"] == 4200
        # Durations are reported rounded (0.1 s for a process, 0.01 s for the rest): a short one may read 0.0 on a
        # fast machine. The ratio is of the unrounded times; the process also starts Python and loads the models.
        assert result["full_process_s"] > 0 and result["full_run_s"] >= 0 and result["pure_scoring_s"] >= 0
        assert result["full_process_s"] >= result["full_run_s"]
        assert result["ratio_full_process_to_pure_scoring"] > 1
        assert 0 < result["incremental_students_read"] < 100  # ~5% of 600 changed
        assert result["unchanged_incremental_students_read"] == 0
    assert "| postgresql | 600 x 7 |" in run.stdout
