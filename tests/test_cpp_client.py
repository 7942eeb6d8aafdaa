"""The C++ client: built with CMake, its GoogleTest suite run by ctest against real servers (a normal one and a
deliberately slow one), and its benchmark against a bare curl call."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_the_ctest_suite_passes_against_real_servers_with_no_test_skipped(cpp_build, server, slow_server):
    env = {**os.environ, "INFERENCE_URL": server.url, "INFERENCE_SLOW_URL": slow_server.url}
    run = subprocess.run(
        ["ctest", "--test-dir", str(cpp_build), "--output-on-failure", "-j2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:]
    summary = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", run.stdout)
    assert summary and summary.group(2) == "0" and int(summary.group(3)) >= 40, run.stdout[-2000:]
    assert "Skipped" not in run.stdout  # the integration tests ran against the servers


def test_the_clients_own_cost_over_a_bare_curl_call_is_under_2_ms(cpp_build, server):
    run = subprocess.run(
        [str(cpp_build / "bench_intent_client"), server.url, "600"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    print(run.stdout)
    overhead = dict(re.findall(r"(overhead_p\d+_ms)=(-?[\d.]+)", run.stdout))
    assert float(overhead["overhead_p50_ms"]) < 2.0 and float(overhead["overhead_p95_ms"]) < 2.0
