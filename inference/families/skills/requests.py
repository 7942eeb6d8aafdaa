"""The skills family's HTTP input turned into its requests."""

from __future__ import annotations

from inference.schemas import SkillBatchRequest, SkillInferenceRequest


def items_of(batch: SkillBatchRequest) -> list[SkillInferenceRequest]:
    """The batch's items; the batch's `explain` asks it of every item."""
    if not batch.explain:
        return list(batch.items)
    return [item if item.explain else item.model_copy(update={"explain": True}) for item in batch.items]
