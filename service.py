"""The BentoML service: the workers' lifecycle, BentoML's configuration, the middlewares and the mounted routes.
What a worker serves with is built by `inference.app.build`. Every route is mounted from `inference.http`: each
family's scoring and feedback routes from its registration (`FamilySpec`), the reads, the admin API and the Open
Inference Protocol; no route is an `@bentoml.api` method (docs/performance.md, "The scoring routes outside
BentoML's IO layer")."""

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

from inference.families.registry import configured
from inference.http import paths
from inference.http.edge import Edge, EdgeLimits
from inference.http.middleware import UniformErrors
from inference.http.reads import read_routes
from inference.http.routes import route_table
from inference.http.scoring import scoring_routes
from inference.http.tokens import admin_tokens, writer_tokens
from inference.http.writes import write_routes
from inference.logs import configure_logging
from inference.monitoring.metrics import HttpMetrics
from inference.serving.batching import BACKLOGS
from inference.settings import get_settings

if TYPE_CHECKING:
    from inference.app import App

logger = logging.getLogger("inference")

# Starlette's headers are matched in lower case.
PREFERENCE_HEADER = paths.PREFERENCE_HEADER.lower()
VERSION_HEADER = paths.VERSION_HEADER.lower()
DEPRECATED_VERSION_HEADER = paths.DEPRECATED_VERSION_HEADER.lower()
# OpenTelemetry's exclude list matches by regular-expression search: these cover every scoring route.
SCORING_ROUTES = [
    *(route.path for spec in configured(get_settings()).values() for route in spec.routes),
    "/v2/models/",
]

STATE_DIR_VARIABLE = "INFERENCE_STATE_DIR"
# Where the intent ensemble runs: in the intent worker (`local`), as its own BentoML service that `bentoml serve`
# starts beside this one (`apart`), or at a URL (its own deployment). Read at import, as BentoML builds the
# services' graph from the class definitions.
ENSEMBLE_AT = get_settings().ensemble_service
ENSEMBLE_APART = ENSEMBLE_AT != "local" and "intent" in get_settings().families
# The ratings writers' tokens, by name (a role apart from the admin's).
RATINGS_TOKENS = writer_tokens(get_settings())


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
    from inference.http.writes import write_operations

    families = list(configured(get_settings()).values())

    return full_document(
        Inference.openapi_spec.asdict(),
        title=Inference.name,
        version=server_version(),
        extra=[*scoring_operations(families), *write_operations(families)],
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
        # Every family's JSON scoring routes and feedback route, from its registration; the teachers' ratings.
        *scoring_routes(list(configured(get_settings()).values()), current),
        *write_routes(list(configured(get_settings()).values()), current),
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
                "X-Request-ID",
            ],
            # What a browser's code may read of an answer: the request id, and when to come back after a 503.
            "access_control_expose_headers": ["X-Request-ID", "Retry-After"],
        }
    }


