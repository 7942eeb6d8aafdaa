"""Each API call as data: method, path, body (already encoded), headers, how to read the answer, and the fallback
answer if any. Both clients run these; nothing here does I/O.

Bodies are encoded here, in the caller's thread: a value JSON cannot carry (NaN, an object) fails that call alone
with `InvalidInput`, before anything is sent, also when the call would have travelled in a coalesced batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from inference.client.errors import InvalidInput, RequestRejected, UnexpectedAnswer
from inference.client.policy import IntentFallback
from inference.http import paths as routes
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
    body: bytes | None = None  # JSON, encoded
    headers: Mapping[str, str] = field(default_factory=dict)
    fallback: Callable[[], T] | None = None  # the answer when the service cannot give one (intent only)
    accept_statuses: frozenset[int] = frozenset()  # non-2xx answers that are results, not errors (health)


def encode(value: Any, what: str) -> bytes:
    """JSON as the service reads it; raises `InvalidInput` naming `what` when JSON cannot carry a value."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{what}: cannot be sent as JSON ({err})") from err


def parser(model: type[Model]) -> Callable[[httpx.Response], Model]:
    def parse(response: httpx.Response) -> Model:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as err:
            raise UnexpectedAnswer(
                f"{response.status_code} answer is not a {model.__name__}: {response.text[:200]!r}"
            ) from err

    return parse


def skill_request(student_id: str, skill: str, features: Mapping[str, Any], *, explain: bool = False) -> bytes:
    """One item, validated by the API's own model and encoded."""
    try:
        request = SkillInferenceRequest(student_id=student_id, skill=skill, features=dict(features), explain=explain)
    except ValidationError as err:
        raise InvalidInput(f"request: {err.errors()[0]['loc'][0]}: {err.errors()[0]['msg']}") from err
    return encode(request.model_dump(), f"student {student_id}, skill {skill}")


def infer_skill(item: bytes, model_version: str | None) -> Call[SkillInferenceResult]:
    headers = {routes.VERSION_HEADER: model_version} if model_version else {}
    return Call("POST", routes.SKILLS_INFER_ROUTE, parser(SkillInferenceResult), item, headers)


def skill_batch(items: Sequence[bytes]) -> Call[SkillBatchResponse]:
    """A batch of items encoded one by one."""
    return Call("POST", routes.SKILLS_BATCH_ROUTE, parser(SkillBatchResponse), b'{"items":[' + b",".join(items) + b"]}")


def infer_skills(items: Sequence[SkillInferenceRequest | Mapping[str, Any]]) -> Call[SkillBatchResponse]:
    encoded = []
    for index, item in enumerate(items):
        value = item.model_dump() if isinstance(item, BaseModel) else dict(item)
        encoded.append(encode(value, f"items[{index}]"))
    return skill_batch(encoded)


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
    return Call(
        "POST",
        routes.ENSEMBLE_ROUTE if ensemble else routes.CLASSIFY_ROUTE,
        parser(IntentResult),
        encode(body, "text"),
        _intent_headers(None if ensemble else variant),
        fallback.result if fallback else None,
    )


def intent_text(text: str) -> bytes:
    return encode(text, "text")


def text_batch(texts: Sequence[bytes], variant: str | None) -> Call[IntentBatchResponse]:
    """A batch of texts encoded one by one (coalesced calls: no user id)."""
    body = b'{"texts":[' + b",".join(texts) + b"]}"
    return Call("POST", routes.CLASSIFY_BATCH_ROUTE, parser(IntentBatchResponse), body, _intent_headers(variant))


def classify_batch(
    texts: Sequence[str], user_id: str | None, variant: str | None, fallback: IntentFallback | None
) -> Call[IntentBatchResponse]:
    body: dict[str, Any] = {"texts": list(texts)} | ({"user_id": user_id} if user_id else {})

    def all_fallback() -> IntentBatchResponse:
        # Every text gets the default, also one the service would have refused: it cannot be asked.
        assert fallback is not None
        return IntentBatchResponse(results=[fallback.result() for _ in texts], succeeded=len(texts), failed=0)

    return Call(
        "POST",
        routes.CLASSIFY_BATCH_ROUTE,
        parser(IntentBatchResponse),
        encode(body, "texts"),
        _intent_headers(variant),
        all_fallback if fallback else None,
    )


def intent_outcomes(response: IntentBatchResponse) -> list[IntentResult | RequestRejected]:
    return [
        RequestRejected(400, result.error.code, result.error.message) if isinstance(result, IntentFailure) else result
        for result in response.results
    ]


def predict_pair(text1: str, text2: str) -> Call[TextPairResult]:
    body = encode({"text1": text1, "text2": text2}, "texts")
    return Call("POST", routes.TEXTPAIR_ROUTE, parser(TextPairResult), body)


def models() -> Call[ModelsResponse]:
    return Call("GET", routes.MODELS_ROUTE, parser(ModelsResponse))


def skill_models() -> Call[SkillModelsResponse]:
    return Call("GET", routes.SKILLS_MODELS_ROUTE, parser(SkillModelsResponse))


def health() -> Call[HealthResponse]:
    # 503 with the same body when a family is not loaded: an answer, not an outage (a proxy's 503 page is not
    # a HealthResponse: UnexpectedAnswer).
    return Call("GET", routes.HEALTH_ROUTE, parser(HealthResponse), accept_statuses=frozenset({503}))
