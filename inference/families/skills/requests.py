"""The skills family's HTTP input turned into its requests (the `JsonRoute.requests` of its spec)."""

from __future__ import annotations

from collections.abc import Mapping

from inference.schemas import SkillBatchRequest, SkillInferenceRequest


def one(
    body: SkillInferenceRequest, headers: Mapping[str, str]
) -> tuple[list[SkillInferenceRequest], list[str | None]]:
    """The request itself, sticky per student."""
    return [body], [body.student_id]


def batch(body: SkillBatchRequest, headers: Mapping[str, str]) -> tuple[list[SkillInferenceRequest], list[str | None]]:
    """The batch's items, each sticky per its student; the batch's `explain` asks it of every item."""
    items = items_of(body)
    return items, [item.student_id for item in items]


def items_of(batch: SkillBatchRequest) -> list[SkillInferenceRequest]:
    if not batch.explain:
        return list(batch.items)
    return [item if item.explain else item.model_copy(update={"explain": True}) for item in batch.items]
