"""Reading a server's /metrics in tests, and Prometheus's own `promtool`."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest


def promtool() -> str:
    """The path of `promtool`; a skip on a laptop without it, a failure in CI (which must install it)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: .ci/run must install Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def sample_sum(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of every sample of `name` in one /metrics page whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_total(url: str, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (samples of all workers add up)."""
    return sample_sum(httpx.get(url + "/metrics").text, name, **labels)
