"""The service's objectives, from the requirement documents: availability, the batch scorer's and the ensemble's
go/no-go matrix here; latency per endpoint and the cache hit ratio in each family's registration
(`FamilySpec.objectives`, `.cache_hit_ratio`),
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


@dataclass(frozen=True)
class GoNoGoCriterion:
    """A criterion of the go/no-go matrix: scored 0 up to `minimum`, 1 from `target` on, linearly between (a
    `target` below `minimum` means lower is better), and weighted."""

    name: str
    minimum: float
    target: float
    weight: float


# The dual-mode requirement's go/no-go matrix for the ensemble's full production ("Decision Matrix"): score =
# accuracy x 0.4 + satisfaction x 0.3 + cost x 0.2 + stability x 0.1, and it proceeds above 0.75. The requirement
# gives each criterion's minimum and target but not how a value between them scores: linearly, as above.
GO_NO_GO_CRITERIA = (
    GoNoGoCriterion("accuracy", ENSEMBLE_GO_IMPROVEMENT, 0.15, 0.4),  # the ensemble's accuracy over classic's
    GoNoGoCriterion("satisfaction", 7.0, 9.0, 0.3),  # the mean rating (1-10) of callers shown the ensemble
    GoNoGoCriterion("cost", 1.00, 0.50, 0.2),  # the ensemble's cost per request over classic's: lower is better
    GoNoGoCriterion("stability", 0.99, 0.999, 0.1),  # the share of the ensemble's answers it gave itself
)
GO_NO_GO_PROCEED_ABOVE = 0.75
