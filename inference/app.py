"""The composition root: `build(settings)` loads the families and wires the serving path, the cache, the database,
monitoring, the shadows and the model manager into one `App`. service.py builds one per worker and keeps only the
routes; tests build one in process.

Imported only where a worker starts: the families pull in the model libraries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference.families import get_family
from inference.families.intent.variants import ENSEMBLE
from inference.logs import LOGGER_NAME
from inference.monitoring.cost import CostMeter, Prices
from inference.monitoring.drift import DriftMonitor
from inference.monitoring.ground_truth import PredictionLog
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.monitoring.observer import Monitoring, Observer
from inference.schemas import FamilyModels
from inference.serving.cache import cache_from_url
from inference.serving.control import control_store
from inference.serving.guard import Guard, GuardLimits
from inference.serving.loader import FamilyLoader, load_families
from inference.serving.manager import ModelManager
from inference.serving.pipeline import Serving
from inference.serving.shadow import Shadow, load_shadows
from inference.settings import Settings
from inference.storage import DeferredEngine

logger = logging.getLogger(LOGGER_NAME)


@dataclass
class App:
    settings: Settings
    serving: Serving
    monitoring: Monitoring
    manager: ModelManager
    shadows: dict[str, Shadow]
    guard: Guard | None = None  # of the intent ensemble's share (INFERENCE_ENSEMBLE_GUARD)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def ready(self) -> bool:
        return self.serving.families.ready()

    def served(self) -> list[FamilyModels]:
        return self.serving.families.served()

    def served_skills(self) -> list[str] | None:
        """The skills of the stable skills version; None when this server serves no skills family (yet)."""
        versioned = self.serving.families.get("skills")
        if versioned is None:
            return None
        return list(versioned.scorers[versioned.route.stable].skills)

    def start(self) -> None:
        """The background work of a worker: following admin changes, the monitoring timers, the guard."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.manager.follow(), name="model-changes"),
            loop.create_task(self.monitoring.run(), name="monitoring"),
            loop.create_task(self._open_database(), name="open-database"),
        ]
        if self.guard is not None:
            self._tasks.append(loop.create_task(self.guard.run(), name="guard"))

    async def _open_database(self) -> None:
        """Open the database (and create its schema) off the event loop, once the worker serves: an early, clear
        log line when it cannot be reached, without holding the start. Every use opens it again until it works."""
        try:
            await asyncio.to_thread(self.monitoring.engine.open)
        except Exception as err:  # serve anyway: only ratings, correlations and the prediction log need it
            logger.error(
                "database not usable at start (%s: %s); ratings, correlations and the prediction log fail until it "
                "is, scoring is not affected",
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.monitoring.close()
        await self.manager.close()
        await self.serving.cache.close()
        self.serving.families.close()
        for shadow in self.shadows.values():
            shadow.scorer.close()


def build(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    state_dir: Path | None = None,
    remotes: Mapping[str, object] | None = None,
) -> App:
    """Everything one worker serves with; `remotes`: clients of the parts of families that run as services of their
    own (the intent ensemble's, when apart), by name. A family that fails to load leaves the app unready (the
    reason in the log and, for an admin, on /health?detail=true), and a database that cannot be reached leaves
    ratings and correlations failing until it can; neither stops the worker."""
    metrics = metrics or NoMetrics()
    # What the server's workers share: admin changes without a control store, and the drift windows.
    shared = state_dir or settings.state_dir or _server_state_dir()
    loader = FamilyLoader(settings, get_family, metrics=metrics, remotes=remotes)
    logger.info("loading families %s", settings.families)
    families = load_families(settings, loader)
    cache = cache_from_url(
        settings.cache_url,
        ttl_s=settings.cache_ttl_s,
        timeout_s=settings.cache_timeout_ms / 1000,
        max_entries=settings.cache_max_entries,
        stats=metrics,
    )
    # Opened on first use, off the event loop (the monitoring timer's first round, a rating): a start never waits
    # on the database, so a database that does not answer cannot keep a worker from serving.
    engine = DeferredEngine(settings.database_url, timeout_s=settings.database_timeout_s)
    observer = Observer(
        metrics=metrics,
        drift=DriftMonitor(
            window=settings.drift_window,
            min_observations=settings.drift_min_observations,
            # The server's workers share their windows there: drift is the server's, whichever worker answers.
            directory=shared / "drift",
        ),
        predictions=PredictionLog(engine),
        prediction_log_share=settings.prediction_log_share,
        cost=CostMeter(Prices(settings.cost_cpu_hour, settings.cost_gib_hour)),
    )
    serving = Serving(families, cache, observer=observer)
    monitoring = Monitoring(
        observer,
        engine,
        psi_alert=settings.drift_psi_alert,
        correlation_alert_below=settings.correlation_alert_below,
        correlation_window_days=settings.correlation_window_days,
        correlation_min_pairs=settings.correlation_min_pairs,
        feedback_window_days=settings.feedback_window_days,
        feedback_min_items=settings.feedback_min_items,
    )
    manager = ModelManager(
        families,
        loader,
        control_store(settings.control_url, shared),
        cache,
        retire_after_s=2 * settings.request_timeout_s,
        watch_store_s=settings.reload_watch_s,
        metrics=metrics,
    )
    manager.adopt_shared_state()
    app = App(
        settings,
        serving,
        monitoring,
        manager,
        load_shadows(settings, get_family, metrics),
        _guard(settings, manager, observer),
    )
    if app.ready():
        logger.info("ready: %s", {entry.family: entry.route for entry in families.served()})
    return app


def _guard(settings: Settings, manager: ModelManager, observer: Observer) -> Guard | None:
    """The guard of the intent ensemble's share (its `ensemble` flag), when intent is served and the guard on."""
    if not settings.ensemble_guard or "intent" not in settings.families:
        return None
    limits = GuardLimits(
        cost_per_1k=settings.ensemble_guard_cost_per_1k,
        p95_ms=settings.ensemble_guard_p95_ms or settings.intent_ensemble_budget_ms,
        floor_percentage=settings.ensemble_guard_floor_percentage,
        step=settings.ensemble_guard_step,
        cooldown_s=settings.ensemble_guard_cooldown_s,
        window_s=settings.ensemble_guard_window_s,
        min_answers=settings.ensemble_guard_min_answers,
    )
    return Guard(manager, observer, limits, family="intent", segment=ENSEMBLE, control="ensemble")


def _server_state_dir() -> Path:
    """The directory `bentoml serve` made for this server's workers (service.py, at deployment); a process
    serving alone (in-process tests, tools) gets one of its own."""
    if "INFERENCE_STATE_DIR" not in os.environ:
        os.environ["INFERENCE_STATE_DIR"] = tempfile.mkdtemp(prefix="inference-state-")
    return Path(os.environ["INFERENCE_STATE_DIR"])
