"""The BentoML service: routes and lifecycle only. Everything between the edges lives in the `inference` package."""

from __future__ import annotations

import gc
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inference.errors import InferenceError, ModelsNotReady
from inference.schemas import (
    FamilyModels,
    HealthResponse,
    IntentBatchRequest,
    IntentBatchResponse,
    IntentRequest,
    IntentResult,
    ModelsResponse,
    SkillBatchRequest,
    SkillBatchResponse,
    SkillInferenceRequest,
    SkillInferenceResult,
    SkillModelsResponse,
    TextPairRequest,
    TextPairResult,
)
from inference.settings import get_settings

if TYPE_CHECKING:
    from inference.families import Families
    from inference.intent import IntentClassifier
    from inference.skills import SkillsScorer
    from inference.textpair import TextPairScorer

logger = logging.getLogger("inference")

SKILLS_INFER_ROUTE = "/api/v1/skills/infer"
SKILLS_BATCH_ROUTE = "/api/v1/skills/infer/batch"
CLASSIFY_ROUTE = "/api/classify"
CLASSIFY_BATCH_ROUTE = "/api/classify/batch"
ENSEMBLE_ROUTE = "/api/v2/classify/ensemble"
TEXTPAIR_ROUTE = "/predict"
PREFERENCE_HEADER = "x-model-preference"
# OpenTelemetry's exclude list matches by regular-expression search: these cover every scoring route.
SCORING_ROUTES = [SKILLS_INFER_ROUTE, CLASSIFY_ROUTE, "/api/v2/classify", TEXTPAIR_ROUTE]


def error_response(error: InferenceError, ctx: bentoml.Context | None = None) -> JSONResponse:
    """The one error shape of this API: `{"error": message, "code": code}` (BentoML's own errors use "error" too).

    Routes that take a `ctx` must pass it: BentoML sets their response's status from the context, even when
    the route returns a response of its own.
    """
    if ctx is not None:
        ctx.response.status_code = error.status
    return JSONResponse({"error": error.message, "code": error.code}, status_code=error.status)


def current() -> Inference:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


async def list_skill_models(request: Request) -> JSONResponse:
    try:
        scorer = current().skills()
    except InferenceError as err:
        return error_response(err)
    from inference.registry import model_summary

    models = [model_summary(skill, model) for skill, model in scorer.models.items()]
    return JSONResponse(SkillModelsResponse.model_validate({"models": models}).model_dump(mode="json"))


async def list_models(request: Request) -> JSONResponse:
    """Every family this server serves, with its models and their served versions."""
    return JSONResponse(ModelsResponse(families=current().served()).model_dump(mode="json"))


