"""One loaded version of the intent family: query text in, intent and verticals out, from the `classic` or the
`ensemble` variant. It implements the family protocol (`inference.serving.protocol.Scorer`).

Each variant has its own adaptive batcher (and thread), so a slow ensemble never holds up classic answers; or the
ensemble runs as a service of its own (`inference.families.intent.apart`), and this worker holds no ensemble model.
The ensemble degrades gracefully: when it fails, is absent or misses its latency budget, classic answers, flagged as
a fallback; when classic fails too, the configured default intent answers, flagged, with HTTP 200. The intents and
verticals are the models' own labels (their metadata). No HTTP here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import sklearn

from inference.errors import InferenceError, InvalidHeader, InvalidRequest, Overloaded
from inference.families.intent.apart import EnsembleAbsent, EnsembleService, Vote
from inference.families.intent.variants import (
    CLASSIC,
    DEFAULT_VARIANT,
    ENSEMBLE,
    PREFERENCE_HEADER,
    VARIANT_MODELS,
    VARIANTS,
)
from inference.families.texts import CHUNK_UNITS, check_request_chars, check_text, text_units
from inference.faults import FaultInjector
from inference.logs import LOGGER_NAME, EveryInterval
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.schemas import IntentResult, VerticalScore
from inference.serving.batching import AdaptiveBatcher, BatcherOptions, CostModel
from inference.serving.cache import CacheKey, input_hash
from inference.serving.protocol import LabelledAnswer, Measure
from inference.serving.routing import choose_variant
from inference.store.text_artifacts import TextModel

if TYPE_CHECKING:
    from inference.monitoring.observer import Observer

logger = logging.getLogger(LOGGER_NAME)

FAMILY = "intent"
GROUPS = "groups"  # the control naming groups of user ids, for the ensemble flag's allowed_users
# A call's cost before the batcher has measured this machine, per variant (the ensemble runs 7 models); measured
# calls replace them within a few batches.
TEXT_CALL_S = {CLASSIC: 0.0005, ENSEMBLE: 0.005}
TEXT_UNIT_S = {CLASSIC: 0.0001, ENSEMBLE: 0.001}


@dataclass(frozen=True)
class IntentQuery:
    """One text to classify. `field` names it in an error (`text`, `texts[3]`); `variant` is settled by
    `IntentScorer.prepare` from the caller's preference (a header) or the split, sticky per `user_id`."""

    text: str
    field: str = "text"
    preference: str | None = None
    user_id: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class IntentModels:
    classic: TextModel
    ensemble: TextModel | None  # None when the ensemble runs as its own service
    verticals: TextModel | None = None  # a version may come without vertical detectors

    def variant(self, name: str) -> TextModel:
        model = self.classic if name == CLASSIC else self.ensemble
        if model is None:
            raise LookupError(f"intent {self.classic.version}: the {name} variant runs as its own service")
        return model

    def thresholds(self) -> np.ndarray:
        """Per-vertical decision thresholds (chosen on validation data at training; 0.5 where none was stored),
        in the detector's label order."""
        if self.verticals is None:
            return np.array([])
        stored = self.verticals.metadata.get("thresholds", {})
        return np.array([float(stored.get(vertical, 0.5)) for vertical in self.verticals.labels])


@dataclass(frozen=True)
class EnsembleFlag:
    """The dual-mode flag of the ensemble, changed at runtime for the whole deployment (the admin API, through the
    control store): off, every caller is answered by classic, those asking for the ensemble by header included;
    on, the users listed always get it and the others by `rollout_percentage` (sticky per user id)."""

    enabled: bool = True
    rollout_percentage: float = 10.0
    allowed_users: frozenset[str] = frozenset()
    fallback: str = CLASSIC  # what answers when the ensemble is off, fails or is slow

    @classmethod
    def from_split(cls, split: Mapping[str, float]) -> EnsembleFlag:
        total = sum(split.values())
        return cls(rollout_percentage=100.0 * split.get(ENSEMBLE, 0.0) / total)

    @classmethod
    def from_dict(cls, stored: Mapping[str, object]) -> EnsembleFlag:
        # The control store's JSON, checked by the admin API when it was written.
        users = stored.get("allowed_users", [])
        percentage = stored.get("rollout_percentage", 0.0)
        return cls(
            enabled=bool(stored.get("enabled", True)),
            rollout_percentage=float(percentage) if isinstance(percentage, int | float | str) else 0.0,
            allowed_users=frozenset(str(user) for user in users) if isinstance(users, list | tuple) else frozenset(),
            fallback=str(stored.get("fallback", CLASSIC)),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "rollout_percentage": self.rollout_percentage,
            "allowed_users": sorted(self.allowed_users),
            "fallback": self.fallback,
        }


