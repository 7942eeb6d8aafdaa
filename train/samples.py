"""Held-out inputs stored with a model, with the answers it gave them at training time."""

from __future__ import annotations

from typing import Any

SAMPLE_COUNT = 20


def held_out_samples(estimator: Any, inputs: list[Any]) -> dict[str, Any]:
    """`inputs` and the probabilities the fitted `estimator` gives them: when a version is loaded or reloaded,
    the service checks that the loaded model reproduces them (inference/store/validation.py)."""
    return {"inputs": inputs, "probabilities": estimator.predict_proba(inputs).tolist()}
