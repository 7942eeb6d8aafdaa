"""The service's objectives, from the requirement documents: availability and the batch scorer's here; latency per
endpoint and the cache hit ratio in each family's registration (`FamilySpec.objectives`, `.cache_hit_ratio`),
gathered by `inference.families.registry.latency_objectives()` and `cache_hit_ratios()`. The Prometheus alerts are generated from them
(k8s/monitoring/rules.py) and the benchmark judges its runs against the same figures (loadtests/report.py)."""

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


AVAILABILITY = 0.999  # of scoring requests answered without a server error, over 30 days
# The nightly batch scorer (k8s/batch/nightly.yaml, 02:00 every day): late when no incremental run has succeeded for
# a day and two hours; slow when its latest success took this many times its usual duration.
BATCH_LATE_AFTER_H = 26.0
# The dual-mode requirement's go/no-go rule: the ensemble goes to full production when its accuracy beats classic's
# by more than 10% (relative), on labelled feedback.
ENSEMBLE_GO_IMPROVEMENT = 0.10
# ... and its floor: a text-family version and variant answering under 80% of the labelled feedback right alerts.
ACCURACY_FLOOR = 0.80
BATCH_SLOWER_THAN_USUAL = 1.5
