"""The peer a careful engineer writes by hand: FastAPI + uvicorn, as many workers as this service, the cheapest
XGBoost call, nothing recomputed per request.

    BENTOML_HOME=... uvicorn loadtests.peers.fastapi_careful:app --workers 2 --port 3100

Loads the same stored artifacts; per request it imputes, scales with numpy and asks the booster for a margin with
`Booster.inplace_predict` (the probability is its logistic, as `predict_proba` computes it); the top importances
are computed once at load. Handlers are `async def` (no thread pool hop: the booster call is ~0.1 ms), answers are
serialised with orjson. No batching across requests: each batch request is one booster call per skill. Same routes
and answer fields as the service, so the same load scripts drive both. What it leaves out against this service:
feature range checks, monitoring, metrics, caching, versions and routing.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from inference.families.skills.family import pinned_skill_models
from inference.families.skills.scoring import SkillModel
from inference.settings import Settings

app = FastAPI(default_response_class=ORJSONResponse)
MODELS: dict[str, tuple[SkillModel, list[dict[str, object]]]] = {}


class InferRequest(BaseModel):
    student_id: str
    skill: str
    features: dict[str, float]


class BatchRequest(BaseModel):
    items: list[InferRequest]


@app.on_event("startup")
def load_models() -> None:
    for skill, model in pinned_skill_models(Settings()).items():
        importances = [{"feature": name, "importance": value} for name, value in model.feature_importance]
        MODELS[skill] = (model, importances)


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ready": bool(MODELS)}


def _row(request: InferRequest) -> np.ndarray:
    if request.skill not in MODELS:
        raise HTTPException(status_code=400, detail=f"unknown skill {request.skill}")
    model, _ = MODELS[request.skill]
    features = request.features
    return np.array(
        [
            features.get(name, default)
            for name, default in zip(model.feature_names, model.imputation_defaults, strict=True)
        ],
        dtype=np.float64,
    )


def _scores(model: SkillModel, rows: np.ndarray) -> np.ndarray:
    scaled = ((rows - model.mean) / model.scale).astype(np.float32)
    margin = model.booster.inplace_predict(scaled, predict_type="margin")
    return 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype=np.float64)))


def _answer(request: InferRequest, probability: float) -> dict[str, object]:
    model, importances = MODELS[request.skill]
    return {
        "student_id": request.student_id,
        "skill": request.skill,
        "score": probability,
        "confidence": math.fabs(2 * probability - 1),
        "feature_importance": importances,
        "model_version": model.version,
    }


@app.post("/api/v1/skills/infer")
async def infer(request: InferRequest) -> ORJSONResponse:
    row = _row(request)
    probability = float(_scores(MODELS[request.skill][0], row[None, :])[0])
    return ORJSONResponse(_answer(request, probability))


@app.post("/api/v1/skills/infer/batch")
async def infer_batch(request: BatchRequest) -> ORJSONResponse:
    by_skill: dict[str, list[int]] = defaultdict(list)
    rows = [_row(item) for item in request.items]
    for index, item in enumerate(request.items):
        by_skill[item.skill].append(index)
    probabilities = [0.0] * len(rows)
    for skill, indices in by_skill.items():
        scores = _scores(MODELS[skill][0], np.stack([rows[i] for i in indices]))
        for index, score in zip(indices, scores.tolist(), strict=True):
            probabilities[index] = score
    results = [_answer(item, p) for item, p in zip(request.items, probabilities, strict=True)]
    return ORJSONResponse({"results": results, "succeeded": len(results), "failed": 0})
