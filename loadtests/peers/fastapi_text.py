"""The text families behind the FastAPI app a careful engineer writes by hand: the same stored scikit-learn
pipelines, as many uvicorn workers as this service, nothing but the models per request.

    BENTOML_HOME=... uvicorn loadtests.peers.fastapi_text:app --workers 2 --port 3100

Routes and answers as the service's: `POST /api/classify` (classic or ensemble by `X-Model-Preference`, else the
service's configured split, sticky per `user_id`; the intent and the verticals over their stored thresholds), `/api/classify/batch`
(one `predict_proba` per model for the whole list) and `/predict` (the text pair). Each model is called through
its own `predict_proba` under `sklearn.config_context(assume_finite=True, skip_parameter_validation=True)` (the
library's cheap path: no finiteness or parameter checks on inputs the app has validated). Handlers are `async def`
(a query costs ~1-2 ms of model time, less than a thread-pool hop is worth at these sizes), answers orjson. What it
leaves out against this service: text length checks, caching, fallbacks and the ensemble's budget, versions,
monitoring and metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import sklearn
from fastapi import FastAPI, Header
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from inference.families.intent.variants import CLASSIC, CLASSIC_MODEL, ENSEMBLE, ENSEMBLE_MODEL, VERTICALS_MODEL
from inference.families.textpair.scorer import TEXTPAIR_MODEL, positive_label
from inference.serving.routing import choose_variant
from inference.settings import Settings
from inference.store.registry import resolve_model_version
from inference.store.text_artifacts import TextModel, load_stored_text_model

app = FastAPI(default_response_class=ORJSONResponse)
MODELS: dict[str, TextModel] = {}
THRESHOLDS: list[np.ndarray] = []
SAME: list[int] = []
SPLIT = Settings().intent_split
SALT = Settings().routing_salt


class ClassifyRequest(BaseModel):
    text: str
    user_id: str | None = None


class ClassifyBatchRequest(BaseModel):
    texts: list[str]
    user_id: str | None = None


class PairRequest(BaseModel):
    text1: str
    text2: str


@app.on_event("startup")
def load_models() -> None:
    settings = Settings()
    intent_version = resolve_model_version(CLASSIC_MODEL, settings.intent_version)
    for variant, name in ((CLASSIC, CLASSIC_MODEL), (ENSEMBLE, ENSEMBLE_MODEL), ("verticals", VERTICALS_MODEL)):
        MODELS[variant] = load_stored_text_model(name, intent_version)
    stored = MODELS["verticals"].metadata.get("thresholds", {})
    THRESHOLDS.append(np.array([float(stored.get(label, 0.5)) for label in MODELS["verticals"].labels]))
    pair = load_stored_text_model(TEXTPAIR_MODEL, resolve_model_version(TEXTPAIR_MODEL, settings.textpair_version))
    MODELS["pair"] = pair
    SAME.append(list(pair.labels).index(positive_label(pair)))


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ready": bool(SAME)}


def _variant(preference: str | None, user_id: str | None) -> str:
    if preference in (CLASSIC, ENSEMBLE):
        return preference
    # The service's own sticky split, so that both send the same callers to the ensemble.
    return choose_variant(SPLIT, caller_id=user_id, salt=SALT)


def _classify(texts: list[str], variant: str) -> list[dict[str, object]]:
    model, verticals = MODELS[variant], MODELS["verticals"]
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        intents = model.estimator.predict_proba(texts)
        detected = verticals.estimator.predict_proba(texts)
    answers = []
    for row, column in enumerate(intents.argmax(axis=1)):
        over = np.flatnonzero(detected[row] >= THRESHOLDS[0])
        answers.append(
            {
                "intent": model.labels[column],
                "confidence": float(intents[row, column]),
                "verticals": sorted(
                    ({"vertical": verticals.labels[i], "score": float(detected[row, i])} for i in over),
                    key=lambda item: -item["score"],
                ),
                "variant": variant,
                "model_version": model.version,
                "fallback": False,
            }
        )
    return answers


@app.post("/api/classify")
async def classify(request: ClassifyRequest, x_model_preference: str | None = Header(default=None)) -> ORJSONResponse:
    return ORJSONResponse(_classify([request.text], _variant(x_model_preference, request.user_id))[0])


@app.post("/api/classify/batch")
async def classify_batch(
    request: ClassifyBatchRequest, x_model_preference: str | None = Header(default=None)
) -> ORJSONResponse:
    results = _classify(request.texts, _variant(x_model_preference, request.user_id))
    return ORJSONResponse({"results": results, "succeeded": len(results), "failed": 0})


@app.post("/predict")
async def predict(request: PairRequest) -> ORJSONResponse:
    pair = MODELS["pair"]
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        probabilities = pair.estimator.predict_proba([[request.text1, request.text2]])[0]
    same = float(probabilities[SAME[0]])
    prediction = int(same >= 0.5)
    return ORJSONResponse(
        {
            "prediction": prediction,
            "label": "paraphrase" if prediction else "different",
            "confidence": same if prediction else 1.0 - same,
            "model": {"name": pair.name, "version": pair.version},
            "timestamp": datetime.now(UTC).isoformat(),
        }
    )
