"""Shadow traffic: a configured version scores a sampled copy of the requests after the answer has been sent, and
the agreement between the version that answered and the shadow is recorded per version pair.

The shadow never answers anyone: its work is scheduled by the service as a task that runs once the response has
gone out (BentoML's background tasks), its failures are logged and counted, never raised. Agreement per pair:
the number of comparisons, the mean absolute score difference and the share of equal labels (high skill: a score
of 0.5 or more), as Prometheus counters (all workers add up) and, for this worker, on the dashboard.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.logs import LOGGER_NAME, EveryInterval
from inference.metrics import Metrics, NoMetrics
from inference.schemas import SkillBatchRequest, SkillInferenceRequest, SkillInferenceResult

if TYPE_CHECKING:
    from inference.skills import SkillsScorer

logger = logging.getLogger(LOGGER_NAME)
HIGH_SKILL = 0.5


@dataclass
class Agreement:
    """One (family, answering version, shadow version) pair, as seen by this worker."""

    family: str
    primary: str
    shadow: str
    compared: int = 0
    abs_diff_sum: float = 0.0
    agreed: int = 0

    @property
    def mean_abs_diff(self) -> float:
        return self.abs_diff_sum / self.compared if self.compared else 0.0

    @property
    def agreement(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0


class SkillsShadow:
    """A shadow version of the skills family."""

    def __init__(
        self,
        version: str,
        scorer: SkillsScorer,
        *,
        share: float,
        metrics: Metrics | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.version = version
        self.scorer = scorer
        self.share = share
        self.metrics = metrics or NoMetrics()
        self.pairs: dict[str, Agreement] = {}
        self._sample = sample
        self._log = EveryInterval(60.0)

    def task(
        self, requests: Sequence[SkillInferenceRequest], answers: Sequence[object]
    ) -> Callable[[], Awaitable[None]] | None:
        """The comparison to run after the response is sent, or None when this request is not sampled (or is the
        shadow version's own answer). `answers` are the primary results, in the requests' order."""
        if self.share <= 0 or self._sample() >= self.share:
            return None
        pairs = [
            (request, answer)
            for request, answer in zip(requests, answers, strict=True)
            if isinstance(answer, SkillInferenceResult) and answer.model_version != self.version
        ]
        if not pairs:
            return None

        async def compare() -> None:
            try:
                await self._compare(pairs)
            except Exception as err:  # the shadow must never hurt: log (once a minute) and go on
                held_back = self._log.allow()
                if held_back is not None:
                    logger.warning(
                        "shadow %s failed: %s: %s (%d more since)", self.version, type(err).__name__, err, held_back
                    )

        return compare

    async def _compare(self, pairs: list[tuple[SkillInferenceRequest, SkillInferenceResult]]) -> None:
        items = [request.model_copy(update={"explain": False}) for request, _ in pairs]
        shadowed = await self.scorer.infer_batch(SkillBatchRequest.model_construct(items=items, explain=False))
        by_primary: dict[str, list[tuple[float, float]]] = {}
        for (_, answer), result in zip(pairs, shadowed.results, strict=True):
            if isinstance(result, SkillInferenceResult):
                by_primary.setdefault(answer.model_version, []).append((answer.score, result.score))
        for primary, scores in by_primary.items():
            self.record("skills", primary, scores)

    def record(self, family: str, primary: str, scores: list[tuple[float, float]]) -> None:
        pair = self.pairs.setdefault(primary, Agreement(family, primary, self.version))
        abs_diff = sum(abs(first - second) for first, second in scores)
        agreed = sum((first >= HIGH_SKILL) == (second >= HIGH_SKILL) for first, second in scores)
        pair.compared += len(scores)
        pair.abs_diff_sum += abs_diff
        pair.agreed += agreed
        self.metrics.shadow(family, primary, self.version, len(scores), abs_diff, agreed)
