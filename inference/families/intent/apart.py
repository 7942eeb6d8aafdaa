"""The intent ensemble as a unit of its own: what its service computes (`EnsembleWorker`), and what the intent
front needs of it (`EnsembleService`). The ensemble is the family's costly variant (7 models); run apart, it has its
own workers, resources and replicas, down to zero, while the front keeps classic and the vertical detectors.

The front calls it through the service's edge (service.py, bentoml.depends); when the call cannot be made or is
refused it raises `EnsembleAbsent` with the reason, and the front answers with classic (`fallback`, the reason in
the metric and the log). No HTTP here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import sklearn

from inference.families.intent.variants import ENSEMBLE, ENSEMBLE_MODEL
from inference.families.text_compiled import SharedVectorizers, with_fast_path
from inference.families.texts import CHUNK_UNITS, text_units
from inference.faults import FaultInjector
from inference.logs import LOGGER_NAME
from inference.serving.batching import AdaptiveBatcher, BatcherOptions, CostModel
from inference.store.text_artifacts import TextModel, check_text_model, load_stored_text_model

logger = logging.getLogger(LOGGER_NAME)

NEUTRAL_TEXTS = ["cheap flights to paris", "what is compound interest"]
# The versions one ensemble process keeps loaded: the stable and canary of a rollout and one more; past that the
# first loaded goes, and is loaded again when asked (its callers are answered by classic meanwhile).
KEPT_VERSIONS = 3
# A call's cost before the batcher has measured this machine (7 models); measured calls replace them.
CALL_S, UNIT_S = 0.005, 0.001

Vote = tuple[str, float]  # the intent and its probability


class EnsembleAbsent(Exception):
    """The ensemble's service could not answer: `reason` is the fallback reason the front reports
    (`ensemble_unreachable`: no connection, e.g. at zero replicas; `ensemble_unavailable`: it refused, starting or
    overloaded; `ensemble_error`: it failed or answered something unusable)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class EnsembleService(Protocol):
    """The ensemble as the intent front sees it when it runs apart. Each call raises `EnsembleAbsent` when the
    service cannot answer."""

    async def classify(self, texts: Sequence[str], version: str) -> list[Vote]: ...

    def classify_blocking(self, texts: Sequence[str], version: str) -> list[Vote]:
        """The same from a thread outside the event loop (labelled feedback)."""
        ...


class EnsembleWorker:
    """What one worker of the ensemble's service serves: the ensemble model of each intent version asked for,
    loaded from the model store on first use (validated as the front validates it) and batched across concurrent
    calls."""

    def __init__(
        self, batching: BatcherOptions | None = None, *, faults: FaultInjector | None = None, kept: int = KEPT_VERSIONS
    ) -> None:
        self._batching = batching or BatcherOptions()
        self._faults = faults or FaultInjector()
        self._kept = kept
        self._loaded: OrderedDict[str, AdaptiveBatcher[str, Vote]] = OrderedDict()
        self._shared = SharedVectorizers()
        self._lock = threading.Lock()

    def preload(self, versions: Sequence[str]) -> None:
        for version in versions:
            self._batcher(version)

    def versions(self) -> list[str]:
        return list(self._loaded)

    async def classify(self, texts: Sequence[str], version: str) -> list[Vote]:
        batcher = self._loaded.get(version)
        if batcher is None:
            batcher = await asyncio.to_thread(self._batcher, version)
        return await batcher.submit_many(list(texts))

    def close(self) -> None:
        for batcher in self._loaded.values():
            batcher.close()
        self._loaded.clear()

    def _batcher(self, version: str) -> AdaptiveBatcher[str, Vote]:
        with self._lock:
            if version in self._loaded:
                return self._loaded[version]
            model = load_stored_text_model(ENSEMBLE_MODEL, version)
            check_text_model(model, NEUTRAL_TEXTS)
            model = with_fast_path(model, NEUTRAL_TEXTS, self._shared)
            logger.info("ensemble service: loaded %s:%s", model.name, model.version)

            def predict(texts: Sequence[str]) -> list[Vote]:
                self._faults.before_call(ENSEMBLE_MODEL)  # drills: INFERENCE_INJECT_FAULTS='{"intent-ensemble": ...}'
                return predict_votes(model, texts)

            batcher: AdaptiveBatcher[str, Vote] = self._batching.batcher(
                predict,
                name=f"{ENSEMBLE}-{version}",
                cost=text_units,
                chunk_units=CHUNK_UNITS,
                cost_model=CostModel(seconds_per_call=CALL_S, seconds_per_unit=UNIT_S),
            )
            self._loaded[version] = batcher
            while len(self._loaded) > self._kept:
                _, oldest = self._loaded.popitem(last=False)
                oldest.close()
            return batcher


def predict_votes(model: TextModel, texts: Sequence[str]) -> list[Vote]:
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        probabilities = np.asarray(model.predict_proba(list(texts)))
    best = probabilities.argmax(axis=1)
    return [(model.labels[column], float(probabilities[row, column])) for row, column in enumerate(best)]
