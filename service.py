"""The BentoML service: routes and lifecycle only. What a worker serves with is built by `inference.app.build`;
every route takes its family's generic path (`inference.serving.pipeline.Serving`)."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.errors import InferenceError
from inference.families.registry import configured
from inference.http import paths
from inference.http.edge import Edge, EdgeLimits
from inference.http.errors import error_headers
from inference.http.errors import error_response as http_error
from inference.http.middleware import UniformErrors
from inference.http.reads import read_routes
from inference.http.routes import route_table
from inference.http.scoring import forced_version, scoring_routes
from inference.http.tokens import admin_tokens, writer_tokens
from inference.monitoring.metrics import HttpMetrics
from inference.schemas import (
    FeedbackResponse,
    IntentBatchRequest,
    IntentBatchResponse,
    IntentFeedbackRequest,
    IntentRequest,
    IntentResult,
    RatingsRequest,
    RatingsResponse,
    SkillBatchRequest,
    SkillBatchResponse,
    SkillInferenceRequest,
    SkillInferenceResult,
    TextPairFeedbackRequest,
    TextPairRequest,
    TextPairResult,
)
from inference.serving.batching import BACKLOGS
from inference.settings import get_settings

if TYPE_CHECKING:
    from inference.app import App
    from inference.serving.pipeline import Outcome

logger = logging.getLogger("inference")

# Starlette's headers are matched in lower case.
PREFERENCE_HEADER = paths.PREFERENCE_HEADER.lower()
VERSION_HEADER = paths.VERSION_HEADER.lower()
DEPRECATED_VERSION_HEADER = paths.DEPRECATED_VERSION_HEADER.lower()
# OpenTelemetry's exclude list matches by regular-expression search: these cover every scoring route.
SCORING_ROUTES = [
    paths.SKILLS_INFER_ROUTE,
    paths.CLASSIFY_ROUTE,
    "/api/v2/classify",
    paths.TEXTPAIR_ROUTE,
    "/v2/models/",
]

STATE_DIR_VARIABLE = "INFERENCE_STATE_DIR"
# Labelled feedback items scored per step off the event loop: a step of 100 takes tens of milliseconds.
FEEDBACK_CHUNK = 100
# The ratings writers' tokens, by name (a role apart from the admin's).
RATINGS_TOKENS = writer_tokens(get_settings())


def error_response(error: InferenceError, ctx: bentoml.Context) -> JSONResponse:
    """The API's error answer (inference/http/errors.py). BentoML sets an `@api` route's status from its
    context, even when the route returns a response of its own."""
    response = http_error(error)
    ctx.response.status_code = response.status_code
    ctx.response.headers.update(error_headers(error))
    return response


def current() -> App:
    return bentoml.get_current_service().app


def _admin_routes() -> list[Route]:
    from inference.http.admin import admin_routes

    settings = get_settings()
    return admin_routes(
        admin_tokens(settings),
        lambda: current().manager,
        wait_s=settings.admin_wait_s,
    )


def _oip_routes() -> list[Route]:
    from inference.http.oip import oip_routes

    return oip_routes(current)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Every route's description (inference/http/openapi.py), built once per process."""
    from inference.http.oip import server_version
    from inference.http.openapi import full_document
    from inference.http.scoring import scoring_operations

    return full_document(
        Inference.openapi_spec.asdict(),
        title=Inference.name,
        version=server_version(),
        extra=scoring_operations(list(configured(get_settings()).values())),
    )


