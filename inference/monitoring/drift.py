"""Drift: reference distributions stored with each model, and the statistics (PSI, a binned KS distance) that
compare a rolling window of live inputs and scores with them. Pure computation over numpy arrays."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REFERENCE_BINS = 10


def reference_distribution(values: np.ndarray, bins: int = REFERENCE_BINS) -> dict[str, list[float]]:
    """Quantile bin edges of `values` (NaN ignored) and the share of values in each bin.

    Inner edges only: the first bin is open below and the last open above, so live values outside the
    training range still land in a bin.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"edges": [], "shares": [1.0]}
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=edges.size + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c) for c in counts / finite.size]}


PSI_EPSILON = 1e-4  # a share of zero would make the index infinite; a tiny floor keeps it finite and comparable


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of `values` in each bin of `edges` (inner edges, as stored by `reference_distribution`)."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def population_stability_index(live: np.ndarray, reference: Mapping[str, Sequence[float]]) -> float:
    """PSI = sum((live - expected) * ln(live / expected)) over the reference bins; under 0.1 is usually read
    as no shift, 0.1-0.2 as moderate, above 0.2 as a shift worth a look."""
    expected = np.clip(np.asarray(reference["shares"], dtype=np.float64), PSI_EPSILON, None)
    actual = np.clip(bin_shares(live, reference["edges"]), PSI_EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_distance(live: np.ndarray, reference: Mapping[str, Sequence[float]]) -> float:
    """Largest gap between the live and the reference cumulative shares, at the reference bin edges (the
    reference keeps bins, not raw values, so this is the Kolmogorov-Smirnov statistic on that grid)."""
    expected = np.cumsum(np.asarray(reference["shares"], dtype=np.float64))[:-1]
    actual = np.cumsum(bin_shares(live, reference["edges"]))[:-1]
    return float(np.max(np.abs(actual - expected))) if expected.size else 0.0


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    window: int
    psi: dict[str, float]  # per feature, and "score"
    ks: dict[str, float]

    def worst_psi(self) -> float:
        return max(self.psi.values(), default=0.0)


@dataclass
class _Window:
    reference: Mapping[str, Any]
    features: dict[str, deque[float]]
    scores: deque[float]


class DriftMonitor:
    """Rolling windows of live inputs and scores per model and version, compared with their references.

    `observe` is cheap (appends to bounded deques) and runs on the request path; `reports` does the statistics
    and runs on a timer and on the drift endpoint. Each worker keeps its own windows.
    """

    def __init__(self, window: int = 2000, min_observations: int = 100) -> None:
        self.window = window
        self.min_observations = min_observations
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def observe(
        self, model: str, version: str, reference: Mapping[str, Any], features: Mapping[str, object], score: float
    ) -> None:
        key = (model, version)
        window = self._windows.get(key)
        if window is None:
            with self._lock:
                window = self._windows.setdefault(
                    key,
                    _Window(
                        reference=reference,
                        features={name: deque(maxlen=self.window) for name in reference.get("features", {})},
                        scores=deque(maxlen=self.window),
                    ),
                )
        for name, values in window.features.items():
            value = features.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.append(float(value))
        window.scores.append(score)

    def reports(self) -> list[DriftReport]:
        reports = []
        for (model, version), window in list(self._windows.items()):
            psi: dict[str, float] = {}
            ks: dict[str, float] = {}
            series = {**window.features, "score": window.scores}
            references = {**window.reference.get("features", {}), "score": window.reference.get("score")}
            for name, values in series.items():
                reference = references.get(name)
                if reference is None or len(values) < self.min_observations:
                    continue
                live = np.fromiter(values, dtype=np.float64)
                psi[name] = round(population_stability_index(live, reference), 4)
                ks[name] = round(ks_distance(live, reference), 4)
            reports.append(DriftReport(model, version, len(window.scores), psi, ks))
        return sorted(reports, key=lambda report: (report.model, report.version))


def score_histograms(monitor: DriftMonitor) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(model, version) -> (reference shares, live shares) of the score over the reference's score bins."""
    histograms = {}
    for (model, version), window in list(monitor._windows.items()):
        reference = window.reference.get("score")
        if not reference or not window.scores:
            continue
        live = bin_shares(np.fromiter(window.scores, dtype=np.float64), reference["edges"])
        histograms[(model, version)] = ([float(s) for s in reference["shares"]], [float(s) for s in live])
    return histograms
