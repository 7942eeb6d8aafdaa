"""Reference distributions stored with each model, the baseline that drift statistics compare live data with."""

from __future__ import annotations

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
