"""Drift: reference distributions stored with each model, and the statistics (PSI, a binned KS distance) that
compare a rolling window of live inputs and scores with them (pure computation over numpy arrays).

Each worker observes the requests it answers; drift is the server's, not a worker's: every worker writes its
windows to a file of its own in a directory all workers of the server share, and the figures are computed from
the union of those files, so whichever worker is asked gives the same answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zipfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

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


@dataclass(frozen=True)
class LiveWindow:
    """One model version's live observations: its reference, and the values of each series (every input feature
    the reference has, and `score`)."""

    reference: Mapping[str, Any]
    series: Mapping[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(self.series.get("score", ()))


Windows = dict[tuple[str, str], LiveWindow]  # (model, version) -> its window


def drift_reports(windows: Mapping[tuple[str, str], LiveWindow], min_observations: int) -> list[DriftReport]:
    """PSI and KS of every series against its reference; none for a series of fewer than `min_observations`."""
    reports = []
    for (model, version), window in windows.items():
        psi: dict[str, float] = {}
        ks: dict[str, float] = {}
        references = {**window.reference.get("features", {}), "score": window.reference.get("score")}
        for name, live in window.series.items():
            reference = references.get(name)
            if reference is None or live.size < min_observations:
                continue
            psi[name] = round(population_stability_index(live, reference), 4)
            ks[name] = round(ks_distance(live, reference), 4)
        reports.append(DriftReport(model, version, window.size, psi, ks))
    return sorted(reports, key=lambda report: (report.model, report.version))


def score_histograms(
    windows: Mapping[tuple[str, str], LiveWindow],
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(model, version) -> (reference shares, live shares) of the score over the reference's score bins."""
    histograms = {}
    for key, window in windows.items():
        reference = window.reference.get("score")
        if not reference or not window.size:
            continue
        live = bin_shares(window.series["score"], reference["edges"])
        histograms[key] = ([float(s) for s in reference["shares"]], [float(s) for s in live])
    return histograms


def merge_windows(parts: Sequence[Mapping[tuple[str, str], LiveWindow]]) -> Windows:
    """The union of several workers' windows: each series concatenated in the order of `parts`."""
    merged: dict[tuple[str, str], list[LiveWindow]] = {}
    for part in parts:
        for key, window in part.items():
            merged.setdefault(key, []).append(window)
    union = {}
    for key, found in merged.items():
        names = dict.fromkeys(name for window in found for name in window.series)
        union[key] = LiveWindow(
            reference=found[0].reference,  # one model version, one reference
            series={name: np.concatenate([w.series[name] for w in found if name in w.series]) for name in names},
        )
    return dict(sorted(union.items()))


# --- sharing between the workers of a server ------------------------------------------------------------------

FILE_PREFIX, FILE_SUFFIX = "drift-", ".npz"
# A worker refreshes its file every few seconds, changed or not: one older than this belongs to a worker gone.
STALE_AFTER_S = 180.0


def write_windows(path: Path, windows: Mapping[tuple[str, str], LiveWindow]) -> None:
    """`windows` to `path` as numpy arrays (one per series, plus the references as JSON), atomically: written to a
    temporary file then renamed over `path`, so a reader sees the previous file or this one, never a part."""
    meta = []
    arrays: dict[str, np.ndarray] = {}
    for index, ((model, version), window) in enumerate(windows.items()):
        names = list(window.series)
        meta.append({"model": model, "version": version, "reference": window.reference, "series": names})
        for position, name in enumerate(names):
            arrays[f"w{index}_{position}"] = np.asarray(window.series[name], dtype=np.float64)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(temporary, path)


def read_windows(path: Path) -> Windows:
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        return {
            (entry["model"], entry["version"]): LiveWindow(
                reference=entry["reference"],
                series={name: stored[f"w{index}_{position}"] for position, name in enumerate(entry["series"])},
            )
            for index, entry in enumerate(meta)
        }


@dataclass
class _Window:
    reference: Mapping[str, Any]
    features: dict[str, deque[float]]
    scores: deque[float]


@dataclass(frozen=True)
class WindowsCopy:
    """This worker's windows as arrays, and how many observations it had made when they were copied."""

    observed: int
    windows: Windows


