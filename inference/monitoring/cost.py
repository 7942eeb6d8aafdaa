"""What requests cost: CPU-seconds and memory (GiB-seconds) per family and segment (the variant for intent, the
skill for skills), from this process's own counters, priced by INFERENCE_COST_CPU_HOUR and
INFERENCE_COST_GIB_HOUR.

At every `charge` (the monitoring timer's tick, once a second) the process's CPU time since the last charge (all
its threads: `time.process_time`) and its resident memory times the wall time since then are shared among the
(family, segment) pairs served meanwhile, in proportion to the time their requests took on the serving path. A
process serving one family (a unit deployed on its own) charges that family exactly what the process used; when
families share a process the split by request time is an estimate (a family whose requests wait on another's work
is charged for the wait). An interval in which nothing was served is charged to nobody and counted
as idle: a replica's idle cost is what scaling to zero saves.

Exported as counters, summed over the workers by Prometheus' multiprocess collector:
inference_cost_cpu_seconds_total, inference_cost_memory_gib_seconds_total, inference_cost_dollars_total and
inference_cost_requests_total {family, segment}, and inference_cost_idle_dollars_total. The recording rule
`inference_cost_per_1k_requests` (k8s/monitoring/prometheusrule.yaml) divides the dollars by the requests.

The charges of the last RECENT_S are also kept in process (`spent`): what the guard reads to price a variant's
recent requests (inference/serving/guard.py).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from inference.monitoring.metrics import _metric

GIB = 1024**3
RECENT_S = 600.0  # charges kept in process for `spent`: the longest window the guard may measure over
MAX_RECENT = 20_000  # a bound on them whatever the number of families and segments


@dataclass(frozen=True)
class Prices:
    cpu_hour: float  # per CPU-hour
    gib_hour: float  # per GiB of resident memory for an hour


@dataclass(frozen=True)
class Charge:
    family: str
    segment: str
    requests: int
    cpu_s: float
    gib_s: float
    dollars: float

    def dollars_per_1k_requests(self) -> float | None:
        return 1000 * self.dollars / self.requests if self.requests > 0 else None


class CostMeter:
    def __init__(
        self,
        prices: Prices,
        *,
        cpu_seconds: Callable[[], float] = time.process_time,
        resident_bytes: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        export: bool = True,
    ) -> None:
        self.prices = prices
        self._cpu_seconds = cpu_seconds
        if resident_bytes is None:
            process = psutil.Process()
            resident_bytes = lambda: process.memory_info().rss  # noqa: E731
        self._resident_bytes = resident_bytes
        self._clock = clock
        self._export = export
        self._lock = threading.Lock()
        self._served: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])  # requests, seconds
        self._charged: dict[tuple[str, str], Charge] = {}  # every charge since the meter started, summed
        self._last_cpu = cpu_seconds()
        self._last_time = clock()
        self._recent: deque[tuple[float, Charge]] = deque(maxlen=MAX_RECENT)  # (when charged, charge), oldest first

    def served(self, family: str, segment: str, seconds: float) -> None:
        """A request answered (or refused, or cut off) after `seconds`: it is charged at the next `charge`."""
        with self._lock:
            entry = self._served[family, segment]
            entry[0] += 1
            entry[1] += seconds

    def charge(self) -> list[Charge]:
        """Share what the process used since the last charge among the requests served since; the charges made."""
        now, cpu = self._clock(), self._cpu_seconds()
        cpu_s, wall_s = max(cpu - self._last_cpu, 0.0), max(now - self._last_time, 0.0)
        self._last_cpu, self._last_time = cpu, now
        gib_s = self._resident_bytes() / GIB * wall_s
        with self._lock:
            served, self._served = self._served, defaultdict(lambda: [0, 0.0])
        dollars = self._price(cpu_s, gib_s)
        if not served:
            if self._export and dollars:
                _metric("Counter", "inference_cost_idle_dollars", _IDLE_HELP, []).inc(dollars)
            return []
        total = sum(seconds for _, seconds in served.values())
        charges = []
        for (family, segment), (requests, seconds) in served.items():
            share = seconds / total if total > 0 else 1.0 / len(served)
            charge = Charge(family, segment, int(requests), cpu_s * share, gib_s * share, dollars * share)
            charges.append(charge)
            self._add_to_totals(charge)
            if self._export:
                _export(charge)
        self._keep_recent(now, charges)
        return charges

    def spent(self, family: str, segment: str, *, since: float) -> tuple[float, int]:
        """Dollars and requests charged to a family and segment by the charges made at or after `since` (on the
        meter's clock), within the last RECENT_S."""
        dollars, requests = 0.0, 0
        with self._lock:
            for charged_at, charge in reversed(self._recent):
                if charged_at < since:
                    break
                if (charge.family, charge.segment) == (family, segment):
                    dollars += charge.dollars
                    requests += charge.requests
        return dollars, requests

    def _keep_recent(self, now: float, charges: list[Charge]) -> None:
        with self._lock:
            self._recent.extend((now, charge) for charge in charges)
            while self._recent and self._recent[0][0] < now - RECENT_S:
                self._recent.popleft()

    def totals(self) -> list[Charge]:
        """What each family and segment was charged since the meter started (this process's requests only), by
        family and segment: the dashboard's cost per 1,000 requests and the go/no-go matrix's cost."""
        with self._lock:
            return [self._charged[key] for key in sorted(self._charged)]

    def _add_to_totals(self, charge: Charge) -> None:
        key = (charge.family, charge.segment)
        with self._lock:
            before = self._charged.get(key)
            if before is not None:
                charge = Charge(
                    charge.family,
                    charge.segment,
                    before.requests + charge.requests,
                    before.cpu_s + charge.cpu_s,
                    before.gib_s + charge.gib_s,
                    before.dollars + charge.dollars,
                )
            self._charged[key] = charge

    def _price(self, cpu_s: float, gib_s: float) -> float:
        return (cpu_s * self.prices.cpu_hour + gib_s * self.prices.gib_hour) / 3600


_IDLE_HELP = "What the process used while it served nothing (CPU and memory, priced): what scaling to zero saves."
_LABELS = ["family", "segment"]


def _export(charge: Charge) -> None:
    labels = (charge.family, charge.segment)
    _metric(
        "Counter", "inference_cost_requests", "Requests charged with the cost below, by family and segment.", _LABELS
    ).labels(*labels).inc(charge.requests)
    _metric(
        "Counter", "inference_cost_cpu_seconds", "CPU-seconds charged to the requests of a family and segment.", _LABELS
    ).labels(*labels).inc(charge.cpu_s)
    _metric(
        "Counter",
        "inference_cost_memory_gib_seconds",
        "Resident memory (GiB) times seconds charged to the requests of a family and segment.",
        _LABELS,
    ).labels(*labels).inc(charge.gib_s)
    _metric(
        "Counter",
        "inference_cost_dollars",
        "CPU and memory charged, priced by INFERENCE_COST_CPU_HOUR and INFERENCE_COST_GIB_HOUR.",
        _LABELS,
    ).labels(*labels).inc(charge.dollars)
