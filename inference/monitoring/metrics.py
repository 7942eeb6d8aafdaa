"""The service's own Prometheus metrics, exported through BentoML's /metrics in multiprocess mode.

The families and the serving layer take a `Metrics` object, so the core never imports the Prometheus client and
unit tests can pass `NoMetrics`. Names follow Prometheus conventions (base units, `_total` on counters); labels
are low-cardinality: family, model, model_version, outcome, code, reason. Never a student or user id.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

# Latency buckets in seconds: from half a millisecond (a cached answer) to the 5 s request timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = tuple(round(0.1 * step, 1) for step in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics(Protocol):
    def request(
        self, family: str, version: str, outcome: str, seconds: float, endpoint: str = "single", segment: str = ""
    ) -> None: ...

    def error(self, family: str, code: str) -> None: ...

    def limit(self, family: str, limit: str) -> None: ...

    def shadow(self, family: str, primary: str, shadow: str, compared: int, abs_diff: float, agreed: int) -> None: ...

    def score(self, family: str, model: str, version: str, value: float) -> None: ...

    def batch(self, family: str, version: str, size: int) -> None: ...

    def queued(self, family: str, change: int) -> None: ...

    def fallback(self, family: str, version: str, reason: str) -> None: ...

    def wanted(self, family: str, version: str, variant: str, count: int) -> None:
        """`count` answers for which `variant` was chosen, whichever answered them: what scales an apart variant."""
        ...

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None: ...

    def gauge(self, name: str, value: float, **labels: str) -> None: ...


class NoMetrics:
    def request(
        self, family: str, version: str, outcome: str, seconds: float, endpoint: str = "single", segment: str = ""
    ) -> None:
        pass

    def error(self, family: str, code: str) -> None:
        pass

    def limit(self, family: str, limit: str) -> None:
        pass

    def shadow(self, family: str, primary: str, shadow: str, compared: int, abs_diff: float, agreed: int) -> None:
        pass

    def score(self, family: str, model: str, version: str, value: float) -> None:
        pass

    def batch(self, family: str, version: str, size: int) -> None:
        pass

    def queued(self, family: str, change: int) -> None:
        pass

    def fallback(self, family: str, version: str, reason: str) -> None:
        pass

    def wanted(self, family: str, version: str, variant: str, count: int) -> None:
        pass

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None:
        pass

    def gauge(self, name: str, value: float, **labels: str) -> None:
        pass


GAUGES = {
    "inference_drift_psi": (
        "Population stability index of live inputs or scores against the model's reference (0: the same).",
        ["family", "model", "model_version", "feature"],
    ),
    "inference_drift_ks": (
        "Kolmogorov-Smirnov distance of live inputs or scores from the reference, at the reference bin edges.",
        ["family", "model", "model_version", "feature"],
    ),
    "inference_drift_window_size": (
        "Live observations in the drift window.",
        ["family", "model", "model_version"],
    ),
    "inference_rating_correlation": (
        "Pearson r between predicted scores and teacher ratings over the correlation window; source: served (the "
        "API's scores) or nightly (the batch scorer's assessments).",
        ["model", "model_version", "source"],
    ),
    "inference_rating_pairs": (
        "Prediction and teacher-rating pairs behind inference_rating_correlation.",
        ["model", "model_version", "source"],
    ),
    "inference_route_weight": (
        "Share of traffic routed to a model version; role is stable or canary.",
        ["family", "model_version", "role"],
    ),
    "inference_batch_last_success_timestamp_seconds": (
        "When the batch scorer's latest successful run of a mode finished (Unix time; from scoring_runs).",
        ["mode"],
    ),
    "inference_batch_last_run_failed": ("1 when the batch scorer's latest finished run of a mode failed.", ["mode"]),
    "inference_batch_last_duration_seconds": ("How long its latest successful run of a mode took.", ["mode"]),
    "inference_batch_usual_duration_seconds": (
        "The median duration of the 7 successful runs of a mode before the latest (from 3 runs on).",
        ["mode"],
    ),
    "inference_feedback_accuracy": (
        "Share of the labelled feedback in the window a text-family version and variant answered right.",
        ["family", "model_version", "variant"],
    ),
    "inference_feedback_items": (
        "Labelled feedback items behind inference_feedback_accuracy.",
        ["family", "model_version", "variant"],
    ),
    "inference_control_revision": ("Revision of the control state (routes) this replica applied last.", []),
    "inference_control_store_up": (
        "1 when the control store answered this replica's last look, 0 when it did not (the replica keeps the "
        "revision it applied last).",
        [],
    ),
}

_lock = threading.Lock()
_registered: dict[str, Any] = {}


def _metric(kind: str, name: str, documentation: str, labelnames: list[str], **options: Any) -> Any:
    """One metric object per name and process: a second service instance in the same process reuses it."""
    import prometheus_client  # imported late: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker first

    with _lock:
        if name not in _registered:
            _registered[name] = getattr(prometheus_client, kind)(name, documentation, labelnames, **options)
        return _registered[name]


LIMIT_NAMES = (
    "body_bytes",
    "json_depth",
    "batch_items",
    "features",
    "text_chars",
    "request_chars",
    "concurrent_requests",
    "concurrent_batches",
    "event_loop_lag",
    "queue_wait",
)


def count_limit_rejection(family: str, limit: str) -> None:
    """A request refused for going over a configured limit (one of LIMIT_NAMES)."""
    _metric(
        "Counter",
        "inference_limit_rejections",
        "Requests refused for going over a limit: " + ", ".join(LIMIT_NAMES) + ".",
        ["family", "limit"],
    ).labels(family=family, limit=limit).inc()


# Edge latency in seconds: a shed or refused request answers in well under a millisecond, a timed-out one at 5 s.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _KeptChildren:
    """`metric.labels(*values)`, kept: prometheus_client validates and locks on every `labels` call, which py-spy
    put at ~4% of a worker's samples at 64 clients (several metrics per request). The label values are few
    (families, versions, outcomes, route templates), so the children are kept for the worker's life."""

    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class HttpMetrics(_KeptChildren):
    """The edge's metrics (`inference.http.edge.EdgeMetrics`), by route template: requests by status, their time
    from the edge to the answer's last byte, and the requests in flight."""

    def __init__(self) -> None:
        super().__init__()
        self._requests = _metric(
            "Counter",
            "inference_http_requests",
            "HTTP requests by route template, method and status, counted at the edge (a request cut off by the "
            "timeout is a 504, one whose client went away a 499).",
            ["route", "method", "status"],
        )
        self._duration = _metric(
            "Histogram",
            "inference_http_request_duration_seconds",
            "Time from the edge to the answer's last byte, in seconds, by route template (queueing included).",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
        )
        self._in_flight = _metric(
            "Gauge",
            "inference_http_requests_in_flight",
            "Requests being answered, by route template (every worker's, summed).",
            ["route"],
            multiprocess_mode="livesum",
        )
        self._scored = _metric(
            "Counter",
            "inference_requests",
            "Scoring requests by outcome, from their HTTP status at the edge: ok (2xx), client_error (4xx), "
            "server_error (5xx: a 503 shed for load and a 504 timeout included), cancelled (the client went away); "
            "endpoint: single, batch or oip; segment: the skill (skills) or the variant (intent), mixed for a "
            "batch of several, empty when the request was refused before its version was chosen.",
            ["family", "endpoint", "segment", "model_version", "outcome"],
        )
        self._scored_duration = _metric(
            "Histogram",
            "inference_request_duration_seconds",
            "Time to answer a scoring request, in seconds, from the edge to the answer's last byte (queueing in the "
            "worker included), by endpoint and segment (as inference_requests).",
            ["family", "endpoint", "segment", "model_version"],
            buckets=HTTP_BUCKETS,
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self._requests, route, method, str(status)).inc()
        self._child(self._duration, route, method).observe(seconds)

    def in_flight(self, route: str, delta: int) -> None:
        self._child(self._in_flight, route).inc(delta)

    def scored(self, family: str, endpoint: str, segment: str, version: str, outcome: str, seconds: float) -> None:
        self._child(self._scored, family, endpoint, segment, version, outcome).inc()
        self._child(self._scored_duration, family, endpoint, segment, version).observe(seconds)

    def limit(self, family: str, limit: str) -> None:
        count_limit_rejection(family, limit)


