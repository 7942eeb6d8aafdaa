"""What the service watches while it answers: request metrics, score distributions, drift of live inputs, the
scores to correlate with teacher ratings later, and the per-worker figures the built-in dashboard shows.

`Observer` is called on the request path and only appends to bounded buffers or bumps counters; `Monitoring`
does the statistics and the database writes on a timer, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import numpy as np

from inference.errors import BatchTooLarge, InferenceError, InvalidRequest, StorageUnavailable, UnknownSkill
from inference.logs import LOGGER_NAME
from inference.monitoring.batch_runs import BatchHealth, batch_health
from inference.monitoring.cost import CostMeter
from inference.monitoring.drift import DriftMonitor, DriftReport
from inference.monitoring.feedback import Accuracy, feedback_accuracy
from inference.monitoring.ground_truth import Correlation, PredictionLog, correlations, store_ratings
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.monitoring.request_labels import CURRENT_REQUEST
from inference.monitoring.writes import WriteResult
from inference.schemas import MAX_RATINGS, RatingsRequest

logger = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")
# Whether a request's observation is open in this task: a nested one counts nothing (see Observer.request).
_OBSERVING: ContextVar[bool] = ContextVar("inference_observing", default=False)


@dataclass(frozen=True)
class DriftInputs:
    """What drift compares of an answer: the inputs given, and the model's reference distribution of them."""

    reference: Mapping[str, Any]
    features: Mapping[str, object]


LATENCY_WINDOW = 2000


@dataclass
class Observed:
    """One request being answered: the version it went to, once known."""

    family: str
    version: str = "none"
    endpoint: str = "single"  # single, batch or oip: the alerts hold each to its own latency target
    segment: str = ""  # the skill (skills) or variant (intent) the request went to; "mixed" for several


@dataclass
class Observer:
    metrics: Metrics = field(default_factory=NoMetrics)
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    predictions: PredictionLog = field(default_factory=lambda: PredictionLog(None))
    prediction_log_share: float = 1.0
    latencies: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    # (family, segment) -> (when it ended, on time.monotonic; seconds) of recent successful requests: the guard's
    # figures (inference/serving/guard.py)
    segment_latencies: dict[tuple[str, str], deque[tuple[float, float]]] = field(default_factory=dict)
    cache_counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    cost: CostMeter | None = None  # what requests cost, charged on the monitoring timer

    @contextmanager
    def request(self, family: str, endpoint: str = "single") -> Iterator[Observed]:
        """Times the request and counts its outcome; an error is also counted by its code. Inside another
        request's observation (the protocol's handler around the serving path) it counts nothing: the outer one
        counts the request once."""
        observed = Observed(family, endpoint=endpoint)
        if _OBSERVING.get():
            yield observed
            return
        token = _OBSERVING.set(True)
        try:
            with self._observe(family, observed):
                yield observed
        finally:
            _OBSERVING.reset(token)

    @contextmanager
    def _observe(self, family: str, observed: Observed) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except InferenceError as err:
            outcome = "client_error" if int(err.status) < 500 else "server_error"
            self.metrics.error(family, err.code)
            if err.limit:
                self.metrics.limit(family, err.limit)
            raise
        except Exception:
            outcome = "server_error"
            self.metrics.error(family, "internal_error")
            raise
        except BaseException:  # cancelled: the request timed out (504) or its caller went away
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - started
            labels = CURRENT_REQUEST.get()
            if labels is not None:  # for the edge, which counts the request once its answer is sent
                labels.family, labels.endpoint = family, observed.endpoint
                labels.segment, labels.version = observed.segment, observed.version
            self.metrics.request(family, observed.version, outcome, elapsed, observed.endpoint, observed.segment)
            if self.cost is not None:
                self.cost.served(family, observed.segment, elapsed)
            if outcome == "ok":
                window = self.latencies.get((family, observed.version))
                if window is None:
                    window = self.latencies.setdefault((family, observed.version), deque(maxlen=LATENCY_WINDOW))
                window.append(elapsed)
                if observed.segment:
                    ended = self.segment_latencies.get((family, observed.segment))
                    if ended is None:
                        ended = self.segment_latencies.setdefault(
                            (family, observed.segment), deque(maxlen=LATENCY_WINDOW)
                        )
                    ended.append((time.monotonic(), elapsed))

    def answer(
        self,
        family: str,
        model: str,
        version: str,
        score: float,
        *,
        inputs: DriftInputs | None = None,
        logged_as: tuple[str, str] | None = None,
    ) -> None:
        """An answer given: its score into the score distribution; with `inputs`, the inputs and score into the
        drift windows (against the model's reference distribution); with `logged_as` (subject, item: a student
        and a skill), into the prediction log, sampled by INFERENCE_PREDICTION_LOG_SHARE."""
        self.metrics.score(family, model, version, score)
        if inputs is not None and inputs.reference:
            self.drift.observe(model, version, inputs.reference, inputs.features, score)
        if logged_as is not None and (self.prediction_log_share >= 1.0 or random.random() < self.prediction_log_share):
            subject, item = logged_as
            self.predictions.add(subject, item, version, score)

    def cache(self, family: str, version: str, hits: int, misses: int) -> None:
        self.metrics.cache(family, version, "hit", hits)
        self.metrics.cache(family, version, "miss", misses)
        counts = self.cache_counts[family]
        counts["hit"] += hits
        counts["miss"] += misses

    def segment_p95(self, family: str, segment: str, *, since: float) -> tuple[float, int]:
        """P95 in ms and count of this worker's recent successful requests of a family and segment that ended at or
        after `since` (time.monotonic); (0.0, 0) when there are none."""
        ended = self.segment_latencies.get((family, segment))
        seconds = [elapsed for at, elapsed in list(ended or ()) if at >= since]
        if not seconds:
            return 0.0, 0
        return float(np.percentile(np.asarray(seconds), 95)) * 1000, len(seconds)

    def latency_quantiles(self) -> dict[tuple[str, str], tuple[float, float, int]]:
        """(family, version) -> (P50, P95 in ms, count) over this worker's recent successful requests."""
        figures = {}
        for key, window in list(self.latencies.items()):
            if window:
                values = np.fromiter(window, dtype=np.float64) * 1000
                figures[key] = (float(np.percentile(values, 50)), float(np.percentile(values, 95)), len(values))
        return figures


