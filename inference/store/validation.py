"""The smoke test every model version passes before it serves: its answers on the held-out samples stored with it
are finite, in range, and the ones it gave when it was trained or imported (a truncated, swapped or mis-loaded
model fails). The families call `check_probabilities` with what their models answer.

Artifacts without stored samples are checked on a neutral input: finite and in range.
"""

from __future__ import annotations

import numpy as np

from inference.errors import ArtifactError

TOLERANCE = 1e-5  # the serving path computes in another order than training did (numpy vs scikit-learn)


def check_probabilities(values: np.ndarray, *, where: str, expected: object = None) -> None:
    """`values` must be finite and within [0, 1], and equal `expected` (when given) to `TOLERANCE`."""
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ArtifactError(f"{where}: the smoke prediction is not finite and within [0, 1]")
    if expected is None:
        return
    reference = np.asarray(expected, dtype=np.float64)
    if values.shape != reference.shape or not np.allclose(values, reference, atol=TOLERANCE, rtol=0):
        worst = float(np.max(np.abs(values - reference))) if values.shape == reference.shape else float("nan")
        raise ArtifactError(
            f"{where}: the model does not reproduce the answers stored with it when it was trained or imported "
            f"(largest difference {worst:.3g}); the artifact is corrupt or belongs to another model"
        )
