"""The writing routes, mounted beside the read routes: teacher ratings (the skills' ground truth) and each
family's labelled feedback (`FamilySpec.feedback`). A writer's bearer token (INFERENCE_RATINGS_TOKEN(S)) is
checked at the edge before the body is read.

    POST /api/v1/monitoring/ratings            {"ratings": [...]} -> {"stored", "rejected"}
    POST <a family's feedback path>            {"items": [...]}   -> {"stored", "rejected_rows", "scored_by"}

Labelled items are answered by every loaded version (and variant) of the family through its `LabelledFeedback`
ability, a chunk at a time off the event loop (a request cut off or abandoned stops after the chunk in hand), and
each answer becomes a row of `labelled_feedback` (`inference.monitoring.feedback` stores them and computes the
accuracy); an item's satisfaction (`RatedAnswer`) goes on the rows of the variant the caller was shown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inference.errors import InferenceError, InvalidRequest
from inference.families.registry import FamilySpec, FeedbackRoute, attribute
from inference.http import paths
from inference.http.answers import answer, failed, read_body
from inference.http.openapi import TOKEN, Operation
from inference.monitoring.feedback import feedback_row, satisfaction_of
from inference.schemas import FeedbackResponse, RatingsRequest, RatingsResponse
from inference.serving.protocol import LabelledAnswer, LabelledFeedback

if TYPE_CHECKING:
    from inference.app import App

# Labelled items scored per step off the event loop: a step of 100 takes tens of milliseconds.
FEEDBACK_CHUNK = 100
WRITER_TEXT = "Needs `Authorization: Bearer <token>` with a ratings writer's token (INFERENCE_RATINGS_TOKEN(S))."


def write_routes(specs: Sequence[FamilySpec], current: Callable[[], App]) -> list[Route]:
    return [
        Route(paths.RATINGS_ROUTE, _ratings(current), methods=["POST"]),
        *(
            Route(spec.feedback.path, _feedback(spec.name, spec.feedback, current), methods=["POST"])
            for spec in specs
            if spec.feedback is not None
        ),
    ]


def write_operations(specs: Sequence[FamilySpec]) -> list[Operation]:
    """The OpenAPI description of the writing routes."""
    ratings = Operation(
        "POST",
        paths.RATINGS_ROUTE,
        "Teacher ratings (1-5) for students' skills: the ground truth the scores are correlated with. " + WRITER_TEXT,
        RatingsResponse,
        body=RatingsRequest,
        statuses=TOKEN,
        operation_id="inference_post_ratings",
    )
    return [
        ratings,
        *(
            Operation(
                "POST",
                spec.feedback.path,
                spec.feedback.summary,
                FeedbackResponse,
                body=attribute(spec.feedback.body),
                statuses=TOKEN,
                operation_id=f"inference_{spec.feedback.name}" if spec.feedback.name else None,
            )
            for spec in specs
            if spec.feedback is not None
        ),
    ]


def _ratings(current: Callable[[], App]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        from inference.monitoring.observer import check_ratings, store_ratings_async

        app = current()
        try:
            rows = check_ratings(await read_body(request, RatingsRequest), app.served_skills())
            written = await store_ratings_async(app.monitoring.engine, rows)
        except InferenceError as err:
            return failed(err)
        return answer(RatingsResponse(stored=written.stored, rejected=[row.index for row in written.rejected]))

    return endpoint


def _feedback(family: str, route: FeedbackRoute, current: Callable[[], App]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        from inference.families.texts import check_request_chars
        from inference.monitoring.feedback import check_count, check_rated, store_feedback
        from inference.monitoring.observer import store_async

        app = current()
        settings = app.settings
        try:
            items = list((await read_body(request, attribute(route.body))).items)
            check_count(len(items))
            check_rated(items)
            texts_of = attribute(route.texts)
            texts = [text for item in items for text in texts_of(item)]
            check_request_chars(texts, field_name="items", max_chars=settings.max_request_chars)
            scorers = dict(app.serving.family(family).scorers)
            rows: list[dict[str, object]] = []
            for start in range(0, len(items), FEEDBACK_CHUNK):
                chunk = items[start : start + FEEDBACK_CHUNK]
                rows += await asyncio.to_thread(
                    feedback_rows, family, chunk, scorers, max_text_chars=settings.max_text_chars, first_index=start
                )
            written = await store_async("labelled items", store_feedback, app.monitoring.engine, rows)
        except InferenceError as err:
            return failed(err)
        answered = sorted({f"{row['model_version']}/{row['variant']}".rstrip("/") for row in rows})
        return answer(FeedbackResponse(stored=len(items), scored_by=answered, rejected_rows=len(written.rejected)))

    endpoint.__doc__ = route.summary
    return endpoint


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
        by_variant: dict[str, list[LabelledAnswer]] = {}
        for answer_ in scorer.answer_labelled(items, max_text_chars=max_text_chars, first_index=first_index):
            by_variant.setdefault(answer_.variant, []).append(answer_)
        for variant, answers in by_variant.items():
            for item, answer_ in zip(items, answers, strict=True):  # each variant's answers in the items' order
                satisfaction = satisfaction_of(item, variant)
                rows.append(
                    feedback_row(
                        family, version, variant, answer_.label, answer_.predicted, received, satisfaction=satisfaction
                    )
                )
    return rows