class DriftMonitor:
    """Rolling windows of live inputs and scores per model and version, compared with their references.

    `observe` is cheap (appends to bounded deques) and runs on the request path. With a `directory` (the server's
    state directory, shared by its workers), `share` writes this worker's windows to its own file there on a timer
    and `reports` computes from the union of every live worker's file, this worker's included only through its
    file: every worker answers alike. Without one, `reports` covers this process's windows.
    """

    def __init__(
        self,
        window: int = 2000,
        min_observations: int = 100,
        *,
        directory: Path | None = None,
        worker: str | None = None,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.window = window
        self.min_observations = min_observations
        self.directory = directory
        self.worker = worker or str(os.getpid())  # names this worker's file
        self.stale_after_s = stale_after_s
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()
        self._observed = 0  # observations made, and as of the last file written: whether there is news to write
        self._shared = 0
        self._read_lock = threading.Lock()
        self._read: dict[Path, tuple[tuple[int, int], Windows]] = {}  # path -> ((mtime_ns, size), its windows)
        self._union: tuple[tuple[object, ...], Windows, list[DriftReport]] | None = None

    @property
    def own_file(self) -> Path | None:
        return None if self.directory is None else self.directory / f"{FILE_PREFIX}{self.worker}{FILE_SUFFIX}"

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
        self._observed += 1

    def local_windows(self) -> Windows:
        """This process's windows, copied into arrays. Safe off the thread that appends: each deque is copied by
        `list` in one call that holds the interpreter lock, never mid-append (a rare failure is tried again)."""
        return {
            key: LiveWindow(
                reference=window.reference,
                series={
                    **{name: np.array(list(values), dtype=np.float64) for name, values in window.features.items()},
                    "score": np.array(list(window.scores), dtype=np.float64),
                },
            )
            for key, window in sorted(list(self._windows.items()))
        }

    def changed_windows(self) -> WindowsCopy | None:
        """This worker's windows when it observed anything since its file was last written, else None."""
        observed = self._observed
        return None if observed == self._shared else WindowsCopy(observed, self.local_windows())

    def share(self) -> None:
        """Write this worker's windows to its file when it observed anything since the last time, else mark the
        file as still current; remove the files of workers gone. Nothing without a directory."""
        path = self.own_file
        if path is None:
            return
        copy = self.changed_windows()
        if copy is None and self._windows and not path.exists():  # removed meanwhile (a worker stalled for minutes)
            copy = WindowsCopy(self._observed, self.local_windows())
        if copy is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_windows(path, copy.windows)
            self._shared = copy.observed
        elif path.exists():
            os.utime(path)
        for stale, _ in self._files(stale=True):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def withdraw(self) -> None:
        """The worker stops: its file goes with it."""
        path = self.own_file
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def windows(self) -> Windows:
        """The server's windows: the union of the live workers' files; this process's own without a directory."""
        if self.directory is None:
            return self.local_windows()
        return self._shared_union()[1]

    def reports(self) -> list[DriftReport]:
        if self.directory is None:
            return drift_reports(self.local_windows(), self.min_observations)
        return self._shared_union()[2]

    def histograms(self) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
        return score_histograms(self.windows())

    def _shared_union(self) -> tuple[tuple[object, ...], Windows, list[DriftReport]]:
        """The union of the live files and its reports, computed again only when a file changed (by its
        modification time and size)."""
        with self._read_lock:
            parts: list[Windows] = []
            signature: list[object] = []
            read: dict[Path, tuple[tuple[int, int], Windows]] = {}
            for path, stat in self._files():
                version = (stat.st_mtime_ns, stat.st_size)
                cached = self._read.get(path)
                if cached is None or cached[0] != version:
                    try:
                        cached = (version, read_windows(path))
                    except FileNotFoundError:  # removed since it was listed
                        continue
                    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                        logger.warning("drift: skipping %s, not a drift file this version reads: %s", path.name, err)
                        continue
                read[path] = cached
                parts.append(cached[1])
                signature.append((path.name, version))
            self._read = read
            key = tuple(signature)
            if self._union is None or self._union[0] != key:
                union = merge_windows(parts)
                self._union = (key, union, drift_reports(union, self.min_observations))
            return self._union

    def _files(self, *, stale: bool = False) -> list[tuple[Path, os.stat_result]]:
        """The live workers' files in name order, with their status; `stale`: those not refreshed within
        `stale_after_s` instead, the files of workers gone."""
        if self.directory is None or not self.directory.is_dir():
            return []
        oldest = time.time() - self.stale_after_s
        found = []
        for path in sorted(self.directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            if (status.st_mtime < oldest) == stale:
                found.append((path, status))
        return found
