"""The read routes (GET) outside BentoML's `@api`, which is POST only: what is served, health, the text-pair model,
drift, correlations and the dashboard. Each reads the worker's `App`; none imports the model libraries until a
request comes (the supervising process builds these routes too).

They are public: /health and /api/v1/models carry no reason for a failure, as a database's error names its host
and user and a family's load error names files; those reasons are on `GET /health?detail=true` for an admin bearer
token only. The monitoring figures are the ones the worker's timer computed last, so a burst of reads costs the
database nothing."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from inference.errors import InferenceError, InvalidRequest, StorageUnavailable
from inference.families.registry import configured
from inference.http import paths
from inference.http.errors import error_response
from inference.http.tokens import admin_tokens, token_name
from inference.logs import LOGGER_NAME
from inference.schemas import (
    AccuracyResponse,
    ControlStatus,
    CorrelationResponse,
    DriftResponse,
    EnsembleDecision,
    FamilyModels,
    GoNoGoMatrix,
    HealthResponse,
    MatrixCriterion,
    ModelDrift,
    ModelsResponse,
    SkillCorrelation,
    VariantAccuracy,
)
from inference.serving.protocol import DescribesModels

if TYPE_CHECKING:
    from inference.app import App
    from inference.monitoring.feedback import Accuracy
    from inference.monitoring.gonogo import Matrix
    from inference.settings import Settings

logger = logging.getLogger(LOGGER_NAME)


def public_families(families: list[FamilyModels]) -> list[FamilyModels]:
    """What anyone may see of the families: loaded or not, the models, the route; never why one failed."""
    return [entry.model_copy(update={"error": None}) for entry in families]


def health_body(
    status: str, families: list[FamilyModels], control: Mapping[str, Any], *, detail: bool
) -> dict[str, Any]:
    """The /health answer: the public fields by name (anything else the worker reports stays out of it), or with
    `detail` everything, reasons included."""
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    if detail:
        return HealthResponse(
            status=status, timestamp=timestamp, families=families, control=ControlStatus(**control)
        ).model_dump(mode="json")
    public = ControlStatus(store=control["store"], revision=control["revision"], reachable=control["reachable"])
    return HealthResponse(
        status=status, timestamp=timestamp, families=public_families(families), control=public
    ).model_dump(mode="json", exclude={"control": {"unreachable_for_s", "error"}})


def carries_admin_token(settings: Settings, authorization: str | None) -> bool:
    """Whether a request's Authorization header holds one of the admin API's bearer tokens."""
    return token_name(admin_tokens(settings), authorization) is not None


def go_no_go_matrices(app: App, accuracy: Sequence[Accuracy]) -> list[Matrix]:
    """The go/no-go matrix per intent version: accuracy and satisfaction from the labelled feedback, cost and
    stability from this worker's cost meter and loaded intent scorers."""
    from inference.monitoring.gonogo import FAMILY, cost_increase, ensemble_matrices

    observer = app.serving.observer
    versioned = app.serving.families.get(FAMILY)
    outcomes: dict[str, Mapping[str, int] | None] = {}
    for version, scorer in versioned.scorers.items() if versioned is not None else ():
        # `ensemble_outcomes` (answered, or the fallback's reason): kept by intent scorers from the release that
        # counts them on; None (no data) for a scorer without them.
        counted = getattr(scorer, "ensemble_outcomes", None)
        outcomes[version] = dict(counted) if counted is not None else None
    charged = observer.cost.totals() if observer.cost is not None else []
    return ensemble_matrices(accuracy, cost_increase=cost_increase(charged), outcomes=outcomes)


def matrix_answer(matrix: Matrix) -> GoNoGoMatrix:
    return GoNoGoMatrix(
        model_version=matrix.model_version,
        criteria=[MatrixCriterion(**vars(entry)) for entry in matrix.criteria],
        score=matrix.score,
        proceed_above=matrix.proceed_above,
        decision=matrix.decision,
    )


