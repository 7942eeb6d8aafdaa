"""`python -m inference.client.smoke`, the deployment check of the staging runbook (docs/deployment.md), against
real servers: every check passes on a healthy one, and a failing check is named with its reason and exit 1."""

import subprocess
import sys

from tests.utils.servers import PROJECT_ROOT, free_port


def smoke(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference.client.smoke", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_check_passes_against_a_healthy_service(server):
    run = smoke(server.url, "--metrics-url", f"{server.url}/metrics")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for name in ("health", "skills infer", "intent classic", "intent ensemble", "textpair predict", "canary header"):
        assert any(line.startswith("ok") and f" {name} " in line for line in lines), (name, run.stdout)
    assert any(line.startswith("ok") and " metrics " in line for line in lines), run.stdout
    assert "families served: skills, intent, textpair" in run.stdout
    assert "7 of 7 checks passed" in run.stdout


def test_a_failing_check_is_named_with_its_reason_and_exits_1(slow_server):
    """The slow server's ensemble misses its budget, so classic answers in its place; its metrics are asked of a
    port where nothing listens; and skills, which it does not serve, is named to be checked (as behind one host
    with a unit per family, where /health is one unit's)."""
    metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
    run = smoke(slow_server.url, "--timeout-s", "10", "--metrics-url", metrics_url, "--families", "skills")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("ok") and " intent classic " in line for line in lines), run.stdout
    ensemble = next(line for line in lines if " intent ensemble " in line)
    assert ensemble.startswith("FAIL") and "in the ensemble's place (fallback: ensemble_timeout)" in ensemble
    assert next(line for line in lines if " skills infer " in line).startswith("FAIL")
    metrics = next(line for line in lines if " metrics " in line)
    assert metrics.startswith("FAIL") and "ConnectError" in metrics
    assert "failed: intent ensemble, skills infer, metrics" in run.stdout


def test_bad_arguments_exit_2_naming_the_argument():
    run = smoke("http://127.0.0.1:1", "--timeout-s", "soon")
    assert run.returncode == 2 and "argument --timeout-s: invalid float value: 'soon'" in run.stderr
