"""The benchmark harness runs end to end (1-second workloads) against real servers, with no request failing."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_the_harness_compares_the_service_with_the_fastapi_peer(trained_versions):
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is missing in CI: .ci/run must install it")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench",
            "--duration",
            "1",
            "--rounds",
            "1",
            "--targets",
            "service",
            "fastapi",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = re.findall(r"^  (.+?)\s+(\d+) QPS .* errors (\d+)$", run.stdout, flags=re.MULTILINE)
    assert len(rows) == 12  # 6 workloads x 2 targets
    assert all(int(qps) > 0 for _, qps, _ in rows)
    assert all(errors == "0" for _, _, errors in rows), run.stdout
    assert "| infer, 64 clients |" in run.stdout and "In-process limit" in run.stdout
