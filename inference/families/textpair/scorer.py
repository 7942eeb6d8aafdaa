"""One loaded version of the text-pair family: do two texts mean the same? Pairs go through an adaptive batcher
into one vectorised call of the model (any scikit-learn estimator taking (text1, text2) pairs, with
`predict_proba`). It implements the family protocol (`inference.serving.protocol.Scorer`). No HTTP here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sklearn

from inference.errors import InferenceError, InvalidRequest
from inference.families.texts import CHUNK_UNITS, check_request_chars, check_text, text_units
from inference.faults import FaultInjector
from inference.schemas import ModelRef, TextPairModelInfo, TextPairRequest, TextPairResult
from inference.serving.batching import AdaptiveBatcher, BatcherOptions, CostModel
from inference.serving.cache import CacheKey, input_hash
from inference.serving.protocol import LabelledAnswer, Measure
from inference.store.text_artifacts import TextModel

if TYPE_CHECKING:
    from inference.monitoring.observer import Observer

FAMILY = "textpair"
TEXTPAIR_MODEL = "textpair"
SAME_MEANING = 1  # `prediction` when the texts mean the same: the model's positive label
# Labels taken to mean "the same" when a model's metadata does not say which of its two labels does.
SAME_MEANING_LABELS = ("1", "true", "yes", "same", "paraphrase")
Pair = tuple[str, str]
# A call's cost before the batcher has measured this machine; measured calls replace them within a few batches.
PAIR_CALL_S = 0.001
PAIR_UNIT_S = 0.0005


def pair_units(pair: Pair) -> float:
    """A pair's cost in units: its two texts'."""
    return text_units(pair[0]) + text_units(pair[1])


def positive_label(model: TextModel) -> str:
    """The label that means "the texts mean the same": `positive_label` in the metadata (set at import or
    training), else the only label of the form 1/true/yes/same/paraphrase."""
    stored = model.metadata.get("positive_label")
    if stored is not None:
        return str(stored)
    candidates = [label for label in model.labels if label.lower() in SAME_MEANING_LABELS]
    if len(candidates) != 1:
        raise ValueError(f"{model.name}:{model.version}: say which of {list(model.labels)} means the same meaning")
    return candidates[0]


class TextPairScorer:
    answer_type = TextPairResult

    def __init__(
        self,
        model: TextModel,
        *,
        max_text_chars: int = 2000,
        max_request_chars: int = 200_000,
        faults: FaultInjector | None = None,
        batching: BatcherOptions | None = None,
    ) -> None:
        self.model = model
        self.version = model.version
        self.max_text_chars = max_text_chars
        self.max_request_chars = max_request_chars
        self.faults = faults or FaultInjector()
        self.positive = positive_label(model)
        self.negative = next(label for label in model.labels if label != self.positive)
        self._same = list(model.labels).index(self.positive)
        self.batcher: AdaptiveBatcher[Pair, float] = (batching or BatcherOptions()).batcher(
            self._probabilities,
            name=FAMILY,
            cost=pair_units,
            chunk_units=CHUNK_UNITS,
            cost_model=CostModel(seconds_per_call=PAIR_CALL_S, seconds_per_unit=PAIR_UNIT_S),
            family=FAMILY,
        )

    # --- the family protocol ---------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return [self.model.name]

    def prepare(self, requests: Sequence[TextPairRequest]) -> Sequence[TextPairRequest]:
        texts = (text for request in requests for text in (request.text1, request.text2))
        check_request_chars(texts, field_name="text1, text2", max_chars=self.max_request_chars)
        return requests

    def segment(self, request: TextPairRequest) -> str:
        return ""

    def cache_key(self, request: TextPairRequest) -> CacheKey:
        return CacheKey(FAMILY, self.model.name, self.version, input_hash([request.text1, request.text2]))

    def cacheable(self, answer: TextPairResult) -> bool:
        return True

    def from_cache(self, answer: TextPairResult) -> TextPairResult:
        return answer.model_copy(update={"cached": True, "timestamp": _now()})

    async def score_many(self, requests: Sequence[TextPairRequest]) -> list[TextPairResult | InferenceError]:
        outcomes: list[TextPairResult | InferenceError | None] = [None] * len(requests)
        pairs: list[tuple[int, Pair]] = []
        for index, request in enumerate(requests):
            try:
                pair = (
                    check_text(request.text1, field_name="text1", max_chars=self.max_text_chars),
                    check_text(request.text2, field_name="text2", max_chars=self.max_text_chars),
                )
            except InvalidRequest as err:
                outcomes[index] = err
            else:
                pairs.append((index, pair))
        sames = await self.batcher.submit_many([pair for _, pair in pairs])
        for (index, _), same in zip(pairs, sames, strict=True):
            outcomes[index] = self._result(same)
        return [outcome for outcome in outcomes if outcome is not None]

    def observe(self, request: TextPairRequest, answer: TextPairResult, observer: Observer) -> None:
        observer.answer(FAMILY, self.model.name, self.version, same_meaning(answer))

    def measure(self, answer: object) -> Measure | None:
        if not isinstance(answer, TextPairResult):
            return None
        return Measure(same_meaning(answer), answer.prediction, answer.model.version)

    def close(self) -> None:
        self.batcher.close()

    # --- beyond the protocol -----------------------------------------------------------------------------------

    def answer_labelled(
        self, items: Sequence[Any], *, max_text_chars: int, first_index: int = 0
    ) -> list[LabelledAnswer]:
        """Labelled pairs (`text1`, `text2`, `same`), answered by the model (`LabelledFeedback`): labels "same"
        and "different"."""
        for index, item in enumerate(items, start=first_index):
            check_text(item.text1, field_name=f"items[{index}].text1", max_chars=max_text_chars)
            check_text(item.text2, field_name=f"items[{index}].text2", max_chars=max_text_chars)
        sames = self.same_meaning_of([(item.text1, item.text2) for item in items])
        return [
            LabelledAnswer("", _same_label(item.same), _same_label(same))
            for item, same in zip(items, sames, strict=True)
        ]

    def describe(self) -> TextPairModelInfo:
        """The model: version, type, features, metrics, when it was trained (`DescribesModels`)."""
        return self.model_info()

    def model_info(self) -> TextPairModelInfo:
        metadata = self.model.metadata
        features = [str(name) for name in metadata.get("features", [])]
        return TextPairModelInfo(
            name=self.model.name,
            version=self.version,
            type=str(metadata.get("type", "")),
            feature_count=len(features),
            features=features,
            metrics=metadata.get("metrics", {}),
            trained_at=metadata.get("trained_at"),
        )

    def _result(self, same: float) -> TextPairResult:
        prediction = int(same >= 0.5)
        return TextPairResult(
            prediction=prediction,
            label=self.positive if prediction == SAME_MEANING else self.negative,
            confidence=same if prediction == SAME_MEANING else 1.0 - same,
            model=ModelRef(name=self.model.name, version=self.version),
            timestamp=_now(),
        )

    def same_meaning_of(self, pairs: Sequence[Pair]) -> list[bool]:
        """Whether the model takes each pair to mean the same, straight from the model (no cache or batcher)."""
        return [probability >= 0.5 for probability in self._probabilities(pairs)]

    def _probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        """P(same meaning) for each pair."""
        self.faults.before_call(self.model.name)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            probabilities = self.model.predict_proba([list(pair) for pair in pairs])
        return [float(p) for p in probabilities[:, self._same]]


def _same_label(same: bool) -> str:
    return "same" if same else "different"


def same_meaning(answer: TextPairResult) -> float:
    """The answer's probability that the texts mean the same."""
    return answer.confidence if answer.prediction == SAME_MEANING else 1.0 - answer.confidence


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
