"""Request and response models of the HTTP API, shared by the service and the clients."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

STUDENT_ID_MAX_LENGTH = 128


class SkillInferenceRequest(BaseModel):
    student_id: str = Field(min_length=1, max_length=STUDENT_ID_MAX_LENGTH)
    skill: str = Field(description="One of the 7 skills; see GET /api/v1/skills/models.")
    # Values are validated per feature by the service (number, finite, within the catalogue's range) so that
    # the error names the feature, and so that one bad item of a batch does not reject the others.
    features: dict[str, Any] = Field(description="Feature name to number; see docs/features.md.")


class FeatureImportance(BaseModel):
    feature: str
    importance: float


class SkillInferenceResult(BaseModel):
    student_id: str
    skill: str
    score: float = Field(ge=0, le=1, description="Probability of the high-skill class.")
    confidence: float = Field(ge=0, le=1, description="|2*score - 1|: 0 at the decision boundary, 1 far from it.")
    feature_importance: list[FeatureImportance]
    model_version: str
    imputed_features: list[str]
    ignored_features: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str


class SkillInferenceFailure(BaseModel):
    student_id: str
    skill: str
    error: ErrorDetail


class SkillBatchRequest(BaseModel):
    items: list[SkillInferenceRequest] = Field(description="1 to 1000 items (INFERENCE_MAX_BATCH_ITEMS).")


class SkillBatchResponse(BaseModel):
    results: list[SkillInferenceResult | SkillInferenceFailure]
    succeeded: int
    failed: int


class SkillModelInfo(BaseModel):
    skill: str
    served_version: str
    available_versions: list[str]
    trained_at: str | None
    training_data_hash: str | None
    metrics: dict[str, float]
    feature_names: list[str]


class SkillModelsResponse(BaseModel):
    models: list[SkillModelInfo]