async def _docs_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def _metrics(request: Request) -> Response:
    """Prometheus, every worker's series (BentoML's multiprocess collector). Served here rather than by BentoML,
    whose HTTP metrics label each request by its raw path: a caller inventing paths would invent series; the
    edge's (inference_http_*) label by route template."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    client = BentoMLContainer.metrics_client.get()
    content = await asyncio.to_thread(client.generate_latest)
    return Response(content, media_type=client.CONTENT_TYPE_LATEST)


# Routes outside BentoML's @api (which are POST only): reads, the admin API, the Open Inference Protocol; and the
# OpenAPI document of them all, which takes the place of BentoML's (mounted routes come before BentoML's own).
extra_routes = Starlette(
    routes=[
        Route("/docs.json", _docs_json, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        *read_routes(current),
        *_admin_routes(),
        *_oip_routes(),
        # The JSON routes of registered families that have no @api method below (a team's own families).
        *scoring_routes(list(configured(get_settings()).values()), current),
    ]
)


def _cors() -> dict[str, object]:
    origins = get_settings().cors_allowed_origins
    if not origins:
        return {"cors": {"enabled": False}}
    return {
        "cors": {
            "enabled": True,
            "access_control_allow_origins": origins,
            "access_control_allow_methods": ["GET", "POST", "OPTIONS"],
            "access_control_allow_headers": [
                "Content-Type",
                "Authorization",
                PREFERENCE_HEADER,
                VERSION_HEADER,
                DEPRECATED_VERSION_HEADER,
            ],
        }
    }


# BentoML reads its configuration when the class is decorated, so these settings are read at import. They are
# defaults: a BentoML configuration file (BENTOML_CONFIG) overrides them.
@bentoml.asgi_app(extra_routes, path="/")
# BentoML's TimeoutMiddleware schedules one timer per request for the whole timeout and never cancels it, so
# each request's objects stay alive that long; after a burst, full garbage collections then scan them all.
# A short timeout bounds that retention (see docs/performance.md).
@bentoml.service(
    name="inference",
    traffic={"timeout": get_settings().request_timeout_s},
    workers=get_settings().workers,
    logging={"access": {"enabled": get_settings().access_log}},
    metrics={"enabled": False},  # the edge's, by route template, and /metrics above
    tracing={"excluded_urls": None if get_settings().trace_scoring else SCORING_ROUTES},
    http=_cors(),
)
class Inference:
    def __init__(self) -> None:
        # Imported here, not at the top: `bentoml serve` imports this module in its supervising process too,
        # which never scores; the model libraries would cost that process ~90 MiB and ~2 s of start.
        from inference.app import build
        from inference.monitoring.metrics import PrometheusMetrics

        settings = get_settings()
        logging.getLogger("inference").setLevel(settings.log_level)
        # Built before the worker accepts its first connection (this runs in the worker's startup), so with
        # several workers on one socket no request reaches a worker that is still loading while another one
        # already answers /readyz.
        self.app: App = build(settings, metrics=PrometheusMetrics())
        # Move everything alive now (BentoML, models) out of the collector's reach: full collections over
        # that heap stalled single requests for 80-115 ms at P99; after freezing, P99 is ~6.5 ms (wrk, 1 client).
        gc.freeze()

    @bentoml.on_deployment
    def share_state_directory() -> None:
        """The directory the workers of one server share admin changes and drift windows through, unless one is
        set: made once per server start, in the supervising process before it starts the workers, which inherit
        its environment."""
        if get_settings().state_dir is None and STATE_DIR_VARIABLE not in os.environ:
            os.environ[STATE_DIR_VARIABLE] = tempfile.mkdtemp(prefix="inference-state-")

    @bentoml.on_startup
    async def start_background_work(self) -> None:
        self.app.start()

    def __is_ready__(self) -> bool:
        return self.app.ready()

    @bentoml.api(route=paths.SKILLS_INFER_ROUTE)
    async def skills_infer(self, request: SkillInferenceRequest, /, ctx: bentoml.Context) -> SkillInferenceResult:
        """Score one student on one skill (the version: X-Model-Version, else the route, sticky per student)."""
        return await self._one("skills", request, request.student_id, ctx)

    @bentoml.api(route=paths.SKILLS_BATCH_ROUTE)
    async def skills_infer_batch(self, request: SkillBatchRequest, /, ctx: bentoml.Context) -> SkillBatchResponse:
        """Score up to 1000 items; a bad item gets an error in its place and the others are still scored."""
        from inference.families.skills.requests import items_of

        items = items_of(request)
        callers = [item.student_id for item in items]
        return await self._many("skills", items, callers, ("items", "item"), SkillBatchResponse, ctx)

    @bentoml.api(route=paths.CLASSIFY_ROUTE)
    async def classify(self, request: IntentRequest, /, ctx: bentoml.Context) -> IntentResult:
        """Intent and verticals of one query, from the variant in X-Model-Preference or the configured split."""
        return await self._classify(request, _header(ctx, PREFERENCE_HEADER), ctx)

    @bentoml.api(route=paths.ENSEMBLE_ROUTE)
    async def classify_ensemble(self, request: IntentRequest, /, ctx: bentoml.Context) -> IntentResult:
        """Always the ensemble (classic answers, flagged as a fallback, when the ensemble cannot)."""
        return await self._classify(request, "ensemble", ctx)

    async def _classify(self, request: IntentRequest, preference: str | None, ctx: bentoml.Context) -> Any:
        from inference.families.intent.requests import query_of

        return await self._one("intent", query_of(request, preference), request.user_id, ctx)

    @bentoml.api(route=paths.CLASSIFY_BATCH_ROUTE)
    async def classify_batch(self, request: IntentBatchRequest, /, ctx: bentoml.Context) -> IntentBatchResponse:
        """Up to 1000 queries, answered in order by one variant; a bad text gets an error in its place."""
        from inference.families.intent.requests import queries_of

        queries = queries_of(request, _header(ctx, PREFERENCE_HEADER))
        callers = [request.user_id] * len(queries)
        return await self._many("intent", queries, callers, ("texts", "text"), IntentBatchResponse, ctx)

    @bentoml.api(route=paths.TEXTPAIR_ROUTE)
    async def predict(self, request: TextPairRequest, /, ctx: bentoml.Context) -> TextPairResult:
        """Whether two texts mean the same, with the model's confidence."""
        return await self._one("textpair", request, None, ctx)

    async def _one(self, family: str, request: Any, caller_id: str | None, ctx: bentoml.Context) -> Any:
        """One request of `family` through the serving path: its answer, or its error in the API's shape."""
        try:
            result, outcome = await self.app.serving.answer_one(
                family, request, caller_id=caller_id, forced_version=forced_version(ctx.request)
            )
        except InferenceError as err:
            return error_response(err, ctx)  # BentoML passes a Response through
        self._after_response(ctx, family, outcome)
        return result

    async def _many(
        self,
        family: str,
        requests: list[Any],
        caller_ids: list[str | None],
        batch: tuple[str, str],
        response: type[Any],
        ctx: bentoml.Context,
    ) -> Any:
        """A batch of `family`, each failed item's error in its place: `response(results, succeeded, failed)`."""
        from inference.serving.pipeline import BatchLimit

        field, noun = batch
        try:
            outcome = await self.app.serving.answer_many(
                family,
                requests,
                caller_ids=caller_ids,
                forced_version=forced_version(ctx.request),
                limit=BatchLimit(field, noun, self.app.settings.max_batch_items),
            )
        except InferenceError as err:
            return error_response(err, ctx)
        results, succeeded = outcome.in_place()
        self._after_response(ctx, family, outcome)
        return response.model_construct(results=results, succeeded=succeeded, failed=len(requests) - succeeded)

    @bentoml.api(route=paths.RATINGS_ROUTE)
    async def post_ratings(self, request: RatingsRequest, /, ctx: bentoml.Context) -> RatingsResponse:
        """Teacher ratings (1-5) for students' skills: the ground truth the scores are correlated with. Needs
        `Authorization: Bearer <token>` with a ratings writer's token (INFERENCE_RATINGS_TOKEN(S))."""
        from inference.monitoring.observer import check_ratings, store_ratings_async

        try:  # the writer's token was checked at the edge, before the body was read
            rows = check_ratings(request, self.app.served_skills())
            written = await store_ratings_async(self.app.monitoring.engine, rows)
            return RatingsResponse(stored=written.stored, rejected=[row.index for row in written.rejected])
        except InferenceError as err:
            # A route answers its error as a Response, which BentoML sends as it is (not the declared type).
            return error_response(err, ctx)  # type: ignore[return-value]

    @bentoml.api(route=paths.INTENT_FEEDBACK_ROUTE)
    async def post_intent_feedback(self, request: IntentFeedbackRequest, /, ctx: bentoml.Context) -> FeedbackResponse:
        """Labelled queries (their true intent): answered by every loaded version and variant on arrival, stored as
        right or wrong, for live accuracy and the ensemble's go/no-go (GET /api/v1/monitoring/accuracy). Needs a
        ratings writer's bearer token."""
        return await self._feedback(ctx, "intent", request.items, [item.text for item in request.items])

    @bentoml.api(route=paths.TEXTPAIR_FEEDBACK_ROUTE)
    async def post_textpair_feedback(
        self, request: TextPairFeedbackRequest, /, ctx: bentoml.Context
    ) -> FeedbackResponse:
        """Labelled text pairs (whether they truly mean the same), as the intent feedback. Needs a ratings writer's
        bearer token."""
        texts = [text for item in request.items for text in (item.text1, item.text2)]
        return await self._feedback(ctx, "textpair", request.items, texts)

    async def _feedback(self, ctx: bentoml.Context, family: str, items: list[Any], texts: list[str]) -> Any:
        """Labelled items answered by every loaded version and variant, a chunk at a time off the event loop (a
        request cut off or abandoned stops after the chunk in hand), then stored together."""
        from inference.families.texts import check_request_chars
        from inference.http.writes import feedback_rows
        from inference.monitoring.feedback import check_count, store_feedback
        from inference.monitoring.observer import store_async

        settings = self.app.settings
        try:  # the writer's token was checked at the edge, before the body was read
            check_count(len(items))
            check_request_chars(texts, field_name="items", max_chars=settings.max_request_chars)
            scorers = dict(self.app.serving.family(family).scorers)
            rows = []
            for start in range(0, len(items), FEEDBACK_CHUNK):
                chunk = items[start : start + FEEDBACK_CHUNK]
                rows += await asyncio.to_thread(
                    feedback_rows, family, chunk, scorers, max_text_chars=settings.max_text_chars, first_index=start
                )
            written = await store_async("labelled items", store_feedback, self.app.monitoring.engine, rows)
        except InferenceError as err:
            return error_response(err, ctx)
        answered = sorted({f"{row['model_version']}/{row['variant']}".rstrip("/") for row in rows})
        return FeedbackResponse(stored=len(items), scored_by=answered, rejected_rows=len(written.rejected))

    @bentoml.on_shutdown
    async def close(self) -> None:
        await self.app.close()

    def _after_response(self, ctx: bentoml.Context, family: str, outcome: Outcome) -> None:
        """The shadow's copy of a sampled request: a background task, run once the response has been sent."""
        shadow = self.app.shadows.get(family)
        if shadow is not None:
            compare = shadow.task(outcome)
            if compare is not None:
                ctx.response.background.add_task(compare)


# The edge comes first of the service's middlewares: load, writers' tokens and every request limit are checked
# before BentoML reads a body, and every request is measured by its route template (inference/http/edge.py);
# then every 4xx leaves in the API's error shape (inference/http/middleware.py).
Inference.add_asgi_middleware(
    Edge,
    routes=route_table(get_settings(), mounted=extra_routes.routes),
    limits=EdgeLimits(
        max_body_bytes=get_settings().max_body_bytes,
        max_json_depth=get_settings().max_json_depth,
        max_concurrent_requests=get_settings().max_concurrent_requests,
        retry_after_s=get_settings().retry_after_s,
        max_loop_lag_s=get_settings().max_event_loop_lag_ms / 1000,
        max_concurrent_batches=get_settings().max_concurrent_batches,
    ),
    writer_tokens=RATINGS_TOKENS,
    metrics=HttpMetrics,
    backlog=BACKLOGS.refusal,
)
Inference.add_asgi_middleware(UniformErrors)


def _header(ctx: bentoml.Context, name: str) -> str | None:
    return ctx.request.headers.get(name)
