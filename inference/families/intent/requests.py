"""The intent family's HTTP input turned into its requests (the `JsonRoute.requests` of its spec): a query per
text, with the variant the caller asks for (X-Model-Preference, or the route's own) and the caller's id for the
sticky split."""

from __future__ import annotations

from collections.abc import Mapping

from inference.families.intent.scorer import IntentQuery
from inference.families.intent.variants import PREFERENCE_HEADER
from inference.schemas import IntentBatchRequest, IntentRequest, LabelledQuery

Requests = tuple[list[IntentQuery], list[str | None]]


def one(body: IntentRequest, headers: Mapping[str, str]) -> Requests:
    """The variant in X-Model-Preference, else the configured split's."""
    return [IntentQuery(body.text, preference=headers.get(PREFERENCE_HEADER), user_id=body.user_id)], [body.user_id]


def ensemble(body: IntentRequest, headers: Mapping[str, str]) -> Requests:
    """Always the ensemble (classic answers, flagged as a fallback, when the ensemble cannot)."""
    return [IntentQuery(body.text, preference="ensemble", user_id=body.user_id)], [body.user_id]


def batch(body: IntentBatchRequest, headers: Mapping[str, str]) -> Requests:
    """One query per text, each named by its place (`texts[3]`) in an error, all of one variant."""
    preference = headers.get(PREFERENCE_HEADER)
    queries = [
        IntentQuery(text, field=f"texts[{index}]", preference=preference, user_id=body.user_id)
        for index, text in enumerate(body.texts)
    ]
    return queries, [body.user_id] * len(queries)


def labelled_texts(item: LabelledQuery) -> list[str]:
    return [item.text]