@bentoml.service(
    name="intent-ensemble",
    workers=get_settings().ensemble_workers,
    traffic={"timeout": get_settings().request_timeout_s},
    logging={"access": {"enabled": get_settings().access_log}},
    # BentoML's client of a dependency starts a new connection pool every 100 calls or 300 s by default, closing
    # the connections of calls in flight (errors under load); the ensemble's callers keep theirs.
    runner_connection={"max_requests": 1_000_000_000, "max_age": 86_400.0},
)
class IntentEnsemble:
    """The intent ensemble as its own service (INFERENCE_ENSEMBLE_SERVICE apart or a URL): the ensemble model of
    each intent version the front asks for, batched; the front keeps classic and the vertical detectors and falls
    back to classic when this service is absent, starting or slow (inference/families/intent/apart.py)."""

    def __init__(self) -> None:
        from inference.families.intent.apart import EnsembleWorker
        from inference.families.intent.variants import ENSEMBLE_MODEL
        from inference.faults import FaultInjector
        from inference.serving.batching import BatcherOptions
        from inference.store.registry import resolve_model_version

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        self.max_items = settings.max_batch_items
        self.max_text_chars = settings.max_text_chars
        self.worker = EnsembleWorker(
            BatcherOptions(
                max_batch_size=settings.batcher_max_size,
                max_wait_ms=settings.batcher_max_wait_ms,
                max_queue_wait_s=settings.max_queue_wait_ms / 1000,
                retry_after_s=settings.retry_after_s,
            ),
            faults=FaultInjector(settings.inject_faults),
        )
        # The versions the settings name are loaded before the first call; others (a version an admin routes to
        # later) on the first call that asks for them.
        named = {settings.version_of("intent"), *settings.configured_routes().get("intent", {})}
        self.worker.preload(sorted({resolve_model_version(ENSEMBLE_MODEL, version) for version in named}))
        gc.freeze()

    @bentoml.api
    async def classify(self, texts: list[str], version: str) -> list[tuple[str, float]]:
        """Each text's intent and probability by the ensemble of `version`."""
        from bentoml.exceptions import InvalidArgument

        if len(texts) > self.max_items:
            raise InvalidArgument(f"texts: at most {self.max_items} items, got {len(texts)}")
        if any(len(text) > self.max_text_chars for text in texts):
            raise InvalidArgument(f"texts: each at most {self.max_text_chars} characters")
        return await self.worker.classify(texts, version)

    @bentoml.on_shutdown
    def close(self) -> None:
        self.worker.close()


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
    # BentoML's /readyz also waits on every dependency: an ensemble at zero replicas, or starting, would take the
    # intent front out of service, while it answers with classic meanwhile. Ready is this worker's own families.
    runner_probe={"enabled": False, "timeout": 1, "period": 10},
)
class Inference:
    if ENSEMBLE_APART:  # the ensemble's own service: started beside this one, or reached at its URL
        ensemble = bentoml.depends(IntentEnsemble, url=None if ENSEMBLE_AT == "apart" else ENSEMBLE_AT)

    def __init__(self) -> None:
        # Imported here, not at the top: `bentoml serve` imports this module in its supervising process too,
        # which never scores; the model libraries would cost that process ~90 MiB and ~2 s of start.
        from inference.app import build
        from inference.monitoring.metrics import PrometheusMetrics

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        # Built before the worker accepts its first connection (this runs in the worker's startup), so with
        # several workers on one socket no request reaches a worker that is still loading while another one
        # already answers /readyz.
        remotes: dict[str, object] = {}
        if ENSEMBLE_APART:
            from inference.families.intent.variants import ENSEMBLE_MODEL
            from inference.http.ensemble import BentoEnsemble

            self.ensemble_client = BentoEnsemble(self.ensemble)
            remotes[ENSEMBLE_MODEL] = self.ensemble_client
        self.app: App = build(settings, metrics=PrometheusMetrics(), remotes=remotes)
        # Move everything alive now (BentoML, models) out of the collector's reach: full collections over
        # that heap stalled single requests for 80-115 ms at P99; after freezing, P99 is ~6.5 ms (wrk, 1 client).
        gc.freeze()

    @bentoml.on_deployment
    def configure_supervisor_logging() -> None:
        """The supervising process's own lines (the server starting, workers restarting) in the format the
        workers write theirs (INFERENCE_LOG_FORMAT); each worker configures its own in `__init__`."""
        configure_logging(get_settings().log_level, get_settings().log_format)

    @bentoml.on_deployment
    def share_state_directory() -> None:
        """The directory the workers of one server share admin changes and drift windows through, unless one is
        set: made once per server start, in the supervising process before it starts the workers, which inherit
        its environment."""
        if get_settings().state_dir is None and STATE_DIR_VARIABLE not in os.environ:
            os.environ[STATE_DIR_VARIABLE] = tempfile.mkdtemp(prefix="inference-state-")

    @bentoml.on_startup
    async def start_background_work(self) -> None:
        if ENSEMBLE_APART:
            self.ensemble_client.bind(asyncio.get_running_loop())
        self.app.start()

    def __is_ready__(self) -> bool:
        return self.app.ready()

    @bentoml.on_shutdown
    async def close(self) -> None:
        await self.app.close()


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
