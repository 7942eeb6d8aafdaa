"""The service's objectives, from the requirement documents: latency per endpoint, availability, cache hit ratio
per family. One place: the Prometheus alerts are generated from them (k8s/monitoring/rules.py) and the benchmark
judges its runs against the same figures (loadtests/report.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyObjective:
    family: str
    endpoint: str  # single, batch or oip (the `endpoint` label of inference_request_duration_seconds)
    p95_ms: float
    segment: str | None = None  # the intent variant; None: every segment of the endpoint
    source: str = ""

    @property
    def name(self) -> str:
        return "/".join(part for part in (self.family, self.endpoint, self.segment) if part)


LATENCY = [
    LatencyObjective("skills", "single", 5.0, source="skills infer P95 at 1 client"),
    LatencyObjective("skills", "oip", 5.0, source="the same scoring over the Open Inference Protocol"),
    LatencyObjective("skills", "batch", 20.0, source="skills infer/batch of 100 items P95"),
    LatencyObjective("intent", "single", 5.0, "classic", source="intent requirement: P95 < 5 ms"),
    LatencyObjective("intent", "single", 25.0, "ensemble", source="dual-mode requirement: ensemble P95 <= 25 ms"),
    LatencyObjective("intent", "batch", 100.0, source="intent requirement: 100 texts in < 100 ms"),
    LatencyObjective("textpair", "single", 5.0, source="text-pair requirement: P95 < 5 ms"),
]
AVAILABILITY = 0.999  # of scoring requests answered without a server error, over 30 days
CACHE_HIT_RATIO = {"skills": 0.80, "intent": 0.60}  # the caching requirement: skills > 80%, intent >= 60%
# The nightly batch scorer (k8s/batch/nightly.yaml, 02:00 every day): late when no incremental run has succeeded for
# a day and two hours; slow when its latest success took this many times its usual duration.
BATCH_LATE_AFTER_H = 26.0
# The dual-mode requirement's go/no-go rule: the ensemble goes to full production when its accuracy beats classic's
# by more than 10% (relative), on labelled feedback.
ENSEMBLE_GO_IMPROVEMENT = 0.10
BATCH_SLOWER_THAN_USUAL = 1.5


def latency_ms(family: str, endpoint: str, segment: str | None = None) -> float:
    """The P95 objective of an endpoint, in milliseconds."""
    for objective in LATENCY:
        if (objective.family, objective.endpoint, objective.segment) == (family, endpoint, segment):
            return objective.p95_ms
    raise KeyError(f"no latency objective for {family} {endpoint} {segment or ''}".rstrip())