@dataclass(frozen=True)
class IntentPolicy:
    split: Mapping[str, float] = field(default_factory=lambda: {CLASSIC: 90.0, ENSEMBLE: 10.0})
    salt: str = "variants-v1"
    ensemble_budget_s: float = 0.25
    default_intent: str = "informational"
    max_text_chars: int = 2000
    max_request_chars: int = 200_000


def predict_intents(
    model: TextModel, verticals: TextModel | None, thresholds: np.ndarray, texts: Sequence[str], *, variant: str
) -> list[IntentResult]:
    """One vectorised call per model: the intent with its probability, and the verticals over threshold."""
    # Inputs are our own validated texts: scikit-learn's finiteness and parameter checks are skipped.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        intent_probabilities = model.predict_proba(list(texts))
        vertical_scores = None if verticals is None else verticals.predict_proba(list(texts))
    best = intent_probabilities.argmax(axis=1)
    votes = [(model.labels[column], float(intent_probabilities[row, column])) for row, column in enumerate(best)]
    return intent_results(votes, vertical_scores, verticals, thresholds, variant=variant, version=model.version)


def vertical_scores(verticals: TextModel, texts: Sequence[str]) -> np.ndarray:
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return np.asarray(verticals.predict_proba(list(texts)))


def intent_results(
    votes: Sequence[Vote],
    vertical_scores: np.ndarray | None,
    verticals: TextModel | None,
    thresholds: np.ndarray,
    *,
    variant: str,
    version: str,
) -> list[IntentResult]:
    """The answers from each text's intent and probability and the detectors' scores (None without detectors)."""
    results = []
    for row, (intent, confidence) in enumerate(votes):
        detected: list[tuple[str, float]] = []
        if verticals is not None and vertical_scores is not None:
            detected = sorted(
                (
                    (verticals.labels[i], float(vertical_scores[row, i]))
                    for i in np.flatnonzero(vertical_scores[row] >= thresholds)
                ),
                key=lambda item: -item[1],
            )
        results.append(
            IntentResult.model_construct(
                intent=intent,
                confidence=confidence,
                verticals=[VerticalScore.model_construct(vertical=name, score=score) for name, score in detected],
                variant=variant,
                model_version=version,
                fallback=False,
            )
        )
    return results