def count_rows_dropped(table: str, reason: str, count: int = 1) -> None:
    """Rows a writer could not store and set aside (quarantined or, when even that failed, lost): `table` is where
    they were going, `reason` why (`invalid_row`: the database refused the row itself; `buffer_full`: the
    prediction log's buffer was full). Never counted for rows that are retried."""
    if count:
        _metric(
            "Counter",
            "inference_rows_dropped",
            "Rows a writer could not store, by table and reason (invalid_row, buffer_full); the invalid ones are kept "
            "in rejected_rows.",
            ["table", "reason"],
        ).labels(table=table, reason=reason).inc(count)


def count_guard_action(family: str, segment: str, reason: str, count: int = 1) -> None:
    """The guard lowered a segment's traffic share (inference/serving/guard.py); `reason`: cost or latency. A
    count of 0 exports the series at 0, so that the alert on its increase sees the first action."""
    _metric(
        "Counter",
        "inference_guard_actions",
        "Times the guard lowered a segment's traffic share (the intent ensemble's rollout percentage), by reason: "
        "cost or latency over its ceiling.",
        ["family", "segment", "reason"],
    ).labels(family=family, segment=segment, reason=reason).inc(count)


class PrometheusMetrics(_KeptChildren):
    """Create one per worker, after BentoML has started (the multiprocess directory must be set)."""

    def __init__(self) -> None:
        super().__init__()
        self._model_duration = _metric(
            "Histogram",
            "inference_model_duration_seconds",
            "The serving path's own time of a scoring request (version choice, cache, queue, model), in seconds, "
            "by endpoint and segment; inference_request_duration_seconds is the whole, from the edge.",
            ["family", "endpoint", "segment", "model_version"],
            buckets=LATENCY_BUCKETS,
        )
        self._errors = _metric(
            "Counter", "inference_errors", "Errors answered, by family and error code.", ["family", "code"]
        )
        self._scores = _metric(
            "Histogram",
            "inference_prediction_score",
            "Predicted scores (skills: score; intent: confidence; textpair: probability of the same meaning).",
            ["family", "model", "model_version"],
            buckets=SCORE_BUCKETS,
        )
        self._batches = _metric(
            "Histogram",
            "inference_batch_size",
            "Rows per call of the adaptive batchers.",
            ["family", "model_version"],
            buckets=BATCH_BUCKETS,
        )
        self._queued = _metric(
            "Gauge",
            "inference_queued_items",
            "Items waiting in a family's batchers for their turn (every worker's, summed).",
            ["family"],
            multiprocess_mode="livesum",
        )
        self._fallbacks = _metric(
            "Counter",
            "inference_fallbacks",
            "Answers given by a fallback: another variant, or the configured default answer.",
            ["family", "model_version", "reason"],
        )
        self._wanted = _metric(
            "Counter",
            "inference_variant_wanted",
            "Answers for which a variant was chosen, whichever answered them (a fallback included): the demand that "
            "scales a variant running as its own deployment, from zero.",
            ["family", "model_version", "variant"],
        )
        self._cache = _metric(
            "Counter",
            "inference_cache_requests",
            "Result cache lookups by outcome: hit, miss, or error (the cache was bypassed).",
            ["family", "model_version", "outcome"],
        )
        shadow_labels = ["family", "model_version", "shadow_version"]
        self._shadow_compared = _metric(
            "Counter", "inference_shadow_comparisons", "Answers scored again by a shadow version.", shadow_labels
        )
        self._shadow_abs_diff = _metric(
            "Counter",
            "inference_shadow_abs_score_difference",
            "Sum of |primary score - shadow score|; divided by the comparisons: the mean absolute difference.",
            shadow_labels,
        )
        self._shadow_agreed = _metric(
            "Counter",
            "inference_shadow_label_agreements",
            "Comparisons where primary and shadow give the same label; divided by the comparisons: the agreement.",
            shadow_labels,
        )
        # Each worker computes these from its own window; "mostrecent" exports the latest value set by any.
        self._gauges = {
            name: _metric("Gauge", name, documentation, labels, multiprocess_mode="mostrecent")
            for name, (documentation, labels) in GAUGES.items()
        }

    def request(
        self, family: str, version: str, outcome: str, seconds: float, endpoint: str = "single", segment: str = ""
    ) -> None:
        self._child(self._model_duration, family, endpoint, segment, version).observe(seconds)

    def error(self, family: str, code: str) -> None:
        self._child(self._errors, family, code).inc()

    def limit(self, family: str, limit: str) -> None:
        count_limit_rejection(family, limit)

    def shadow(self, family: str, primary: str, shadow: str, compared: int, abs_diff: float, agreed: int) -> None:
        self._child(self._shadow_compared, family, primary, shadow).inc(compared)
        self._child(self._shadow_abs_diff, family, primary, shadow).inc(abs_diff)
        self._child(self._shadow_agreed, family, primary, shadow).inc(agreed)

    def score(self, family: str, model: str, version: str, value: float) -> None:
        self._child(self._scores, family, model, version).observe(value)

    def batch(self, family: str, version: str, size: int) -> None:
        self._child(self._batches, family, version).observe(size)

    def queued(self, family: str, change: int) -> None:
        self._child(self._queued, family).inc(change)

    def fallback(self, family: str, version: str, reason: str) -> None:
        self._child(self._fallbacks, family, version, reason).inc()

    def wanted(self, family: str, version: str, variant: str, count: int) -> None:
        self._child(self._wanted, family, version, variant).inc(count)

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None:
        if count:
            self._child(self._cache, family, version, outcome).inc(count)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        gauge = self._gauges[name]
        (gauge.labels(**labels) if labels else gauge).set(value)
