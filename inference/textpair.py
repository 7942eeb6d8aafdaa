"""The text-pair family: do two texts mean the same? Pairs go through an adaptive batcher into one vectorised
call of the model's Pipeline (30 engineered features, scaled, logistic regression). No HTTP here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sklearn

from inference.batching import AdaptiveBatcher
from inference.faults import FaultInjector
from inference.pair_features import PAIR_FEATURES
from inference.schemas import ModelRef, TextPairModelInfo, TextPairRequest, TextPairResult
from inference.text_artifacts import TextModel
from inference.textpair_catalogue import LABELS, SAME_MEANING
from inference.texts import check_text

Pair = tuple[str, str]


class TextPairScorer:
    def __init__(
        self,
        model: TextModel,
        *,
        max_text_chars: int = 2000,
        faults: FaultInjector | None = None,
        batcher_max_size: int = 1024,
        batcher_max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.max_text_chars = max_text_chars
        self.faults = faults or FaultInjector()
        self._same = list(model.labels).index(LABELS[SAME_MEANING])
        self.batcher: AdaptiveBatcher[Pair, float] = AdaptiveBatcher(
            self._probabilities,
            name="textpair",
            max_batch_size=batcher_max_size,
            max_wait_ms=batcher_max_wait_ms,
            on_dispatch=on_batch,
        )

    async def predict(self, request: TextPairRequest) -> TextPairResult:
        pair = (
            check_text(request.text1, field_name="text1", max_chars=self.max_text_chars),
            check_text(request.text2, field_name="text2", max_chars=self.max_text_chars),
        )
        same = await self.batcher.submit(pair)
        prediction = int(same >= 0.5)
        return TextPairResult(
            prediction=prediction,
            label=LABELS[prediction],
            confidence=same if prediction == SAME_MEANING else 1.0 - same,
            model=ModelRef(name=self.model.name, version=self.model.version),
            timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )

    def model_info(self) -> TextPairModelInfo:
        metadata = self.model.metadata
        return TextPairModelInfo(
            name=self.model.name,
            version=self.model.version,
            type=str(metadata.get("type", "")),
            feature_count=len(PAIR_FEATURES),
            features=list(PAIR_FEATURES),
            metrics=metadata.get("metrics", {}),
            trained_at=metadata.get("trained_at"),
        )

    def close(self) -> None:
        self.batcher.close()

    def _probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        """P(same meaning) for each pair."""
        self.faults.before_call(self.model.name)
        with sklearn.config_context(
            assume_finite=True, skip_parameter_validation=True
        ):  # the features are finite by construction
            probabilities = self.model.estimator.predict_proba(list(pairs))
        return [float(p) for p in probabilities[:, self._same]]
