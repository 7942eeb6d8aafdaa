"""Shadow traffic: a configured version scores a sampled copy of the requests after the answer has been sent, and
the agreement between the version that answered and the shadow is recorded per version pair. Every family:
skills (label: high skill, a score of 0.5 or more), intent (label: the intent; score: its confidence; the same
variant answers again) and text pair (label: the prediction; score: the probability of the same meaning).

The shadow never answers anyone: its work is scheduled by the service as a task that runs once the response has
gone out (BentoML's background tasks), its failures are logged (once a minute), never raised. Agreement per pair:
the number of comparisons, the mean absolute score difference and the share of equal labels, as Prometheus
counters (all workers add up) and, for this worker, on the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.logs import LOGGER_NAME, EveryInterval
from inference.metrics import Metrics, NoMetrics
from inference.schemas import (
    IntentResult,
    SkillBatchRequest,
    SkillInferenceRequest,
    SkillInferenceResult,
    TextPairRequest,
    TextPairResult,
)

if TYPE_CHECKING:
    from inference.intent import IntentClassifier
    from inference.settings import Settings
    from inference.skills import SkillsScorer
    from inference.textpair import TextPairScorer

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


class Shadow:
    """A shadow version of one family: `scorer` is that version's scorer (SkillsScorer, IntentClassifier or
    TextPairScorer)."""

    def __init__(
        self,
        family: str,
        version: str,
        scorer: Any,
        *,
        share: float,
        metrics: Metrics | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        if family not in FAMILY_RULES:
            raise ValueError(f"no shadow for family {family!r}; expected one of {', '.join(FAMILY_RULES)}")
        self.family = family
        self.version = version
        self.scorer = scorer
        self.share = share
        self.metrics = metrics or NoMetrics()
        self.pairs: dict[str, Agreement] = {}
        self._rules = FAMILY_RULES[family]
        self._sample = sample
        self._log = EveryInterval(60.0)

    def task(self, requests: Sequence[Any], answers: Sequence[Any]) -> Callable[[], Awaitable[None]] | None:
        """The comparison to run after the response is sent, or None when this request is not sampled (or holds
        nothing to compare). `answers` are the answers sent, in the requests' order; errors, fallbacks and the
        shadow version's own answers are not compared."""
        if self.share <= 0 or self._sample() >= self.share:
            return None
        rules = self._rules
        pairs = [
            (request, answer)
            for request, answer in zip(requests, answers, strict=True)
            if rules.comparable(answer) and rules.version_of(answer) != self.version
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
                        "shadow %s %s failed: %s: %s (%d more since)",
                        self.family,
                        self.version,
                        type(err).__name__,
                        err,
                        held_back,
                    )

        return compare

    async def _compare(self, pairs: list[tuple[Any, Any]]) -> None:
        shadowed = await self._rules.rescore(self.scorer, pairs)
        by_primary: dict[str, list[tuple[float, float, object, object]]] = {}
        for (_, answer), again in zip(pairs, shadowed, strict=True):
            if again is not None and self._rules.comparable(again):
                primary_score, primary_label = self._rules.measure(answer)
                shadow_score, shadow_label = self._rules.measure(again)
                figures = (primary_score, shadow_score, primary_label, shadow_label)
                by_primary.setdefault(self._rules.version_of(answer), []).append(figures)
        for primary, figures in by_primary.items():
            self.record(primary, figures)

    def record(self, primary: str, figures: list[tuple[float, float, object, object]]) -> None:
        pair = self.pairs.setdefault(primary, Agreement(self.family, primary, self.version))
        abs_diff = sum(abs(first - second) for first, second, _, _ in figures)
        agreed = sum(first_label == second_label for _, _, first_label, second_label in figures)
        pair.compared += len(figures)
        pair.abs_diff_sum += abs_diff
        pair.agreed += agreed
        self.metrics.shadow(self.family, primary, self.version, len(figures), abs_diff, agreed)


