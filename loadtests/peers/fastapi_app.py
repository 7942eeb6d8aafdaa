"""The peer a user would otherwise write: FastAPI + uvicorn serving the same 7 skill models the obvious way.

    BENTOML_HOME=... INFERENCE_SKILLS_VERSION=v1.0.0 uvicorn loadtests.peers.fastapi_app:app --port 3100

Loads the same stored artifacts with XGBClassifier.load_model and a StandardScaler, and answers each request
on its own with `predict_proba(scaler.transform(x))`: no batching across requests. Same routes and answer
fields as the service, so the same load scripts drive both.
"""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sklearn.preprocessing import StandardScaler

from inference.settings import Settings
from train.data.catalogue import SKILLS

app = FastAPI()
MODELS: dict[str, tuple[xgb.XGBClassifier, StandardScaler, list[str], dict[str, float], str]] = {}


class InferRequest(BaseModel):
    student_id: str
    skill: str
    features: dict[str, float]


class BatchRequest(BaseModel):
    items: list[InferRequest]


@app.on_event("startup")
def load_models() -> None:
    settings = Settings()
    for skill in settings.skills or SKILLS:
        stored = bentoml.models.get(f"skill-{skill}:{settings.skill_versions.get(skill, settings.skills_version)}")
        path = Path(stored.path)
        classifier = xgb.XGBClassifier()
        classifier.load_model(path / "model.json")
        params = json.loads((path / "scaler.json").read_text())
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_ = np.array(params["mean"]), np.array(params["scale"])
        scaler.var_, scaler.n_features_in_ = scaler.scale_**2, len(params["mean"])
        metadata = json.loads((path / "metadata.json").read_text())
        MODELS[skill] = (
            classifier,
            scaler,
            metadata["feature_names"],
            metadata["imputation_defaults"],
            str(stored.tag.version),
        )


@app.get("/readyz")
def readyz() -> dict[str, bool]:
    return {"ready": len(MODELS) == len(SKILLS)}


def score(request: InferRequest) -> dict[str, object]:
    if request.skill not in MODELS:
        raise HTTPException(status_code=400, detail=f"unknown skill {request.skill}")
    classifier, scaler, names, defaults, version = MODELS[request.skill]
    row = [[request.features.get(name, defaults[name]) for name in names]]
    probability = float(classifier.predict_proba(scaler.transform(row))[0, 1])
    importances = sorted(zip(names, classifier.feature_importances_.tolist(), strict=True), key=lambda item: -item[1])[
        :5
    ]
    return {
        "student_id": request.student_id,
        "skill": request.skill,
        "score": probability,
        "confidence": abs(2 * probability - 1),
        "feature_importance": [{"feature": name, "importance": value} for name, value in importances],
        "model_version": version,
    }


@app.post("/api/v1/skills/infer")
def infer(request: InferRequest) -> dict[str, object]:
    return score(request)


@app.post("/api/v1/skills/infer/batch")
def infer_batch(request: BatchRequest) -> dict[str, object]:
    results = [score(item) for item in request.items]
    return {"results": results, "succeeded": len(results), "failed": 0}
