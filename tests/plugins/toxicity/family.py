"""The family and one loaded version of it. A version is one model in the store, `toxicity-words:<version>`: a
weight per word and a bias (weights.json), probability = sigmoid(bias + the weights of the text's words)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml

from inference.errors import ArtifactError, InferenceError, InvalidRequest
from inference.monitoring.observer import Observer
from inference.serving.cache import CacheKey, input_hash
from inference.serving.protocol import Family, LoadContext, Measure, Scorer, ScorerBase
from inference.settings import Settings
from inference.store.registry import available_model_versions, resolve_model_version
from tests.plugins.toxicity.schema import ToxicityFailure, ToxicityResult
from tests.plugins.toxicity.spec import FAMILY

MODEL = "toxicity-words"
WEIGHTS = "weights.json"
WORD = re.compile(r"[a-z']+")


def import_weights(root: Path, *, version: str, **_: object) -> list[str]:
    """`root/weights.json` ({"bias": float, "words": {word: weight}}) into the store as `version`."""
    weights = json.loads((root / WEIGHTS).read_text())
    if not isinstance(weights.get("words"), dict) or not isinstance(weights.get("bias"), int | float):
        raise ArtifactError(f"{root / WEIGHTS}: expected bias and words")
    with bentoml.models.create(f"{MODEL}:{version}", labels={"family": FAMILY}) as model:
        Path(model.path, WEIGHTS).write_text(json.dumps(weights))
    return [f"{MODEL}:{version}"]


class ToxicityScorer(ScorerBase[str, ToxicityResult]):
    answer_type = ToxicityResult

    def __init__(self, version: str, bias: float, words: dict[str, float], context: LoadContext) -> None:
        self.version, self.bias, self.words = version, bias, words
        self.max_chars = context.settings.max_text_chars
        self.batcher = context.batching.batcher(self._probabilities, name=FAMILY, family=FAMILY)

    def model_names(self) -> list[str]:
        return [MODEL]

    def cache_key(self, request: str) -> CacheKey:
        return CacheKey(FAMILY, MODEL, self.version, input_hash(request))

    def from_cache(self, answer: ToxicityResult) -> ToxicityResult:
        return answer.model_copy(update={"cached": True})

    async def score_many(self, requests: Sequence[str]) -> list[ToxicityResult | InferenceError]:
        valid = [bool(text.strip()) and len(text) <= self.max_chars for text in requests]
        scored = iter(await self.batcher.submit_many([text for text, ok in zip(requests, valid, strict=True) if ok]))
        refusal = InvalidRequest(f"text: 1 to {self.max_chars} characters, not blank")
        return [self._result(next(scored)) if ok else refusal for ok in valid]

    def _result(self, probability: float) -> ToxicityResult:
        return ToxicityResult(toxic=probability >= 0.5, probability=probability, model_version=self.version)

    def observe(self, request: str, answer: ToxicityResult, observer: Observer) -> None:
        observer.answer(FAMILY, MODEL, self.version, answer.probability)

    def measure(self, answer: object) -> Measure | None:
        if not isinstance(answer, ToxicityResult):
            return None
        return Measure(answer.probability, answer.toxic, answer.model_version)

    def close(self) -> None:
        self.batcher.close()

    def _probabilities(self, texts: Sequence[str]) -> list[float]:
        margins = [self.bias + sum(self.words.get(word, 0.0) for word in WORD.findall(text.lower())) for text in texts]
        return [1 / (1 + math.exp(-margin)) for margin in margins]


class ToxicityFamily:
    name = FAMILY

    def model_names(self, settings: Settings, version: str) -> list[str]:
        return [MODEL]

    def versions(self, settings: Settings) -> list[str]:
        return available_model_versions(MODEL)

    def resolve(self, settings: Settings, version: str) -> str:
        return resolve_model_version(MODEL, version)

    def load(self, version: str, context: LoadContext) -> ToxicityScorer:
        stored = bentoml.models.get(f"{MODEL}:{version}")
        weights = json.loads(Path(stored.path, WEIGHTS).read_text())
        return ToxicityScorer(version, float(weights["bias"]), dict(weights["words"]), context)

    def import_artifacts(self, root: Path, version: str) -> list[str]:
        return import_weights(root, version=version)

    def item_failure(self, index: int, request: str, error: InferenceError) -> ToxicityFailure:
        from inference.schemas import ErrorDetail

        return ToxicityFailure(index=index, error=ErrorDetail(code=error.code, message=error.message))


if TYPE_CHECKING:  # the type checker holds the family and its scorer to the serving layer's protocol

    def _conforms(family: ToxicityFamily, scorer: ToxicityScorer) -> tuple[Family, Scorer[str, ToxicityResult]]:
        return family, scorer
