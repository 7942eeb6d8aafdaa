"""The routes that write: teacher ratings and labelled feedback, beside the read routes (`reads.py`). The writer's
bearer token is checked at the edge, before a body is read. Labelled items are answered by each loaded version
of the family through its `LabelledFeedback` ability, and each answer becomes a row of `labelled_feedback`
(`inference.monitoring.feedback` stores them and computes the accuracy).

    POST /api/v1/monitoring/ratings             {"ratings": [...]}   -> {"stored", "rejected"}
    POST /api/v1/monitoring/feedback/intent     {"items": [...]}     -> {"stored", "scored_by", "rejected_rows"}
    POST /api/v1/monitoring/feedback/textpair   {"items": [...]}     -> the same
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.errors import InferenceError, InvalidRequest
from inference.http import paths
from inference.http.errors import error_response, invalid_body
from inference.monitoring.feedback import check_count, feedback_row
from inference.schemas import (
    FeedbackResponse,
    IntentFeedbackRequest,
    RatingsRequest,
    RatingsResponse,
    TextPairFeedbackRequest,
)
from inference.serving.protocol import LabelledFeedback

if TYPE_CHECKING:
    from inference.app import App

ModelT = TypeVar("ModelT", bound=BaseModel)
# Labelled feedback items scored per step off the event loop: a step of 100 takes tens of milliseconds.
FEEDBACK_CHUNK = 100


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


def write_routes(current: Callable[[], App]) -> list[Route]:
    """The writing routes; `current` gives the worker's app (built at startup, after these routes)."""

    async def ratings(request: Request) -> Response:
        """Teacher ratings (1-5) for students' skills: the ground truth the scores are correlated with."""
        from inference.monitoring.observer import check_ratings, store_ratings_async

        app = current()
        try:
            body = await parsed(request, RatingsRequest)
            rows = check_ratings(body, app.served_skills())
            written = await store_ratings_async(app.monitoring.engine, rows)
        except InferenceError as err:
            return error_response(err)
        answer = RatingsResponse(stored=written.stored, rejected=[row.index for row in written.rejected])
        return JSONResponse(answer.model_dump(mode="json"))

    def feedback(
        family: str,
        body_model: type[IntentFeedbackRequest] | type[TextPairFeedbackRequest],
        texts_of: Callable[[list[Any]], list[str]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            """Labelled items answered by every loaded version and variant, a chunk at a time off the event loop
            (a request cut off or abandoned stops after the chunk in hand), then stored together."""
            from inference.families.texts import check_request_chars
            from inference.monitoring.feedback import store_feedback
            from inference.monitoring.observer import store_async

            app = current()
            settings = app.settings
            try:
                body = await parsed(request, body_model)
                items: list[Any] = list(body.items)
                check_count(len(items))
                check_request_chars(texts_of(items), field_name="items", max_chars=settings.max_request_chars)
                scorers = dict(app.serving.family(family).scorers)
                rows = []
                for start in range(0, len(items), FEEDBACK_CHUNK):
                    rows += await asyncio.to_thread(
                        feedback_rows,
                        family,
                        items[start : start + FEEDBACK_CHUNK],
                        scorers,
                        max_text_chars=settings.max_text_chars,
                        first_index=start,
                    )
                written = await store_async("labelled items", store_feedback, app.monitoring.engine, rows)
            except InferenceError as err:
                return error_response(err)
            answered = sorted({f"{row['model_version']}/{row['variant']}".rstrip("/") for row in rows})
            answer = FeedbackResponse(stored=len(items), scored_by=answered, rejected_rows=len(written.rejected))
            return JSONResponse(answer.model_dump(mode="json"))

        return endpoint

    return [
        Route(paths.RATINGS_ROUTE, ratings, methods=["POST"]),
        Route(
            paths.INTENT_FEEDBACK_ROUTE,
            feedback("intent", IntentFeedbackRequest, lambda items: [item.text for item in items]),
            methods=["POST"],
        ),
        Route(
            paths.TEXTPAIR_FEEDBACK_ROUTE,
            feedback(
                "textpair",
                TextPairFeedbackRequest,
                lambda items: [text for item in items for text in (item.text1, item.text2)],
            ),
            methods=["POST"],
        ),
    ]


async def parsed(request: Request, model: type[ModelT]) -> ModelT:
    """The request's body as `model`; `InvalidRequest` naming the first bad field."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as err:
        raise invalid_body(err) from err
