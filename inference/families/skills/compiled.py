"""Compiled scoring: a skill's booster converted to ONNX when it is imported, run by ONNX Runtime when it serves.

For the few rows a request brings, ONNX Runtime's tree ensemble costs a fraction of a call into XGBoost (one row of
a 200-tree demo booster: ~15 µs against ~280 µs for `Booster.inplace_predict`; docs/performance.md has the
figures and the command). Both paths compute the same probability; the compiled one is used only when it proves
it on every load:

- at import, `compile_booster` converts the booster (onnxmltools) and keeps the result only if its probabilities
  equal XGBoost's on the model's held-out samples (`TOLERANCE`); otherwise the model is stored without it;
- at load, `load_compiled` runs the same comparison again (a file could be swapped or corrupt, or the runtime
  changed), and a model whose compiled form disagrees or cannot load is served by XGBoost, said in the log and
  in `GET /api/v1/skills/models`.

The two paths agree to float32 precision (~1e-7), not to the bit, so a model scores every request with one path:
the compiled one whenever it has it, whatever the batch's size, so that a row scores the same alone or batched
with others. The nightly batch scorer, whose chunks of thousands of rows XGBoost scores faster, always uses
XGBoost, so its scores do not depend on the chunk size either. TreeSHAP explanations come from XGBoost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from inference.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

ONNX_FILE = "model.onnx"
TOLERANCE = 1e-5  # largest difference in P(high skill) on the held-out samples that still counts as equal
INPUT = "input"


class CompiledBooster:
    """An ONNX Runtime session for one booster: float32 rows in, P(high skill) out."""

    def __init__(self, model_bytes: bytes) -> None:
        import onnxruntime as ort  # imported on first use: the serving path loads it once per worker

        options = ort.SessionOptions()
        # One thread per session: the service runs a worker per core, and a request scores a few rows.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self._output = next(output.name for output in self._session.get_outputs() if output.name == "probabilities")

    def probabilities(self, scaled: np.ndarray) -> np.ndarray:
        (probabilities,) = self._session.run([self._output], {INPUT: np.ascontiguousarray(scaled, dtype=np.float32)})
        return np.asarray(probabilities[:, 1], dtype=np.float64)


@dataclass(frozen=True)
class Compiled:
    """What load found: the compiled booster to use (None: XGBoost serves) and why, for the log and the API."""

    booster: CompiledBooster | None
    path: str  # "onnxruntime" or "xgboost"
    reason: str


def compile_booster(booster: xgb.Booster, scaled_samples: np.ndarray) -> tuple[bytes | None, str]:
    """The booster as ONNX bytes, or None and the reason: the converter refuses it, or its probabilities on
    `scaled_samples` differ from XGBoost's by more than `TOLERANCE`."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        model = convert_xgboost(booster, initial_types=[(INPUT, FloatTensorType([None, booster.num_features()]))])
        model_bytes = model.SerializeToString()
        difference = largest_difference(CompiledBooster(model_bytes), booster, scaled_samples)
    except Exception as err:  # the converter and the runtime raise many types; any of them means "not compiled"
        return None, f"the ONNX converter could not convert it ({type(err).__name__}: {err})"
    if difference > TOLERANCE:
        return None, f"its ONNX form differs from XGBoost by {difference:.3g} on the samples (tolerance {TOLERANCE})"
    return model_bytes, f"ONNX form equal to XGBoost within {difference:.2g} on {len(scaled_samples)} samples"


def load_compiled(directory: Path, booster: xgb.Booster, scaled_samples: np.ndarray) -> Compiled:
    """The compiled booster stored beside `booster`, if it loads and still gives XGBoost's probabilities."""
    path = directory / ONNX_FILE
    if not path.is_file():
        return Compiled(None, "xgboost", "no compiled form stored with the model (imported before it existed)")
    try:
        compiled = CompiledBooster(path.read_bytes())
        difference = largest_difference(compiled, booster, scaled_samples)
    except Exception as err:  # a corrupt or foreign file: serve with XGBoost, never fail the load for it
        return Compiled(None, "xgboost", f"{path} does not load ({type(err).__name__}: {err})")
    if difference > TOLERANCE:
        return Compiled(
            None, "xgboost", f"{path} differs from XGBoost by {difference:.3g} on the samples (tolerance {TOLERANCE})"
        )
    return Compiled(compiled, "onnxruntime", f"equal to XGBoost within {difference:.2g} on the held-out samples")


def largest_difference(compiled: CompiledBooster, booster: xgb.Booster, scaled_samples: np.ndarray) -> float:
    rows = np.asarray(scaled_samples, dtype=np.float32)
    reference = np.asarray(booster.inplace_predict(rows), dtype=np.float64)
    return float(np.max(np.abs(compiled.probabilities(rows) - reference)))
