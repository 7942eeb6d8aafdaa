"""The service's routes as in-process calls on a `Serving` (what service.py does for each HTTP route)."""

from __future__ import annotations

import asyncio
from typing import Any

from inference.schemas import SkillBatchResponse, SkillInferenceRequest
from inference.serving.pipeline import BatchLimit, Serving

ITEMS = BatchLimit("items", "item", 1000)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def infer(serving: Serving, request: SkillInferenceRequest, *, forced_version: str | None = None) -> Any:
    answer, _ = run(serving.answer_one("skills", request, caller_id=request.student_id, forced_version=forced_version))
    return answer


def infer_batch(serving: Serving, items: list[dict[str, Any]], *, forced_version: str | None = None) -> Any:
    requests = [SkillInferenceRequest.model_validate(item) for item in items]
    outcome = run(
        serving.answer_many(
            "skills",
            requests,
            caller_ids=[request.student_id for request in requests],
            forced_version=forced_version,
            limit=ITEMS,
        )
    )
    results, succeeded = outcome.in_place()
    return SkillBatchResponse.model_construct(results=results, succeeded=succeeded, failed=len(items) - succeeded)


def classify(serving: Serving, text: str, *, preference: str | None = None, user_id: str | None = None) -> Any:
    from inference.families.intent.scorer import IntentQuery

    query = IntentQuery(text, preference=preference, user_id=user_id)
    answer, _ = run(serving.answer_one("intent", query, caller_id=user_id, forced_version=None))
    return answer
