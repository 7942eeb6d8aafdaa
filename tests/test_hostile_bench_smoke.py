"""loadtests/hostile.py runs end to end (1-second runs) against a real server: a refused kind and an accepted heavy
one under normal traffic, and the overload runs; it prints its tables with figures it measured. Timings are
printed, not judged: the goals are read off the full run (docs/reliability.md)."""

import re
import subprocess
import sys

import pytest

from tests.utils.needs import tool
from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_the_hostile_load_test_measures_attacks_and_an_overload(trained_versions, text_reports):
    tool("wrk", "apt-get install wrk")
    command = [sys.executable, "-m", "loadtests.hostile", "--duration", "1", "--count", "3"]
    run = subprocess.run(
        [*command, "--kinds", "nul_student_id", "pair_worst"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"^Normal traffic alone: [\d,]+ req/s, P95 [\d.]+ ms", run.stdout, flags=re.MULTILINE)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in run.stdout.splitlines()}
    assert rows["a NUL in student_id"][1] == "400"
    assert rows["one near-equal pair of 2,000 characters (/predict)"][1] == "200"
    for workload in ("intent batch of 100 texts", "skills batch of 100 items"):
        answers = rows[workload][3]
        assert set(re.findall(r"\b(\d{3}) x\d+", answers)) <= {"200", "503"}, answers  # no 504, no failure
        assert rows[workload][7] == "yes"  # every 503 carried Retry-After
