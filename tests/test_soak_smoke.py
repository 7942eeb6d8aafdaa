"""The short soak (CI): loadtests/soak.py measures capacity, holds 80% of it for a minute against a real server of
all families with the cache off, and checks what cannot flake on a shared machine: no failed request, the rate held,
RSS growth under 10% after the warm-up. The P95 per window is printed as a figure. The 10-minute figures are in
docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_a_one_minute_soak_at_80_percent_of_capacity_meets_every_criterion(trained_versions, text_reports, tmp_path):
    figures = tmp_path / "soak.json"
    command = [
        sys.executable,
        "-m",
        "loadtests.soak",
        "--minutes",
        "1",
        "--probe-s",
        "10",
        "--warmup-s",
        "20",
        "--window-s",
        "10",
    ]
    run = subprocess.run(
        [*command, "--json", str(figures)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert result["passed"] and result["failures"] == 0
    assert result["requests"] > 0.5 * result["target_rps"] * 60  # the rate was held (locust shares the cores)
    assert len(result["rss_mib"]) >= 10
