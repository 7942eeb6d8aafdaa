"""The service's own Prometheus metrics, exported through BentoML's /metrics (multiprocess-safe).

The families take a `Metrics` object, so the core never imports BentoML and unit tests can pass `NoMetrics`.
Labels are low-cardinality by design: family, model, version, reason; never a caller or student id.
"""

from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    def fallback(self, family: str, version: str, reason: str) -> None: ...

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None: ...


class NoMetrics:
    def fallback(self, family: str, version: str, reason: str) -> None:
        pass

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None:
        pass


class PrometheusMetrics:
    """Counters registered with BentoML's metrics client; create one per worker, after BentoML has started."""

    def __init__(self) -> None:
        import bentoml

        self._fallbacks = bentoml.metrics.Counter(
            name="inference_fallbacks",
            documentation="Answers given by a fallback: another variant, or the configured default answer.",
            labelnames=["family", "model_version", "reason"],
        )
        self._cache = bentoml.metrics.Counter(
            name="inference_cache_requests",
            documentation="Result cache lookups by outcome: hit, miss, or error (the cache was bypassed).",
            labelnames=["family", "model_version", "outcome"],
        )

    def fallback(self, family: str, version: str, reason: str) -> None:
        self._fallbacks.labels(family=family, model_version=version, reason=reason).inc()

    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None:
        if count:
            self._cache.labels(family=family, model_version=version, outcome=outcome).inc(count)
