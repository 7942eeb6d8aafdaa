"""The BentoML service: routes and lifecycle only. Everything between the edges lives in the `inference` package."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inference.errors import InferenceError, ModelsNotReady
from inference.schemas import (
    SkillBatchRequest,
    SkillBatchResponse,
    SkillInferenceRequest,
    SkillInferenceResult,
    SkillModelsResponse,
)
from inference.settings import get_settings

if TYPE_CHECKING:
    from inference.skills import SkillsScorer

logger = logging.getLogger("inference")


def error_response(error: InferenceError) -> JSONResponse:
    """The one error shape of this API: `{"error": message, "code": code}` (BentoML's own errors use "error" too)."""
    return JSONResponse({"error": error.message, "code": error.code}, status_code=error.status)


async def list_skill_models(request: Request) -> JSONResponse:
    service: Inference = bentoml.get_current_service()
    try:
        scorer = service.skills()
    except InferenceError as err:
        return error_response(err)
    from inference.registry import model_summary

    models = [model_summary(skill, model) for skill, model in scorer.models.items()]
    return JSONResponse(SkillModelsResponse.model_validate({"models": models}).model_dump(mode="json"))


SKILLS_INFER_ROUTE = "/api/v1/skills/infer"
SKILLS_BATCH_ROUTE = "/api/v1/skills/infer/batch"
# OpenTelemetry's exclude list matches by regular-expression search, so this prefix covers both scoring routes.
SCORING_ROUTES = [SKILLS_INFER_ROUTE]

# Read-only routes (GET) live in a small Starlette app; BentoML's @api routes are POST only.
read_routes = Starlette(routes=[Route("/skills/models", list_skill_models, methods=["GET"])])


# BentoML reads its configuration when the class is decorated, so these settings are read at import. They are
# defaults: a BentoML configuration file (BENTOML_CONFIG) overrides them.
@bentoml.asgi_app(read_routes, path="/api/v1")
# BentoML's TimeoutMiddleware schedules one timer per request for the whole timeout and never cancels it, so
# each request's objects stay alive that long; after a burst, full garbage collections then scan them all.
# A short timeout bounds that retention (see docs/performance.md).
@bentoml.service(
    name="inference",
    traffic={"timeout": get_settings().request_timeout_s},
    workers=get_settings().workers,
    logging={"access": {"enabled": get_settings().access_log}},
    tracing={"excluded_urls": None if get_settings().trace_scoring else SCORING_ROUTES},
)
class Inference:
    def __init__(self) -> None:
        self.settings = get_settings()
        logging.getLogger("inference").setLevel(self.settings.log_level)
        self._scorer: SkillsScorer | None = None
        self._load_error: str | None = None
        # Loaded before the worker accepts its first connection (this runs in the worker's startup), so with
        # several workers on one socket no request reaches a worker that is still loading while another one
        # already answers /readyz. A model that fails to load leaves the worker alive and unready, with the
        # reason in the log and in every 503, not in a crash loop.
        self._load_models()

    def _load_models(self) -> None:
        # Imported here, not at the top: `bentoml serve` imports this module in its supervising process too,
        # which never scores; XGBoost and what it pulls in would cost that process ~90 MiB and ~2 s of start.
        from inference.registry import load_skill_models
        from inference.skills import SkillsScorer

        versions = self.settings.pinned_skill_versions()
        logger.info("loading skill models %s", versions)
        try:
            models = load_skill_models(versions)
        except Exception as err:  # any failure must end as a log line and an unready service
            self._load_error = str(err)
            logger.error("model loading failed, the service stays unready: %s", err, exc_info=True)
            return
        self._scorer = SkillsScorer(
            models,
            max_batch_items=self.settings.max_batch_items,
            batcher_max_size=self.settings.batcher_max_size,
            batcher_max_wait_ms=self.settings.batcher_max_wait_ms,
        )
        # Move everything alive now (BentoML, models) out of the collector's reach: full collections over
        # that heap stalled single requests for 80-115 ms at P99; after freezing, P99 is ~6.5 ms (wrk, 1 client).
        gc.freeze()
        logger.info("ready: skills %s", {skill: model.version for skill, model in models.items()})

    def __is_ready__(self) -> bool:
        return self._scorer is not None

    def skills(self) -> SkillsScorer:
        if self._scorer is None:
            reason = self._load_error or "models are still loading"
            raise ModelsNotReady(f"skill models are not ready: {reason}")
        return self._scorer

    @bentoml.api(route=SKILLS_INFER_ROUTE)
    async def skills_infer(self, request: SkillInferenceRequest, /) -> SkillInferenceResult:
        """Score one student on one skill."""
        try:
            return await self.skills().infer(request)
        except InferenceError as err:
            return error_response(err)  # type: ignore[return-value]  # BentoML passes a Response through

    @bentoml.api(route=SKILLS_BATCH_ROUTE)
    async def skills_infer_batch(self, request: SkillBatchRequest, /) -> SkillBatchResponse:
        """Score up to 1000 items; a bad item gets an error in its place and the others are still scored."""
        try:
            return await self.skills().infer_batch(request)
        except InferenceError as err:
            return error_response(err)  # type: ignore[return-value]

    @bentoml.on_shutdown
    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()