async def health(request: Request) -> JSONResponse:
    """Status (200 when every family is loaded, else 503), the time, and the models loaded per family."""
    service = current()
    ready = service.__is_ready__()
    body = HealthResponse(
        status="ok" if ready else "unavailable",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        families=service.served(),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


async def textpair_model_info(request: Request) -> JSONResponse:
    try:
        scorer = current().textpair()
    except InferenceError as err:
        return error_response(err)
    return JSONResponse(scorer.model_info().model_dump(mode="json"))


# Read-only routes (GET) live in a small Starlette app; BentoML's @api routes are POST only.
read_routes = Starlette(
    routes=[
        Route("/api/v1/skills/models", list_skill_models, methods=["GET"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/model_info", textpair_model_info, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
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
            "access_control_allow_headers": ["Content-Type", "Authorization", "X-Model-Preference"],
        }
    }


# BentoML reads its configuration when the class is decorated, so these settings are read at import. They are
# defaults: a BentoML configuration file (BENTOML_CONFIG) overrides them.
@bentoml.asgi_app(read_routes, path="/")
# BentoML's TimeoutMiddleware schedules one timer per request for the whole timeout and never cancels it, so
# each request's objects stay alive that long; after a burst, full garbage collections then scan them all.
# A short timeout bounds that retention (see docs/performance.md).
@bentoml.service(
    name="inference",
    traffic={"timeout": get_settings().request_timeout_s},
    workers=get_settings().workers,
    logging={"access": {"enabled": get_settings().access_log}},
    tracing={"excluded_urls": None if get_settings().trace_scoring else SCORING_ROUTES},
    http=_cors(),
)
class Inference:
    def __init__(self) -> None:
        self.settings = get_settings()
        logging.getLogger("inference").setLevel(self.settings.log_level)
        # Loaded before the worker accepts its first connection (this runs in the worker's startup), so with
        # several workers on one socket no request reaches a worker that is still loading while another one
        # already answers /readyz. A family that fails to load leaves the worker alive and unready, with the
        # reason in the log and in every 503, not in a crash loop.
        self.families = self._load_families()

    def _load_families(self) -> Families:
        # Imported here, not at the top: `bentoml serve` imports this module in its supervising process too,
        # which never scores; the model libraries would cost that process ~90 MiB and ~2 s of start.
        from inference.families import load_families
        from inference.metrics import PrometheusMetrics

        logger.info("loading families %s", self.settings.families)
        families = load_families(self.settings, metrics=PrometheusMetrics())
        # Move everything alive now (BentoML, models) out of the collector's reach: full collections over
        # that heap stalled single requests for 80-115 ms at P99; after freezing, P99 is ~6.5 ms (wrk, 1 client).
        gc.freeze()
        if families.ready():
            logger.info("ready: %s", {entry.family: len(entry.models) for entry in families.served()})
        return families

    def __is_ready__(self) -> bool:
        return self.families.ready()

    def served(self) -> list[FamilyModels]:
        return self.families.served()

    def _family(self, name: str) -> object:
        scorer = getattr(self.families, name)
        if scorer is None:
            if name not in self.families.enabled:
                reason = f"this server does not serve it (INFERENCE_FAMILIES={self.families.enabled})"
            else:
                reason = self.families.errors.get(name, "models are still loading")
            raise ModelsNotReady(f"{name} models are not ready: {reason}")
        return scorer

    def skills(self) -> SkillsScorer:
        return self._family("skills")  # type: ignore[return-value]

    def intent(self) -> IntentClassifier:
        return self._family("intent")  # type: ignore[return-value]

    def textpair(self) -> TextPairScorer:
        return self._family("textpair")  # type: ignore[return-value]

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

    @bentoml.api(route=CLASSIFY_ROUTE)
    async def classify(self, request: IntentRequest, /, ctx: bentoml.Context) -> IntentResult:
        """Intent and verticals of one query, from the variant in X-Model-Preference or the configured split."""
        try:
            classifier = self.intent()
            variant = classifier.choose_variant(ctx.request.headers.get(PREFERENCE_HEADER), request.user_id)
            return await classifier.classify(request.text, variant=variant)
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]

    @bentoml.api(route=CLASSIFY_BATCH_ROUTE)
    async def classify_batch(self, request: IntentBatchRequest, /, ctx: bentoml.Context) -> IntentBatchResponse:
        """Up to 1000 queries, answered in order by one variant; a bad text gets an error in its place."""
        try:
            classifier = self.intent()
            variant = classifier.choose_variant(ctx.request.headers.get(PREFERENCE_HEADER), request.user_id)
            return await classifier.classify_batch(request.texts, variant=variant)
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]

    @bentoml.api(route=ENSEMBLE_ROUTE)
    async def classify_ensemble(self, request: IntentRequest, /) -> IntentResult:
        """Always the ensemble (classic answers, flagged as a fallback, when the ensemble cannot)."""
        try:
            return await self.intent().classify(request.text, variant="ensemble")
        except InferenceError as err:
            return error_response(err)  # type: ignore[return-value]

    @bentoml.api(route=TEXTPAIR_ROUTE)
    async def predict(self, request: TextPairRequest, /) -> TextPairResult:
        """Whether two texts mean the same, with the model's confidence."""
        try:
            return await self.textpair().predict(request)
        except InferenceError as err:
            return error_response(err)  # type: ignore[return-value]

    @bentoml.on_shutdown
    def close(self) -> None:
        self.families.close()
