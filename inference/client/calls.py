"""Each API call as data: method, path, body, headers, how to read the answer, and the fallback answer if any.
Both clients run these; nothing here does I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from inference import routes
from inference.client.errors import RequestRejected
from inference.client.policy import IntentFallback
from inference.schemas import (
    HealthResponse,
    IntentBatchResponse,
    IntentFailure,
    IntentResult,
    ModelsResponse,
    SkillBatchResponse,
    SkillInferenceFailure,
    SkillInferenceRequest,
    SkillInferenceResult,
    SkillModelsResponse,
    TextPairResult,
)

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fallback: Callable[[], T] | None = None  # the answer when the service cannot give one (intent only)
    accept_statuses: frozenset[int] = frozenset()  # non-2xx answers that are results, not errors (health)


def parser(model: type[Model]) -> Callable[[httpx.Response], Model]:
    return lambda response: model.model_validate_json(response.content)


def skill_request(student_id: str, skill: str, features: Mapping[str, Any]) -> SkillInferenceRequest:
    return SkillInferenceRequest(student_id=student_id, skill=skill, features=dict(features))


def infer_skill(request: SkillInferenceRequest, model_version: str | None) -> Call[SkillInferenceResult]:
    headers = {routes.VERSION_HEADER: model_version} if model_version else {}
    return Call("POST", routes.SKILLS_INFER_ROUTE, parser(SkillInferenceResult), request.model_dump(), headers)


def infer_skills(items: Sequence[SkillInferenceRequest | Mapping[str, Any]]) -> Call[SkillBatchResponse]:
    body = {"items": [item.model_dump() if isinstance(item, BaseModel) else dict(item) for item in items]}
    return Call("POST", routes.SKILLS_BATCH_ROUTE, parser(SkillBatchResponse), body)


def skill_outcomes(response: SkillBatchResponse) -> list[SkillInferenceResult | RequestRejected]:
    """A batch's results as single calls would have them: a failed item is the 400 its single call would get."""
    return [
        RequestRejected(400, result.error.code, result.error.message)
        if isinstance(result, SkillInferenceFailure)
        else result
        for result in response.results
    ]


def _intent_headers(variant: str | None) -> dict[str, str]:
    return {routes.PREFERENCE_HEADER: variant} if variant else {}


def classify(
    text: str, user_id: str | None, variant: str | None, fallback: IntentFallback | None, *, ensemble: bool = False
) -> Call[IntentResult]:
    body: dict[str, Any] = {"text": text} | ({"user_id": user_id} if user_id else {})
    path = routes.ENSEMBLE_ROUTE if ensemble else routes.CLASSIFY_ROUTE
    return Call(
        "POST",
        path,
        parser(IntentResult),
        body,
        _intent_headers(None if ensemble else variant),
        fallback.result if fallback else None,
    )


def classify_batch(
    texts: Sequence[str], user_id: str | None, variant: str | None, fallback: IntentFallback | None
) -> Call[IntentBatchResponse]:
    body: dict[str, Any] = {"texts": list(texts)} | ({"user_id": user_id} if user_id else {})

    def all_fallback() -> IntentBatchResponse:
        assert fallback is not None
        return IntentBatchResponse(results=[fallback.result() for _ in texts], succeeded=len(texts), failed=0)

    return Call(
        "POST",
        routes.CLASSIFY_BATCH_ROUTE,
        parser(IntentBatchResponse),
        body,
        _intent_headers(variant),
        all_fallback if fallback else None,
    )


def intent_outcomes(response: IntentBatchResponse) -> list[IntentResult | RequestRejected]:
    return [
        RequestRejected(400, result.error.code, result.error.message) if isinstance(result, IntentFailure) else result
        for result in response.results
    ]


def predict_pair(text1: str, text2: str) -> Call[TextPairResult]:
    return Call("POST", routes.TEXTPAIR_ROUTE, parser(TextPairResult), {"text1": text1, "text2": text2})


def models() -> Call[ModelsResponse]:
    return Call("GET", routes.MODELS_ROUTE, parser(ModelsResponse))


def skill_models() -> Call[SkillModelsResponse]:
    return Call("GET", routes.SKILLS_MODELS_ROUTE, parser(SkillModelsResponse))


def health() -> Call[HealthResponse]:
    # 503 with the same body when a family is not loaded: an answer, not an outage.
    return Call("GET", routes.HEALTH_ROUTE, parser(HealthResponse), accept_statuses=frozenset({503}))
