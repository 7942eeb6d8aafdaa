"""The smoke test every model version passes before it serves: answers on the held-out samples stored with it
are finite, in range, and the ones it gave at training time (a truncated, swapped or mis-loaded model fails).

Artifacts without stored samples (a user's own) are checked on a neutral input: finite and in range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inference.errors import ArtifactError
from inference.scoring import SkillModel, score_rows
from inference.text_artifacts import TextModel

TOLERANCE = 1e-5  # the serving path computes in another order than training did (numpy vs scikit-learn)
FALLBACK_TEXTS = ["cheap flights to paris", "what is compound interest"]


def check_skill_models(models: Mapping[str, SkillModel]) -> None:
    for skill, model in models.items():
        samples = model.metadata.get("samples") or {}
        rows = np.array(samples.get("inputs") or [model.imputation_defaults], dtype=np.float64)
        scores = score_rows(model, rows).score
        where = f"skill-{skill}:{model.version}"
        _finite_in_unit_interval(scores, where)
        if "scores" in samples:
            _matches(scores, np.asarray(samples["scores"], dtype=np.float64), where)


def check_text_model(model: TextModel, fallback_inputs: Sequence[object] = FALLBACK_TEXTS) -> None:
    samples = model.metadata.get("samples") or {}
    inputs = samples.get("inputs") or list(fallback_inputs)
    where = f"{model.name}:{model.version}"
    try:
        probabilities = np.asarray(model.estimator.predict_proba(inputs), dtype=np.float64)
    except Exception as err:  # a model that cannot predict must not serve
        raise ArtifactError(f"{where}: the smoke prediction failed ({type(err).__name__}: {err})") from err
    if probabilities.shape != (len(inputs), len(model.labels)):
        raise ArtifactError(
            f"{where}: predict_proba gave shape {probabilities.shape}, expected ({len(inputs)}, {len(model.labels)})"
        )
    _finite_in_unit_interval(probabilities, where)
    if "probabilities" in samples:
        _matches(probabilities, np.asarray(samples["probabilities"], dtype=np.float64), where)


def _finite_in_unit_interval(values: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ArtifactError(f"{where}: the smoke prediction is not finite and within [0, 1]")


def _matches(values: np.ndarray, expected: np.ndarray, where: str) -> None:
    if values.shape != expected.shape or not np.allclose(values, expected, atol=TOLERANCE, rtol=0):
        worst = float(np.max(np.abs(values - expected))) if values.shape == expected.shape else float("nan")
        raise ArtifactError(
            f"{where}: the model does not reproduce the answers stored with it at training time "
            f"(largest difference {worst:.3g}); the artifact is corrupt or belongs to another model"
        )
