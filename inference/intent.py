"""The intent family: query text in, intent and verticals out, from the `classic` or the `ensemble` variant.

Each variant has its own adaptive batcher (and thread), so a slow ensemble never holds up classic answers.
The ensemble degrades gracefully: when it fails or misses its latency budget, classic answers, flagged as a
fallback; when classic fails too, the configured default intent answers, flagged, with HTTP 200. No HTTP here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sklearn

from inference.batching import AdaptiveBatcher
from inference.errors import BatchTooLarge, InvalidHeader, InvalidRequest
from inference.faults import FaultInjector
from inference.intent_catalogue import CLASSIC, ENSEMBLE, VARIANTS
from inference.logs import LOGGER_NAME, EveryInterval
from inference.metrics import Metrics, NoMetrics
from inference.routes import PREFERENCE_HEADER
from inference.routing import choose_variant
from inference.schemas import ErrorDetail, IntentBatchResponse, IntentFailure, IntentResult, VerticalScore
from inference.text_artifacts import TextModel
from inference.texts import check_text

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_VARIANT = "default"  # the `variant` of an answer no model gave


@dataclass(frozen=True)
class IntentModels:
    classic: TextModel
    ensemble: TextModel
    verticals: TextModel

    def variant(self, name: str) -> TextModel:
        return self.classic if name == CLASSIC else self.ensemble

    def thresholds(self) -> np.ndarray:
        """Per-vertical decision thresholds (chosen on validation data at training), in the model's label order."""
        stored = self.verticals.metadata.get("thresholds", {})
        return np.array([float(stored.get(vertical, 0.5)) for vertical in self.verticals.labels])


@dataclass(frozen=True)
class IntentPolicy:
    split: Mapping[str, float] = field(default_factory=lambda: {CLASSIC: 90.0, ENSEMBLE: 10.0})
    salt: str = "variants-v1"
    ensemble_budget_s: float = 0.25
    default_intent: str = "informational"
    max_text_chars: int = 2000
    max_batch_items: int = 1000


def predict_intents(
    model: TextModel, verticals: TextModel, thresholds: np.ndarray, texts: Sequence[str], *, variant: str
) -> list[IntentResult]:
    """One vectorised call per model: the intent with its probability, and the verticals over threshold."""
    # Inputs are our own validated texts: scikit-learn's finiteness and parameter checks are skipped.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        intent_probabilities = model.estimator.predict_proba(list(texts))
        vertical_scores = verticals.estimator.predict_proba(list(texts))
    best = intent_probabilities.argmax(axis=1)
    results = []
    for row, column in enumerate(best):
        detected = sorted(
            (
                (verticals.labels[i], float(vertical_scores[row, i]))
                for i in np.flatnonzero(vertical_scores[row] >= thresholds)
            ),
            key=lambda item: -item[1],
        )
        results.append(
            IntentResult.model_construct(
                intent=model.labels[column],
                confidence=float(intent_probabilities[row, column]),
                verticals=[VerticalScore.model_construct(vertical=name, score=score) for name, score in detected],
                variant=variant,
                model_version=model.version,
                fallback=False,
            )
        )
    return results


