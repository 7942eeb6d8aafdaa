"""The intent family's HTTP input turned into its requests: a query per text, with the variant the caller asks
for (X-Model-Preference, or the route's own) and the caller's id for the sticky split."""

from __future__ import annotations

from inference.families.intent.scorer import IntentQuery
from inference.schemas import IntentBatchRequest, IntentRequest


def query_of(request: IntentRequest, preference: str | None) -> IntentQuery:
    return IntentQuery(request.text, preference=preference, user_id=request.user_id)


def queries_of(request: IntentBatchRequest, preference: str | None) -> list[IntentQuery]:
    """One query per text, each named by its place (`texts[3]`) in an error."""
    return [
        IntentQuery(text, field=f"texts[{index}]", preference=preference, user_id=request.user_id)
        for index, text in enumerate(request.texts)
    ]