class IntentScorer:
    answer_type = IntentResult

    def __init__(
        self,
        models: IntentModels,
        policy: IntentPolicy,
        *,
        faults: FaultInjector | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        batching: BatcherOptions | None = None,
        remote: EnsembleService | None = None,
    ) -> None:
        """`remote`: the ensemble's own service, when it runs apart (then `models.ensemble` is None)."""
        self.models = models
        self.remote = remote
        # What became of the answers the ensemble was chosen for, in this worker: `answered`, or the fallback reason.
        self.ensemble_outcomes: Counter[str] = Counter()
        self.policy = policy
        self.version = models.classic.version
        self.faults = faults or FaultInjector()
        self.metrics = metrics or NoMetrics()
        self._thresholds = models.thresholds()
        self.ensemble = EnsembleFlag.from_split(policy.split)  # the admin API's flag replaces it at runtime
        # Named groups of user ids (the admin API's `groups` control): a group's name in the flag's allowed_users
        # lets in its members. `_allowed`: the flag's users and its groups' members, worked out when either changes.
        self.groups: dict[str, frozenset[str]] = {}
        self._allowed: tuple[EnsembleFlag, dict[str, frozenset[str]], frozenset[str]] | None = None
        self._rng = rng or random.Random()
        self._fallback_log = EveryInterval(10.0)
        options = batching or BatcherOptions()
        self.batchers: dict[str, AdaptiveBatcher[str, IntentResult]] = {
            variant: options.batcher(
                functools.partial(self._predict, variant),
                name=f"intent-{variant}",
                cost=text_units,
                chunk_units=CHUNK_UNITS,
                cost_model=CostModel(seconds_per_call=TEXT_CALL_S[variant], seconds_per_unit=TEXT_UNIT_S[variant]),
                family=FAMILY if variant == CLASSIC else None,  # an overloaded ensemble is answered by classic
            )
            for variant in VARIANTS
            if variant == CLASSIC or remote is None
        }

    # --- the family protocol ---------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        models = [self.models.classic, self.models.ensemble, self.models.verticals]
        return [model.name for model in models if model is not None]

    def prepare(self, requests: Sequence[IntentQuery]) -> list[IntentQuery]:
        """One variant for the whole request (a batch is answered by one variant), from the first query's
        preference and caller."""
        if not requests:
            return []
        first = requests[0]
        field = first.field.split("[", 1)[0]
        check_request_chars(
            (query.text for query in requests), field_name=field, max_chars=self.policy.max_request_chars
        )
        variant = self.choose_variant(first.preference, first.user_id)
        return [replace(query, variant=variant) for query in requests]

    def segment(self, request: IntentQuery) -> str:
        return request.variant or CLASSIC

    def cache_key(self, request: IntentQuery) -> CacheKey:
        return CacheKey(FAMILY, VARIANT_MODELS[request.variant or CLASSIC], self.version, input_hash(request.text))

    def cacheable(self, answer: IntentResult) -> bool:
        return not answer.fallback  # a degraded answer is never kept

    def from_cache(self, answer: IntentResult) -> IntentResult:
        return answer.model_copy(update={"cached": True})

    async def score_many(self, requests: Sequence[IntentQuery]) -> list[IntentResult | InferenceError]:
        outcomes: list[IntentResult | InferenceError | None] = [None] * len(requests)
        by_variant: dict[str, list[int]] = {}
        for index, query in enumerate(requests):
            try:
                check_text(query.text, field_name=query.field, max_chars=self.policy.max_text_chars)
            except InvalidRequest as err:
                outcomes[index] = err
            else:
                by_variant.setdefault(query.variant or CLASSIC, []).append(index)
        for variant, indices in by_variant.items():
            answers = await self._answer([requests[i].text for i in indices], variant)
            for index, answer in zip(indices, answers, strict=True):
                outcomes[index] = answer
        return [outcome for outcome in outcomes if outcome is not None]

    def observe(self, request: IntentQuery, answer: IntentResult, observer: Observer) -> None:
        observer.answer(FAMILY, VARIANT_MODELS.get(answer.variant, answer.variant), self.version, answer.confidence)

    def measure(self, answer: object) -> Measure | None:
        # Default and fallback answers (another variant answered) are not compared.
        if not isinstance(answer, IntentResult) or answer.fallback or not answer.model_version:
            return None
        return Measure(answer.confidence, answer.intent, answer.model_version)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()

    def answer_labelled(
        self, items: Sequence[Any], *, max_text_chars: int, first_index: int = 0
    ) -> list[LabelledAnswer]:
        """Labelled queries (`text`, `intent`), answered by both variants (`LabelledFeedback`)."""
        labels = self.labels()
        for index, item in enumerate(items, start=first_index):
            check_text(item.text, field_name=f"items[{index}].text", max_chars=max_text_chars)
            if item.intent not in labels:
                raise InvalidRequest(
                    f"items[{index}].intent: {item.intent!r} is not an intent of {self.version}; expected one of "
                    f"{', '.join(labels)}"
                )
        found = self.intents_by_variant([item.text for item in items])
        return [
            LabelledAnswer(variant, item.intent, predicted)
            for variant, answers in found.items()
            for item, predicted in zip(items, answers, strict=True)
        ]

    def intents_by_variant(self, texts: Sequence[str]) -> dict[str, list[str]]:
        """The intent each variant gives each text, straight from the models (no cache, batcher or fallback): what
        labelled feedback is scored with."""
        found = {}
        for variant in VARIANTS:
            if variant == ENSEMBLE and self.remote is not None:
                try:
                    found[variant] = [intent for intent, _ in self.remote.classify_blocking(texts, self.version)]
                except EnsembleAbsent as err:  # the items are kept, scored by classic only
                    self._fell_back(err.reason, err, count=0)  # not an answer: the ensemble's stability is unchanged
                continue
            model = self.models.variant(variant)
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                probabilities = model.predict_proba(list(texts))
            found[variant] = [model.labels[column] for column in probabilities.argmax(axis=1)]
        return found

    def labels(self) -> tuple[str, ...]:
        return tuple(self.models.classic.labels)

    # --- runtime controls (the admin API, through the control store) -----------------------------------------

    def controls(self) -> dict[str, dict[str, object]]:
        return {"ensemble": self.ensemble.to_dict(), GROUPS: self._groups_dict()}

    def control(self, name: str) -> dict[str, object]:
        if name == GROUPS:
            return self._groups_dict()
        if name != "ensemble":
            raise InvalidRequest(f"control: intent has two, `ensemble` and `{GROUPS}`, not {name!r}")
        return self.ensemble.to_dict()

    def apply_control(self, controls: Mapping[str, Mapping[str, object]]) -> None:
        if "ensemble" in controls:
            self.ensemble = EnsembleFlag.from_dict(controls["ensemble"])
        if GROUPS in controls:
            # The control store's JSON, checked by the admin API when it was written; an empty group is none.
            self.groups = {
                str(name): frozenset(str(user) for user in members)
                for name, members in controls[GROUPS].items()
                if isinstance(members, list | tuple) and members
            }

    def allowed(self) -> frozenset[str]:
        """The users the ensemble always answers: the flag's, and the members of the groups it names (worked out
        again only when the flag or the groups are replaced)."""
        flag, groups = self.ensemble, self.groups
        if self._allowed is None or self._allowed[0] is not flag or self._allowed[1] is not groups:
            members = flag.allowed_users.union(*(groups[name] for name in flag.allowed_users if name in groups))
            self._allowed = (flag, groups, members)
        return self._allowed[2]

    def _groups_dict(self) -> dict[str, object]:
        return {name: sorted(members) for name, members in sorted(self.groups.items())}

    # --- the variants --------------------------------------------------------------------------------------------

    def choose_variant(self, preference: str | None, user_id: str | None) -> str:
        """The header's variant when given, else the ensemble flag: its allowed users, then its rollout share
        (sticky per user id when there is one). With the flag off, classic for everyone, header callers too."""
        if preference is not None and preference not in VARIANTS:
            raise InvalidHeader(f"{PREFERENCE_HEADER}: expected one of {', '.join(VARIANTS)}, got {preference!r}")
        flag = self.ensemble
        if not flag.enabled:
            if preference == ENSEMBLE:
                self.metrics.fallback(FAMILY, self.version, "ensemble_disabled")
            return CLASSIC
        if preference is not None:
            return preference
        if user_id is not None and user_id in self.allowed():  # a user named, or a member of a group named
            return ENSEMBLE
        share = min(max(flag.rollout_percentage, 0.0), 100.0)
        weights = {CLASSIC: 100.0 - share, ENSEMBLE: share}
        return choose_variant(weights, caller_id=user_id, salt=self.policy.salt, rng=self._rng)

    def _predict(self, variant: str, texts: Sequence[str]) -> list[IntentResult]:
        model = self.models.variant(variant)
        self.faults.before_call(model.name)
        if self.models.verticals is not None:
            self.faults.before_call(self.models.verticals.name)
        return predict_intents(model, self.models.verticals, self._thresholds, texts, variant=variant)

    async def _ensemble(self, texts: list[str]) -> list[IntentResult]:
        if self.remote is None:
            return await self.batchers[ENSEMBLE].submit_many(texts)
        votes = await self.remote.classify(texts, self.version)
        labels = set(self.models.classic.labels)
        if len(votes) != len(texts) or any(intent not in labels for intent, _ in votes):
            raise EnsembleAbsent("ensemble_error", f"the ensemble's service answered {len(votes)} unusable votes")
        verticals = self.models.verticals
        scores = None if verticals is None else await asyncio.to_thread(vertical_scores, verticals, texts)
        return intent_results(votes, scores, verticals, self._thresholds, variant=ENSEMBLE, version=self.version)

    async def _answer(self, texts: list[str], variant: str) -> list[IntentResult]:
        reason = None
        if variant == ENSEMBLE:
            self.metrics.wanted(FAMILY, self.version, ENSEMBLE, len(texts))
            # Past its budget the ensemble's part is cancelled: its chunks not yet computed are skipped.
            try:
                answers = await asyncio.wait_for(self._ensemble(texts), self.policy.ensemble_budget_s)
            except TimeoutError:
                reason = self._fell_back("ensemble_timeout", None, len(texts))
            except Overloaded:
                reason = self._fell_back("ensemble_overloaded", None, len(texts))
            except EnsembleAbsent as err:
                reason = self._fell_back(err.reason, err, len(texts))
            except Exception as err:  # any failure of the ensemble is answered by classic
                reason = self._fell_back("ensemble_error", err, len(texts))
            else:
                self.ensemble_outcomes["answered"] += len(texts)
                return answers
        try:
            answers = await self.batchers[CLASSIC].submit_many(texts)
        except Overloaded:  # not a failure: the caller is told to come back (503, Retry-After)
            raise
        except Exception as err:  # every model failed: the configured default answers
            self._fell_back("default_answer", err)
            return [self._default_answer() for _ in texts]
        if reason is not None:
            return [answer.model_copy(update={"fallback": True, "fallback_reason": reason}) for answer in answers]
        return answers

    def _default_answer(self) -> IntentResult:
        return IntentResult.model_construct(
            intent=self.policy.default_intent,
            confidence=0.0,
            verticals=[],
            variant=DEFAULT_VARIANT,
            model_version=None,
            fallback=True,
            fallback_reason="default_answer",
        )

    def _fell_back(self, reason: str, error: BaseException | None, count: int = 1) -> str:
        self.metrics.fallback(FAMILY, self.version, reason)
        if reason.startswith("ensemble_") and count:
            self.ensemble_outcomes[reason] += count
        held_back = self._fallback_log.allow()
        if held_back is not None:
            logger.warning(
                "intent fallback (%s)%s; %d more since the last such line",
                reason,
                f": {type(error).__name__}: {error}" if error else "",
                held_back,
            )
        return reason