def read_routes(current: Callable[[], App]) -> list[Route]:
    """The routes; `current` gives the worker's app (built at startup, after these routes)."""

    def description(family_name: str) -> Callable[[Request], Awaitable[Response]]:
        async def describe(request: Request) -> Response:
            """The models of the family's stable version, as its scorer describes them (`DescribesModels`)."""
            try:
                family = current().serving.family(family_name)
            except InferenceError as err:
                return error_response(err)
            scorer = family.scorers[family.route.stable]
            if not isinstance(scorer, DescribesModels):
                return error_response(InvalidRequest(f"the {family_name} family does not describe its models"))
            described = await asyncio.to_thread(scorer.describe)  # may read the model store
            return JSONResponse(described.model_dump(mode="json"))

        return describe

    async def list_models(request: Request) -> Response:
        """Every family this server serves, with its models, their loaded versions and the route between them."""
        return JSONResponse(ModelsResponse(families=public_families(current().served())).model_dump(mode="json"))

    async def health(request: Request) -> Response:
        """Status (200 when every family is loaded, else 503), the time, the models per family and the control
        store's state; with `?detail=true` and an admin bearer token, the reasons too."""
        app = current()
        ready = app.ready()
        authorization = request.headers.get("authorization")
        detail = request.query_params.get("detail") == "true" and carries_admin_token(app.settings, authorization)
        body = health_body("ok" if ready else "unavailable", app.served(), app.manager.control_status(), detail=detail)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def drift(request: Request) -> Response:
        """PSI and KS of live inputs and scores against each skill model's reference (every worker's windows)."""
        app = current()
        settings = app.settings
        reports = await asyncio.to_thread(app.monitoring.drift_reports)
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

    async def correlation(request: Request) -> Response:
        """Pearson r between the scores given and the teacher ratings received, per skill and version."""
        app = current()
        settings = app.settings
        try:
            figures = await app.monitoring.latest_correlations()
        except Exception as err:  # none computed yet, and the database cannot give them
            logger.error("correlations unavailable: %s: %s", type(err).__name__, err)
            return error_response(StorageUnavailable(f"correlations unavailable: database error {type(err).__name__}"))
        body = CorrelationResponse(
            computed_at=figures.computed_at,
            window_days=settings.correlation_window_days,
            alert_below=settings.correlation_alert_below,
            min_pairs=settings.correlation_min_pairs,
            correlations=[SkillCorrelation(**vars(entry)) for entry in figures.value],
        )
        return JSONResponse(body.model_dump(mode="json"))

    async def accuracy(request: Request) -> Response:
        """Live accuracy (and satisfaction) of the intent and text-pair versions and variants on labelled feedback,
        the ensemble's go/no-go (it must beat classic by more than 10%) and the go/no-go matrix."""
        from inference.monitoring.feedback import ensemble_decisions

        app = current()
        try:
            figures = await app.monitoring.latest_accuracy()
        except Exception as err:  # as for the correlations
            logger.error("accuracy unavailable: %s: %s", type(err).__name__, err)
            return error_response(StorageUnavailable(f"accuracy unavailable: database error {type(err).__name__}"))
        body = AccuracyResponse(
            computed_at=figures.computed_at,
            window_days=app.settings.feedback_window_days,
            min_items=app.settings.feedback_min_items,
            accuracy=[VariantAccuracy(**vars(entry)) for entry in figures.value],
            ensemble=[EnsembleDecision(**vars(entry)) for entry in ensemble_decisions(figures.value)],
            go_no_go=[matrix_answer(matrix) for matrix in go_no_go_matrices(app, figures.value)],
        )
        return JSONResponse(body.model_dump(mode="json"))

    async def dashboard(request: Request) -> Response:
        """The monitoring dashboard (HTML): drift, score histograms, correlations, latency, cache, cost, accuracy
        and the go/no-go matrix."""
        from inference.http.dashboard import render_dashboard
        from inference.monitoring.feedback import ensemble_decisions

        app = current()
        observer = app.serving.observer
        try:
            found = (await app.monitoring.latest_correlations()).value
        except Exception as err:  # the page still shows the rest
            logger.warning("dashboard: correlations unavailable: %s", err)
            found = []
        try:
            accuracy = (await app.monitoring.latest_accuracy()).value
        except Exception as err:  # as for the correlations
            logger.warning("dashboard: accuracy unavailable: %s", err)
            accuracy = []
        drift = await asyncio.to_thread(app.monitoring.drift_reports)
        histograms = await asyncio.to_thread(observer.drift.histograms)
        page = render_dashboard(
            drift=drift,
            histograms=histograms,
            correlations=found,
            latencies=observer.latency_quantiles(),
            cache_counts=observer.cache_counts,
            psi_alert=app.settings.drift_psi_alert,
            min_observations=app.settings.drift_min_observations,
            worker=str(os.getpid()),
            shadow=[pair for shadow in app.shadows.values() for pair in shadow.pairs.values()] if app.shadows else None,
            accuracy=accuracy,
            decisions=ensemble_decisions(accuracy),
            matrices=go_no_go_matrices(app, accuracy),
            costs=observer.cost.totals() if observer.cost is not None else None,
        )
        return HTMLResponse(page)

    return [
        Route(paths.MODELS_ROUTE, list_models, methods=["GET"]),
        *(
            Route(spec.models_route, description(spec.name), methods=["GET"])
            for spec in configured().values()
            if spec.models_route
        ),
        Route(paths.HEALTH_ROUTE, health, methods=["GET"]),
        Route(paths.DRIFT_ROUTE, drift, methods=["GET"]),
        Route(paths.CORRELATION_ROUTE, correlation, methods=["GET"]),
        Route(paths.ACCURACY_ROUTE, accuracy, methods=["GET"]),
        Route(paths.DASHBOARD_ROUTE, dashboard, methods=["GET"]),
    ]
