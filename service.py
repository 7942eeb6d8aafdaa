"""The BentoML service: routes and lifecycle only. Everything between the edges lives in the `inference` package."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from inference import routes
from inference.errors import InferenceError, StorageUnavailable
from inference.metrics import count_limit_rejection
from inference.middleware import RequestLimits, UniformErrors
from inference.routes import (
    CLASSIFY_BATCH_ROUTE,
    CLASSIFY_ROUTE,
    ENSEMBLE_ROUTE,
    RATINGS_ROUTE,
    SKILLS_BATCH_ROUTE,
    SKILLS_INFER_ROUTE,
    TEXTPAIR_ROUTE,
)
from inference.schemas import (
    FamilyModels,
    HealthResponse,
    IntentBatchRequest,
    IntentBatchResponse,
    IntentRequest,
    IntentResult,
    ModelsResponse,
    RatingsRequest,
    RatingsResponse,
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
    from collections.abc import Sequence

    from inference.manager import ModelManager
    from inference.monitoring import Monitoring
    from inference.serving import Serving
    from inference.shadow import Shadow

logger = logging.getLogger("inference")

# Starlette's headers are matched in lower case.
PREFERENCE_HEADER = routes.PREFERENCE_HEADER.lower()
VERSION_HEADER = routes.VERSION_HEADER.lower()
# OpenTelemetry's exclude list matches by regular-expression search: these cover every scoring route.
SCORING_ROUTES = [SKILLS_INFER_ROUTE, CLASSIFY_ROUTE, "/api/v2/classify", TEXTPAIR_ROUTE, "/v2/models/"]

# The workers of one server share admin changes through this directory. `bentoml serve` imports this module in
# its supervising process first and the workers inherit its environment, so one directory per server start.
if get_settings().state_dir is None and "INFERENCE_STATE_DIR" not in os.environ:
    os.environ["INFERENCE_STATE_DIR"] = tempfile.mkdtemp(prefix="inference-state-")


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
    from inference.registry import model_summary

    try:
        family = current().serving.family("skills")
    except InferenceError as err:
        return error_response(err)
    scorer = family.scorers[family.route.stable]
    models = [model_summary(skill, model) for skill, model in scorer.models.items()]
    return JSONResponse(SkillModelsResponse.model_validate({"models": models}).model_dump(mode="json"))


async def list_models(request: Request) -> JSONResponse:
    """Every family this server serves, with its models, their loaded versions and the route between them."""
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
        family = current().serving.family("textpair")
    except InferenceError as err:
        return error_response(err)
    return JSONResponse(family.scorers[family.route.stable].model_info().model_dump(mode="json"))


async def drift(request: Request) -> JSONResponse:
    """PSI and KS of live inputs and scores against each skill model's reference (this worker's window)."""
    from inference.schemas import DriftResponse, ModelDrift

    service = current()
    settings = service.settings
    reports = service.monitoring.drift_reports()
    body = DriftResponse(
        psi_alert_above=settings.drift_psi_alert,
        min_observations=settings.drift_min_observations,
        models=[
            ModelDrift(
                model=report.model,
                model_version=report.version,
                window=report.window,
                psi=report.psi,
                ks=report.ks,
                alert=report.worst_psi() > settings.drift_psi_alert,
            )
            for report in reports
        ],
    )
    return JSONResponse(body.model_dump(mode="json"))


async def correlation(request: Request) -> JSONResponse:
    """Pearson r between the scores given and the teacher ratings received, per skill and version."""
    import asyncio

    from inference.schemas import CorrelationResponse, SkillCorrelation

    service = current()
    settings = service.settings
    try:
        found = await asyncio.to_thread(service.monitoring.correlations)
    except Exception as err:
        logger.error("correlations unavailable: %s: %s", type(err).__name__, err)
        return error_response(StorageUnavailable(f"correlations unavailable: database error {type(err).__name__}"))
    body = CorrelationResponse(
        window_days=settings.correlation_window_days,
        alert_below=settings.correlation_alert_below,
        min_pairs=settings.correlation_min_pairs,
        correlations=[SkillCorrelation(**vars(entry)) for entry in found],
    )
    return JSONResponse(body.model_dump(mode="json"))


async def dashboard(request: Request) -> HTMLResponse:
    import asyncio

    from inference.dashboard import render_dashboard
    from inference.drift import score_histograms

    service = current()
    observer = service.serving.observer
    try:
        found = await asyncio.to_thread(service.monitoring.correlations)
    except Exception as err:  # the page still shows what this worker knows
        logger.warning("dashboard: correlations unavailable: %s", err)
        found = []
    page = render_dashboard(
        drift=service.monitoring.drift_reports(),
        histograms=score_histograms(observer.drift),
        correlations=found,
        latencies=observer.latency_quantiles(),
        cache_counts=observer.cache_counts,
        psi_alert=service.settings.drift_psi_alert,
        min_observations=service.settings.drift_min_observations,
        worker=str(os.getpid()),
        shadow=[pair for shadow in service.shadows.values() for pair in shadow.pairs.values()]
        if service.shadows
        else None,
    )
    return HTMLResponse(page)


def _admin_routes() -> list[Route]:
    from inference.admin import admin_routes

    token = get_settings().admin_token
    return admin_routes(token.get_secret_value() if token else None, lambda: current().manager)


def _oip_routes() -> list[Route]:
    from inference.oip import oip_routes

    return oip_routes(lambda: current().serving)


# Routes outside BentoML's @api (which are POST only): reads, and the admin API.
extra_routes = Starlette(
    routes=[
        Route(routes.SKILLS_MODELS_ROUTE, list_skill_models, methods=["GET"]),
        Route(routes.MODELS_ROUTE, list_models, methods=["GET"]),
        Route("/model_info", textpair_model_info, methods=["GET"]),
        Route(routes.HEALTH_ROUTE, health, methods=["GET"]),
        Route("/api/v1/monitoring/drift", drift, methods=["GET"]),
        Route("/api/v1/monitoring/correlation", correlation, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        *_admin_routes(),
        *_oip_routes(),
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
            "access_control_allow_headers": ["Content-Type", "Authorization", "X-Model-Preference", "X-Model-Variant"],
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
    tracing={"excluded_urls": None if get_settings().trace_scoring else SCORING_ROUTES},
    http=_cors(),
)
class Inference:
    def __init__(self) -> None:
        # Imported here, not at the top: `bentoml serve` imports this module in its supervising process too,
        # which never scores; the model libraries would cost that process ~90 MiB and ~2 s of start.
        from inference.cache import cache_from_url
        from inference.drift import DriftMonitor
        from inference.families import FamilyLoader, load_families
        from inference.ground_truth import PredictionLog
        from inference.manager import ModelManager
        from inference.metrics import PrometheusMetrics
        from inference.monitoring import Monitoring, Observer
        from inference.serving import Serving
        from inference.shadow import load_shadows
        from inference.state import SharedState
        from inference.storage import DeferredEngine

        settings = self.settings = get_settings()
        logging.getLogger("inference").setLevel(settings.log_level)
        metrics = PrometheusMetrics()
        # Loaded before the worker accepts its first connection (this runs in the worker's startup), so with
        # several workers on one socket no request reaches a worker that is still loading while another one
        # already answers /readyz. A family that fails to load leaves the worker alive and unready, with the
        # reason in the log and in every 503, not in a crash loop.
        loader = FamilyLoader(settings, metrics=metrics)
        logger.info("loading families %s", settings.families)
        families = load_families(settings, loader)
        cache = cache_from_url(
            settings.cache_url,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.cache_timeout_ms / 1000,
            max_entries=settings.cache_max_entries,
            stats=metrics,
        )
        engine = DeferredEngine(settings.database_url)
        try:
            engine.open()
        except Exception as err:  # serve anyway: only ratings, correlations and the prediction log need it
            logger.error(
                "database not usable at start (%s: %s); ratings, correlations and the prediction log fail until "
                "it is, scoring is not affected",
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
            )
        observer = Observer(
            metrics=metrics,
            drift=DriftMonitor(window=settings.drift_window, min_observations=settings.drift_min_observations),
            predictions=PredictionLog(engine),
            prediction_log_share=settings.prediction_log_share,
        )
        self.serving: Serving = Serving(families, cache, observer=observer)
        self.shadows: dict[str, Shadow] = load_shadows(settings, metrics)
        self.monitoring: Monitoring = Monitoring(
            observer,
            engine,
            psi_alert=settings.drift_psi_alert,
            correlation_alert_below=settings.correlation_alert_below,
            correlation_window_days=settings.correlation_window_days,
            correlation_min_pairs=settings.correlation_min_pairs,
        )
        state_dir = settings.state_dir or Path(os.environ["INFERENCE_STATE_DIR"])
        self.manager: ModelManager = ModelManager(
            families,
            loader,
            SharedState(state_dir),
            cache,
            retire_after_s=2 * settings.request_timeout_s,
            watch_store_s=settings.reload_watch_s,
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Move everything alive now (BentoML, models) out of the collector's reach: full collections over
        # that heap stalled single requests for 80-115 ms at P99; after freezing, P99 is ~6.5 ms (wrk, 1 client).
        gc.freeze()
        if families.ready():
            logger.info("ready: %s", {entry.family: entry.route for entry in families.served()})

    @bentoml.on_startup
    async def start_background_work(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.manager.follow(), name="model-changes"),
            loop.create_task(self.monitoring.run(), name="monitoring"),
        ]

    def __is_ready__(self) -> bool:
        return self.serving.families.ready()

    def served(self) -> list[FamilyModels]:
        return self.serving.families.served()

    @bentoml.api(route=SKILLS_INFER_ROUTE)
    async def skills_infer(self, request: SkillInferenceRequest, /, ctx: bentoml.Context) -> SkillInferenceResult:
        """Score one student on one skill (the version: X-Model-Variant, else the route, sticky per student)."""
        try:
            result = await self.serving.skills_infer(request, forced_version=_header(ctx, VERSION_HEADER))
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]  # BentoML passes a Response through
        self._after_response(ctx, "skills", [request], [result])
        return result

    @bentoml.api(route=SKILLS_BATCH_ROUTE)
    async def skills_infer_batch(self, request: SkillBatchRequest, /, ctx: bentoml.Context) -> SkillBatchResponse:
        """Score up to 1000 items; a bad item gets an error in its place and the others are still scored."""
        try:
            response = await self.serving.skills_infer_batch(request, forced_version=_header(ctx, VERSION_HEADER))
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]
        self._after_response(ctx, "skills", request.items, response.results)
        return response

    def _after_response(
        self, ctx: bentoml.Context, family: str, requests: Sequence[object], answers: Sequence[object]
    ) -> None:
        """The shadow's copy of a sampled request: a background task, run once the response has been sent."""
        shadow = self.shadows.get(family)
        if shadow is not None:
            compare = shadow.task(requests, answers)
            if compare is not None:
                ctx.response.background.add_task(compare)

    @bentoml.api(route=CLASSIFY_ROUTE)
    async def classify(self, request: IntentRequest, /, ctx: bentoml.Context) -> IntentResult:
        """Intent and verticals of one query, from the variant in X-Model-Preference or the configured split."""
        try:
            result = await self.serving.classify(
                request.text,
                user_id=request.user_id,
                preference=_header(ctx, PREFERENCE_HEADER),
                forced_version=_header(ctx, VERSION_HEADER),
            )
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]
        self._after_response(ctx, "intent", [request.text], [result])
        return result

    @bentoml.api(route=CLASSIFY_BATCH_ROUTE)
    async def classify_batch(self, request: IntentBatchRequest, /, ctx: bentoml.Context) -> IntentBatchResponse:
        """Up to 1000 queries, answered in order by one variant; a bad text gets an error in its place."""
        try:
            response = await self.serving.classify_batch(
                request.texts,
                user_id=request.user_id,
                preference=_header(ctx, PREFERENCE_HEADER),
                forced_version=_header(ctx, VERSION_HEADER),
            )
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]
        self._after_response(ctx, "intent", request.texts, response.results)
        return response

    @bentoml.api(route=ENSEMBLE_ROUTE)
    async def classify_ensemble(self, request: IntentRequest, /, ctx: bentoml.Context) -> IntentResult:
        """Always the ensemble (classic answers, flagged as a fallback, when the ensemble cannot)."""
        try:
            result = await self.serving.classify(
                request.text,
                user_id=request.user_id,
                preference="ensemble",
                forced_version=_header(ctx, VERSION_HEADER),
            )
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]
        self._after_response(ctx, "intent", [request.text], [result])
        return result

    @bentoml.api(route=TEXTPAIR_ROUTE)
    async def predict(self, request: TextPairRequest, /, ctx: bentoml.Context) -> TextPairResult:
        """Whether two texts mean the same, with the model's confidence."""
        try:
            result = await self.serving.predict_pair(request, forced_version=_header(ctx, VERSION_HEADER))
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]
        self._after_response(ctx, "textpair", [request], [result])
        return result

    @bentoml.api(route=RATINGS_ROUTE)
    async def post_ratings(self, request: RatingsRequest, /, ctx: bentoml.Context) -> RatingsResponse:
        """Teacher ratings (1-5) for students' skills: the ground truth the scores are correlated with."""
        from inference.monitoring import check_ratings, store_ratings_async

        try:
            rows = check_ratings(request)
            return RatingsResponse(stored=await store_ratings_async(self.monitoring.engine, rows))
        except InferenceError as err:
            return error_response(err, ctx)  # type: ignore[return-value]

    @bentoml.on_shutdown
    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.monitoring.close()
        await self.manager.close()
        await self.serving.cache.close()
        self.serving.families.close()
        for shadow in self.shadows.values():
            shadow.scorer.close()


# Body size and JSON depth are checked before BentoML reads the body; every 4xx leaves in the API's error shape
# (see inference/middleware.py).
Inference.add_asgi_middleware(UniformErrors)
Inference.add_asgi_middleware(
    RequestLimits,
    max_body_bytes=get_settings().max_body_bytes,
    max_json_depth=get_settings().max_json_depth,
    count=count_limit_rejection,
)


def _header(ctx: bentoml.Context, name: str) -> str | None:
    return ctx.request.headers.get(name)
