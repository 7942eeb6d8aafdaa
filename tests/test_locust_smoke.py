"""A short headless locust run against a real server: every profile runs and no request fails."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_locust_profiles_run_without_errors(server, tmp_path):
    locust = Path(sys.executable).parent / "locust"
    prefix = tmp_path / "smoke"
    run = subprocess.run(
        [
            str(locust),
            "-f",
            "loadtests/locustfile.py",
            "--host",
            server.url,
            "--headless",
            "-u",
            "10",
            "-r",
            "10",
            "-t",
            "6s",
            "--csv",
            str(prefix),
            "--only-summary",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(f"{prefix}_stats.csv") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["skills/infer"]["Request Count"]) > 50
    assert int(rows["skills/infer/batch"]["Request Count"]) > 0
    assert int(rows["classify"]["Request Count"]) > 0 and int(rows["predict"]["Request Count"]) > 0