class IntentClassifier:
    def __init__(
        self,
        models: IntentModels,
        policy: IntentPolicy,
        *,
        faults: FaultInjector | None = None,
        metrics: Metrics | None = None,
        batcher_max_size: int = 1024,
        batcher_max_wait_ms: float = 0.0,
        rng: random.Random | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.models = models
        self.policy = policy
        self.faults = faults or FaultInjector()
        self.metrics = metrics or NoMetrics()
        self._thresholds = models.thresholds()
        self._rng = rng or random.Random()
        self._fallback_log = EveryInterval(10.0)
        self.batchers = {
            variant: AdaptiveBatcher(
                lambda texts, variant=variant: self._predict(variant, texts),
                name=f"intent-{variant}",
                max_batch_size=batcher_max_size,
                max_wait_ms=batcher_max_wait_ms,
                on_dispatch=on_batch,
            )
            for variant in VARIANTS
        }

    def choose_variant(self, preference: str | None, user_id: str | None) -> str:
        """The header's variant when given, else the configured split (sticky per user id when there is one)."""
        if preference is not None:
            if preference not in VARIANTS:
                raise InvalidHeader(f"{PREFERENCE_HEADER}: expected one of {', '.join(VARIANTS)}, got {preference!r}")
            return preference
        return choose_variant(self.policy.split, caller_id=user_id, salt=self.policy.salt, rng=self._rng)

    async def classify(self, text: str, *, variant: str) -> IntentResult:
        check_text(text, field_name="text", max_chars=self.policy.max_text_chars)
        return (await self._answer([text], variant))[0]

    async def classify_batch(
        self,
        texts: Sequence[str],
        *,
        variant: str,
        answer: Callable[[list[str]], Awaitable[list[IntentResult]]] | None = None,
    ) -> IntentBatchResponse:
        """Classify every valid text (in order); an invalid one gets an error in its place. `answer` replaces
        `classify_many` for the valid texts (the serving layer puts its cache there)."""
        if not texts:
            raise InvalidRequest("texts: must hold at least 1 text")
        if len(texts) > self.policy.max_batch_items:
            raise BatchTooLarge(f"texts: at most {self.policy.max_batch_items} texts per request, got {len(texts)}")
        valid: list[int] = []
        results: list[IntentResult | IntentFailure | None] = [None] * len(texts)
        for index, text in enumerate(texts):
            try:
                check_text(text, field_name=f"texts[{index}]", max_chars=self.policy.max_text_chars)
                valid.append(index)
            except InvalidRequest as err:
                results[index] = IntentFailure(index=index, error=ErrorDetail(**err.to_dict()))
        if valid:
            valid_texts = [texts[i] for i in valid]
            answers = await (answer(valid_texts) if answer else self._answer(valid_texts, variant))
            for index, result in zip(valid, answers, strict=True):
                results[index] = result
        complete = [result for result in results if result is not None]
        return IntentBatchResponse.model_construct(
            results=complete, succeeded=len(valid), failed=len(texts) - len(valid)
        )

    async def classify_many(self, texts: list[str], *, variant: str) -> list[IntentResult]:
        """Answers for texts already checked with `check_text`, in order (with the fallbacks of `classify`)."""
        return await self._answer(texts, variant)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()

    def _predict(self, variant: str, texts: Sequence[str]) -> list[IntentResult]:
        model = self.models.variant(variant)
        self.faults.before_call(model.name)
        self.faults.before_call(self.models.verticals.name)
        return predict_intents(model, self.models.verticals, self._thresholds, texts, variant=variant)

    async def _answer(self, texts: list[str], variant: str) -> list[IntentResult]:
        if variant == ENSEMBLE:
            try:
                return await asyncio.wait_for(self.batchers[ENSEMBLE].submit_many(texts), self.policy.ensemble_budget_s)
            except TimeoutError:
                self._fell_back("ensemble_timeout", None)
            except Exception as err:  # any failure of the ensemble is answered by classic
                self._fell_back("ensemble_error", err)
        try:
            answers = await self.batchers[CLASSIC].submit_many(texts)
        except Exception as err:  # every model failed: the configured default answers
            self._fell_back("default_answer", err)
            return [self._default_answer() for _ in texts]
        if variant == ENSEMBLE:
            return [answer.model_copy(update={"fallback": True}) for answer in answers]
        return answers

    def _default_answer(self) -> IntentResult:
        return IntentResult.model_construct(
            intent=self.policy.default_intent,
            confidence=0.0,
            verticals=[],
            variant=DEFAULT_VARIANT,
            model_version=None,
            fallback=True,
        )

    def _fell_back(self, reason: str, error: BaseException | None) -> None:
        self.metrics.fallback("intent", self.models.classic.version, reason)
        held_back = self._fallback_log.allow()
        if held_back is not None:
            logger.warning(
                "intent fallback (%s)%s; %d more since the last such line",
                reason,
                f": {type(error).__name__}: {error}" if error else "",
                held_back,
            )
