"""Reading a server's /metrics in tests."""

from __future__ import annotations

import httpx


def metric_total(url: str, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (samples of all workers add up)."""
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
