"""One loaded version of the skills family: skill requests in, scored answers out, through feature preparation and
the family's adaptive batcher. It implements the family protocol (`inference.serving.protocol.Scorer`).

No HTTP here: the service maps `InferenceError`s to status codes, tests call this directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inference.errors import InferenceError, InvalidRequest, TooManyFeatures
from inference.families.skills.features import PreparedRow, check_skill, prepare_row
from inference.families.skills.scoring import RowScore, SkillModel, SkillRow, score_skill_rows
from inference.monitoring.observer import DriftInputs, Observer
from inference.schemas import (
    Explanation,
    FeatureContribution,
    FeatureImportance,
    SkillInferenceRequest,
    SkillInferenceResult,
    SkillModelsResponse,
)
from inference.serving.batching import AdaptiveBatcher, BatcherOptions, CostModel
from inference.serving.cache import CacheKey, input_hash
from inference.serving.protocol import Measure
from inference.store.registry import available_model_versions

FAMILY = "skills"
TOP_CONTRIBUTIONS = 5
HIGH_SKILL = 0.5  # a score at or above it is the high-skill label (what the shadow compares)
# A call's cost before the batcher has measured this machine: ~0.3 ms for one row through the models, ~10 µs a row
# more (docs/performance.md); measured calls replace them within a few batches.
ROW_CALL_S = 0.0003
ROW_S = 0.00001


class SkillsScorer:
    answer_type = SkillInferenceResult

    def __init__(
        self,
        models: Mapping[str, SkillModel],
        *,
        version: str = "",
        batching: BatcherOptions | None = None,
        max_features: int = 256,
    ) -> None:
        self.models = dict(models)
        self.max_features = max_features
        self.version = version or next(iter(self.models.values())).version
        self.skills = tuple(self.models)
        self._importances: dict[tuple[str, str], list[FeatureImportance]] = {}
        self.batcher: AdaptiveBatcher[SkillRow, RowScore] = (batching or BatcherOptions()).batcher(
            score_skill_rows,
            name=FAMILY,
            cost_model=CostModel(seconds_per_call=ROW_CALL_S, seconds_per_unit=ROW_S),  # a row is a unit
            lone_items_inline=True,  # one row through a booster: ~0.3 ms, less than the thread hand-off
            family=FAMILY,
        )

    # --- the family protocol ---------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return [model.store_name for model in self.models.values()]

    def prepare(self, requests: Sequence[SkillInferenceRequest]) -> Sequence[SkillInferenceRequest]:
        return requests

    def segment(self, request: SkillInferenceRequest) -> str:
        return request.skill if request.skill in self.models else "unknown"  # a label: never the caller's text

    def cache_key(self, request: SkillInferenceRequest) -> CacheKey:
        # Numbers are canonicalised (140 and 140.0 are the same feature value); anything else hashes as given and
        # is refused by feature preparation before an answer could be stored.
        features = {
            name: float(value) if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
            for name, value in request.features.items()
        }
        key: dict[str, object] = {"student_id": request.student_id, "skill": request.skill, "features": features}
        if request.explain:  # an answer without an explanation must not answer a request for one
            key["explain"] = True
        model = self.models.get(request.skill)
        # The version of the model that answers: a per-skill override may differ from the family's.
        version = model.version if model is not None else self.version
        name = model.store_name if model is not None else f"skill-{request.skill}"
        return CacheKey(FAMILY, name, version, input_hash(key), student_id=request.student_id)

    def cacheable(self, answer: SkillInferenceResult) -> bool:
        return True

    def from_cache(self, answer: SkillInferenceResult) -> SkillInferenceResult:
        return answer.model_copy(update={"cached": True})

    async def score_many(
        self, requests: Sequence[SkillInferenceRequest]
    ) -> list[SkillInferenceResult | InferenceError]:
        """Every valid request scored (one vectorised call per skill's model); an invalid one gets its error."""
        outcomes: list[SkillInferenceResult | InferenceError | None] = [None] * len(requests)
        prepared: list[tuple[int, SkillModel, PreparedRow]] = []
        for index, request in enumerate(requests):
            try:
                model, row = self.prepare_request(request)
            except InvalidRequest as err:
                outcomes[index] = err
            else:
                prepared.append((index, model, row))
        rows = [SkillRow(model, row.values, explain=requests[index].explain) for index, model, row in prepared]
        scores = await self.batcher.submit_many(rows)
        for (index, model, row), scored in zip(prepared, scores, strict=True):
            outcomes[index] = self.answer(requests[index], model, row, scored)
        return [outcome for outcome in outcomes if outcome is not None]

    def observe(self, request: SkillInferenceRequest, answer: SkillInferenceResult, observer: Observer) -> None:
        model = self.models[answer.skill]
        observer.answer(
            FAMILY,
            model.store_name,
            answer.model_version,
            answer.score,
            inputs=DriftInputs(model.metadata.get("reference", {}), request.features),
            logged_as=(request.student_id, answer.skill) if request.student_id else None,  # a row of a student
        )

    def measure(self, answer: object) -> Measure | None:
        if not isinstance(answer, SkillInferenceResult):
            return None
        return Measure(answer.score, answer.score >= HIGH_SKILL, answer.model_version)

    def close(self) -> None:
        self.batcher.close()

    def describe(self) -> SkillModelsResponse:
        """Every skill model of this version: metadata, metrics, scoring path, features (`DescribesModels`); reads
        the model store for the available versions."""
        return SkillModelsResponse.model_validate({"models": [model_summary(model) for model in self.models.values()]})

    # --- beyond the protocol ------------------------------------------------------------------------------------

    def prepare_request(self, request: SkillInferenceRequest) -> tuple[SkillModel, PreparedRow]:
        if len(request.features) > self.max_features:  # the edge refuses such a body; this guards other callers
            raise TooManyFeatures(
                f"features: at most {self.max_features} features per item (INFERENCE_MAX_FEATURES), "
                f"got {len(request.features)}"
            )
        model = self.models[check_skill(request.skill, self.skills)]
        return model, prepare_row(request.features, model)

    def answer(
        self, request: SkillInferenceRequest, model: SkillModel, row: PreparedRow, scored: RowScore
    ) -> SkillInferenceResult:
        """The answer to one prepared and scored request."""
        # Built without validation: every field comes from this package, and validating 100 results again cost
        # ~0.5 ms of a 100-item batch's ~7.5 ms. A model's importance list is built once and shared.
        return SkillInferenceResult.model_construct(
            student_id=request.student_id,
            skill=model.skill,
            score=scored.score,
            confidence=scored.confidence,
            feature_importance=self._importance_list(model),
            model_version=model.version,
            imputed_features=list(row.imputed),
            ignored_features=list(row.ignored),
            explanation=None if scored.contributions is None else explanation(model, row, scored),
        )

    def _importance_list(self, model: SkillModel) -> list[FeatureImportance]:
        key = (model.skill, model.version)
        if key not in self._importances:
            self._importances[key] = [
                FeatureImportance(feature=name, importance=value) for name, value in model.feature_importance
            ]
        return self._importances[key]


def explanation(model: SkillModel, row: PreparedRow, scored: RowScore) -> Explanation:
    """The top contributions of one scored row, named, with the values the model used."""
    assert scored.contributions is not None
    per_feature = scored.contributions[:-1]
    order = np.argsort(-np.abs(per_feature), kind="stable")
    top = order[:TOP_CONTRIBUTIONS]
    return Explanation.model_construct(
        bias=float(scored.contributions[-1]),
        contributions=[
            FeatureContribution.model_construct(
                feature=model.feature_names[i], value=float(row.values[i]), contribution=float(per_feature[i])
            )
            for i in top
        ],
        rest=float(per_feature[order[TOP_CONTRIBUTIONS:]].sum()),
        margin=scored.margin,
    )


def model_summary(model: SkillModel) -> dict[str, object]:
    """What `GET /api/v1/skills/models` says of a served skill model, its features' schema included."""
    metadata = model.metadata
    return {
        "skill": model.skill,
        "served_version": model.version,
        "available_versions": available_model_versions(model.store_name),
        "trained_at": metadata.get("trained_at"),
        "training_data_hash": metadata.get("training_data_hash"),
        "metrics": metadata.get("metrics", {}),
        "scoring": {"path": model.compiled.path, "reason": model.compiled.reason}
        if model.compiled is not None
        else {"path": "xgboost", "reason": "no compiled form"},
        "feature_names": list(model.feature_names),
        "features": [
            {"name": spec.name, "imputation_default": spec.default, **spec.to_metadata()}
            for spec in model.schema.features
        ],
    }