@dataclass(frozen=True)
class Figures(Generic[T]):
    """Figures computed from the database, and when: what the reads answer with until the next round."""

    value: T
    computed_at: datetime


class Monitoring:
    """The timers: flush the prediction log, share this worker's drift windows, compute drift, correlations and
    accuracy, export them as gauges. The reads answer from the figures the timer computed last: a burst of reads
    costs the database nothing."""

    def __init__(
        self,
        observer: Observer,
        engine: Any,
        *,
        psi_alert: float,
        correlation_alert_below: float,
        correlation_window_days: float,
        correlation_min_pairs: int,
        flush_every_s: float = 1.0,
        statistics_every_s: float = 15.0,
        drift_share_every_s: float = 2.0,
        feedback_window_days: float = 30.0,
        feedback_min_items: int = 100,
    ) -> None:
        self.feedback_window_days = feedback_window_days
        self.feedback_min_items = feedback_min_items
        self.observer = observer
        self.engine = engine
        self.psi_alert = psi_alert
        self.correlation_alert_below = correlation_alert_below
        self.correlation_window_days = correlation_window_days
        self.correlation_min_pairs = correlation_min_pairs
        self.flush_every_s = flush_every_s
        self.statistics_every_s = statistics_every_s
        self.drift_share_every_s = drift_share_every_s
        self._kept: dict[str, Figures[Any]] = {}  # the latest figures of each kind
        self._rounds: dict[str, asyncio.Task[Figures[Any]]] = {}  # the computation of each kind under way

    def drift_reports(self) -> list[DriftReport]:
        """Drift of the server (every worker's windows), exported as gauges."""
        reports = self.observer.drift.reports()
        metrics = self.observer.metrics
        for report in reports:
            labels = {"family": "skills", "model": report.model, "model_version": report.version}
            metrics.gauge("inference_drift_window_size", report.window, **labels)
            for feature, value in report.psi.items():
                metrics.gauge("inference_drift_psi", value, feature=feature, **labels)
                metrics.gauge("inference_drift_ks", report.ks[feature], feature=feature, **labels)
        return reports

    async def share_drift(self) -> None:
        """This worker's drift windows to its file in the server's shared directory (off the event loop: copying
        and writing them takes milliseconds)."""
        await asyncio.to_thread(self.observer.drift.share)

    def correlations(self) -> list[Correlation]:
        found = correlations(
            self.engine,
            window_days=self.correlation_window_days,
            threshold=self.correlation_alert_below,
            min_pairs=self.correlation_min_pairs,
        )
        for entry in found:
            labels = {"model": f"skill-{entry.skill}", "model_version": entry.model_version, "source": entry.source}
            self.observer.metrics.gauge("inference_rating_pairs", entry.pairs, **labels)
            if entry.pearson_r is not None:
                self.observer.metrics.gauge("inference_rating_correlation", entry.pearson_r, **labels)
        return found

    def accuracy(self) -> list[Accuracy]:
        """Live accuracy of the text families per version and variant, from the labelled feedback; as gauges."""
        found = feedback_accuracy(self.engine, window_days=self.feedback_window_days, min_items=self.feedback_min_items)
        for entry in found:
            labels = {"family": entry.family, "model_version": entry.model_version, "variant": entry.variant}
            self.observer.metrics.gauge("inference_feedback_items", entry.items, **labels)
            if entry.accuracy is not None:
                self.observer.metrics.gauge("inference_feedback_accuracy", entry.accuracy, **labels)
        return found

    async def latest_correlations(self) -> Figures[list[Correlation]]:
        """The correlations the timer computed last; before its first round, computed once for all the readers
        waiting. Raises the database's error when there are none and it cannot give them."""
        return await self._latest("correlations", self.correlations)

    async def latest_accuracy(self) -> Figures[list[Accuracy]]:
        """As `latest_correlations`, for the accuracy on labelled feedback."""
        return await self._latest("accuracy", self.accuracy)

    async def _latest(self, kind: str, compute: Callable[[], T]) -> Figures[T]:
        kept = self._kept.get(kind)
        return kept if kept is not None else await self._round(kind, compute)

    async def _round(self, kind: str, compute: Callable[[], T]) -> Figures[T]:
        """One computation of `kind` off the event loop, shared by everyone who asks while it runs (single flight);
        kept when it succeeds, its error raised to each of them when it fails."""
        task = self._rounds.get(kind)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._compute(kind, compute), name=f"monitoring-{kind}")
            self._rounds[kind] = task
            task.add_done_callback(lambda done: self._round_done(kind, done))
        return await asyncio.shield(task)  # a reader that goes away does not cancel the others' computation

    async def _compute(self, kind: str, compute: Callable[[], T]) -> Figures[T]:
        computed_at = datetime.now(UTC)  # the figures hold what the database held from this moment
        figures = Figures(await asyncio.to_thread(compute), computed_at)
        self._kept[kind] = figures
        return figures

    def _round_done(self, kind: str, task: asyncio.Task[Figures[Any]]) -> None:
        self._rounds.pop(kind, None)
        if not task.cancelled():
            task.exception()  # retrieved: its readers may all have gone

    def batch_runs(self) -> list[BatchHealth]:
        """The nightly batch scorer's last runs, as gauges for its alerts."""
        found = batch_health(self.engine)
        metrics = self.observer.metrics
        for health in found:
            if health.last_success_at is not None:
                metrics.gauge(
                    "inference_batch_last_success_timestamp_seconds",
                    health.last_success_at.timestamp(),
                    mode=health.mode,
                )
            metrics.gauge("inference_batch_last_run_failed", float(health.last_run_failed), mode=health.mode)
            if health.last_duration_s is not None:
                metrics.gauge("inference_batch_last_duration_seconds", health.last_duration_s, mode=health.mode)
            if health.usual_duration_s is not None:
                metrics.gauge("inference_batch_usual_duration_seconds", health.usual_duration_s, mode=health.mode)
        return found

    async def run(self) -> None:
        """Runs for the worker's life; a failing step is logged and tried again next time."""
        since_statistics = since_share = 0.0
        while True:
            await asyncio.sleep(self.flush_every_s)
            since_statistics += self.flush_every_s
            since_share += self.flush_every_s
            statistics = since_statistics >= self.statistics_every_s
            share_drift = since_share >= self.drift_share_every_s
            if statistics:
                since_statistics = 0.0
            if share_drift:
                since_share = 0.0
            await self.tick(statistics=statistics, share_drift=share_drift)

    async def tick(self, *, statistics: bool, share_drift: bool = True) -> None:
        """One round of the timer: write the prediction log, (`share_drift`) this worker's drift windows, then
        (`statistics`) drift, correlations, batch runs and accuracy, kept for the reads and exported as gauges.

        Each step fails on its own: drift needs no database, so its gauges stay current while the database is
        away; the predictions stay buffered, and the reads keep the last figures meanwhile."""
        if self.observer.cost is not None:
            with _tried_again_next_time("cost"):
                self.observer.cost.charge()
        with _tried_again_next_time("prediction log"):
            await asyncio.to_thread(self.observer.predictions.flush)
        if share_drift:
            with _tried_again_next_time("drift windows"):
                await self.share_drift()
        if not statistics:
            return
        with _tried_again_next_time("drift"):
            await asyncio.to_thread(self.drift_reports)
        with _tried_again_next_time("correlations"):
            await self._round("correlations", self.correlations)
        with _tried_again_next_time("batch runs"):
            await asyncio.to_thread(self.batch_runs)
        with _tried_again_next_time("feedback accuracy"):
            await self._round("accuracy", self.accuracy)

    async def close(self) -> None:
        for task in list(self._rounds.values()):
            task.cancel()
        await asyncio.to_thread(self.observer.predictions.flush)
        await asyncio.to_thread(self.observer.drift.withdraw)