@dataclass(frozen=True)
class FamilyRules:
    """How one family's answers are compared: which can be, their version, their (score, label), and how the
    shadow scores the same requests again (one answer, or None, per pair)."""

    comparable: Callable[[Any], bool]
    version_of: Callable[[Any], str]
    measure: Callable[[Any], tuple[float, object]]
    rescore: Callable[[Any, list[tuple[Any, Any]]], Awaitable[list[Any]]]


async def _rescore_skills(scorer: SkillsScorer, pairs: list[tuple[SkillInferenceRequest, Any]]) -> list[Any]:
    items = [request.model_copy(update={"explain": False}) for request, _ in pairs]
    return list((await scorer.infer_batch(SkillBatchRequest.model_construct(items=items, explain=False))).results)


async def _rescore_intent(classifier: IntentClassifier, pairs: list[tuple[str, IntentResult]]) -> list[Any]:
    """The same variant as the answer (classic or ensemble), one call per variant."""
    again: list[Any] = [None] * len(pairs)
    by_variant: dict[str, list[int]] = {}
    for index, (_, answer) in enumerate(pairs):
        by_variant.setdefault(answer.variant, []).append(index)
    for variant, indices in by_variant.items():
        answers = await classifier.classify_many([pairs[i][0] for i in indices], variant=variant)
        for index, answer in zip(indices, answers, strict=True):
            again[index] = answer
    return again


async def _rescore_pairs(scorer: TextPairScorer, pairs: list[tuple[TextPairRequest, TextPairResult]]) -> list[Any]:
    return list(await asyncio.gather(*(scorer.predict(request) for request, _ in pairs)))


def _same_meaning(answer: TextPairResult) -> float:
    return answer.confidence if answer.prediction == 1 else 1.0 - answer.confidence


FAMILY_RULES = {
    "skills": FamilyRules(
        comparable=lambda answer: isinstance(answer, SkillInferenceResult),
        version_of=lambda answer: answer.model_version,
        measure=lambda answer: (answer.score, answer.score >= HIGH_SKILL),
        rescore=_rescore_skills,
    ),
    # Intent: the label is the intent, the score the answer's confidence in it; default and fallback answers
    # (another variant answered) are not compared.
    "intent": FamilyRules(
        comparable=lambda answer: (
            isinstance(answer, IntentResult) and not answer.fallback and bool(answer.model_version)
        ),
        version_of=lambda answer: answer.model_version or "",
        measure=lambda answer: (answer.confidence, answer.intent),
        rescore=_rescore_intent,
    ),
    # Text pair: the label is the prediction, the score the probability of the same meaning.
    "textpair": FamilyRules(
        comparable=lambda answer: isinstance(answer, TextPairResult),
        version_of=lambda answer: answer.model.version,
        measure=lambda answer: (_same_meaning(answer), answer.prediction),
        rescore=_rescore_pairs,
    ),
}


def load_shadows(settings: Settings, metrics: Metrics) -> dict[str, Shadow]:
    """The configured shadow versions, loaded; a family whose shadow cannot load serves without one."""
    from inference.families import FamilyLoader  # here: the families module imports the model libraries

    # The shadow's models load without the service's metrics: its batches and any intent fallback inside it are not
    # the service's answers and must not move their figures or alerts; what it is for is counted by `Shadow`.
    loader = FamilyLoader(settings)
    shadows = {}
    for family, wanted in settings.shadow.items():
        if family not in settings.families:
            logger.error("shadow version %s of %s ignored: this server does not serve %s", wanted, family, family)
            continue
        try:
            version = loader.resolve(family, wanted)
            scorer = loader.load(family, version)
        except Exception as err:
            logger.error("shadow version %s of %s not loaded, serving without a shadow: %s", wanted, family, err)
            continue
        shadows[family] = Shadow(family, version, scorer, share=settings.shadow_share, metrics=metrics)
        logger.info(
            "shadow: %s %s scores %.0f%% of requests after they are answered",
            family,
            version,
            100 * settings.shadow_share,
        )
    return shadows
