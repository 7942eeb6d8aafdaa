"""Reading a server's /metrics in tests, and Prometheus's own `promtool`."""

from __future__ import annotations

import httpx

from tests.utils.needs import tool


def promtool() -> str:
    """The path of `promtool` (tests.utils.needs: a skip on a laptop without it, a failure in CI)."""
    return tool("promtool", "apt-get install prometheus")


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


def rows_dropped(table: str, reason: str) -> float:
    """inference_rows_dropped_total{table, reason} in this process (the writers run in process in these tests)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("inference_rows_dropped_total", {"table": table, "reason": reason}) or 0.0