@contextmanager
def _tried_again_next_time(step: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        logger.exception("monitoring step failed (%s); trying again", step)


FUTURE_TOLERANCE = timedelta(minutes=5)


def check_ratings(request: RatingsRequest, served_skills: Sequence[str] | None) -> list[dict[str, object]]:
    """Rows to store: a skill the server serves (any, when it serves no skills family), a time not more than
    `FUTURE_TOLERANCE` ahead (clocks differ a little), 1 to 1000 of them. Times are stored in UTC (a naive one is
    taken as UTC): SQLite keeps no zone, and ratings are ordered by time."""
    if not request.ratings:
        raise InvalidRequest("ratings: must hold at least 1 rating")
    if len(request.ratings) > MAX_RATINGS:
        raise BatchTooLarge(f"ratings: at most {MAX_RATINGS} ratings per request, got {len(request.ratings)}")
    latest = datetime.now(UTC) + FUTURE_TOLERANCE
    rows = []
    for index, rating in enumerate(request.ratings):
        if served_skills is not None and rating.skill not in served_skills:
            raise UnknownSkill(
                f"ratings[{index}].skill: unknown skill {rating.skill!r}; expected one of {', '.join(served_skills)}"
            )
        rated_at = rating.rated_at.astimezone(UTC) if rating.rated_at.tzinfo else rating.rated_at.replace(tzinfo=UTC)
        if rated_at > latest:
            raise InvalidRequest(f"ratings[{index}].rated_at: {rated_at.isoformat()} is in the future")
        rows.append(
            {"student_id": rating.student_id, "skill": rating.skill, "rating": rating.rating, "rated_at": rated_at}
        )
    return rows


async def store_async(
    what: str, store: Callable[[Any, list[dict[str, object]]], T], engine: Any, rows: list[dict[str, object]]
) -> T:
    """`store(engine, rows)` off the event loop; `StorageUnavailable` (503, retry) when the database is away, with
    nothing of `what` stored (each store writes its rows in one transaction)."""
    try:
        return await asyncio.to_thread(store, engine, rows)
    except Exception as err:  # the database is away: the caller must retry, nothing was stored
        logger.error("storing %d %s failed: %s", len(rows), what, err)
        raise StorageUnavailable(
            f"the {what} were not stored (database unavailable: {type(err).__name__}); retry"
        ) from err


async def store_ratings_async(engine: Any, rows: list[dict[str, object]]) -> WriteResult:
    return await store_async("ratings", store_ratings, engine, rows)
