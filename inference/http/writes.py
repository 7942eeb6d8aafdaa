"""What the writing routes do with a labelled-feedback body: each loaded version of the family answers the items
through its `LabelledFeedback` ability, and each answer becomes a row of `labelled_feedback`
(`inference.monitoring.feedback` stores them and computes the accuracy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from inference.errors import InvalidRequest
from inference.monitoring.feedback import feedback_row
from inference.serving.protocol import LabelledFeedback


def feedback_rows(
    family: str, items: Sequence[Any], scorers: Mapping[str, Any], *, max_text_chars: int, first_index: int = 0
) -> list[dict[str, object]]:
    """One row per labelled item and version and variant, each version answering through the family's
    `LabelledFeedback`; `InvalidRequest` naming the item when one is unusable (nothing is stored then)."""
    received = datetime.now(UTC)
    rows = []
    for version, scorer in scorers.items():
        if not isinstance(scorer, LabelledFeedback):
            raise InvalidRequest(f"items: the {family} family takes no labelled feedback")
        for answer in scorer.answer_labelled(items, max_text_chars=max_text_chars, first_index=first_index):
            rows.append(feedback_row(family, version, answer.variant, answer.label, answer.predicted, received))
    return rows
