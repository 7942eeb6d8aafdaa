"""Per-skill StandardScaler + XGBoost classifiers, evaluated on a held-out split, written as skill artifacts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from inference.artifacts import write_skill_artifact
from inference.catalogue import SKILL_FEATURES, SKILLS
from inference.drift import reference_distribution
from inference.registry import library_versions
from inference.scoring import top_importances
from inference.synthetic import StudentSample, generate_students
from train.plots import BinaryEvaluation, binary_plots, markdown_images
from train.samples import SAMPLE_COUNT

TEST_SHARE = 0.2


@dataclass(frozen=True)
class SkillTrainingParams:
    seed: int = 7
    n_students: int = 20_000
    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.08
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    # For drills: train on shuffled labels, so the model learns nothing (monitoring must notice).
    shuffle_labels: bool = False


def train_skills(version: str, params: SkillTrainingParams, out_dir: Path) -> dict[str, Any]:
    """Train all 7 skills, write `out_dir/<skill>/` artifacts and `out_dir/report.{json,md}`; return the report."""
    sample = generate_students(params.n_students, seed=params.seed)
    data_hash = _data_hash(sample, params.seed)
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(params.n_students)
    n_test = int(params.n_students * TEST_SHARE)
    test_rows, train_rows = order[:n_test], order[n_test:]
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")

    report: dict[str, Any] = {
        "family": "skills",
        "version": version,
        "trained_at": trained_at,
        "training_data_hash": data_hash,
        "params": asdict(params),
        "n_train": int(train_rows.size),
        "n_test": int(test_rows.size),
        "skills": {},
    }
    evaluations: list[BinaryEvaluation] = []
    for skill_index, skill in enumerate(SKILLS):
        names = SKILL_FEATURES[skill]
        columns = [sample.feature_names.index(name) for name in names]
        x_train = sample.features[np.ix_(train_rows, columns)]
        x_test = sample.features[np.ix_(test_rows, columns)]
        y_train = sample.labels[train_rows, skill_index]
        if params.shuffle_labels:
            y_train = rng.permutation(y_train)
        y_test = sample.labels[test_rows, skill_index]
        rating_test = sample.ratings[test_rows, skill_index]

        medians = np.nanmedian(x_train, axis=0)
        x_train = np.where(np.isnan(x_train), medians, x_train)
        x_test = np.where(np.isnan(x_test), medians, x_test)
        scaler = StandardScaler().fit(x_train)
        classifier = xgb.XGBClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            learning_rate=params.learning_rate,
            subsample=params.subsample,
            colsample_bytree=params.colsample_bytree,
            random_state=params.seed + skill_index,
            n_jobs=2,
            eval_metric="logloss",
        ).fit(scaler.transform(x_train), y_train)
        scores = classifier.predict_proba(scaler.transform(x_test))[:, 1]
        metrics = evaluate(scores, y_test, rating_test)
        evaluations.append(
            BinaryEvaluation(skill, y_test, scores, top_importances(classifier.get_booster(), names, k=len(names)))
        )

        metadata = {
            "skill": skill,
            "semver": version,
            "feature_names": list(names),
            "imputation_defaults": {name: float(value) for name, value in zip(names, medians, strict=True)},
            "metrics": metrics,
            "trained_at": trained_at,
            "training_data_hash": data_hash,
            "params": asdict(params),
            "reference": {
                "features": {name: reference_distribution(x_train[:, i]) for i, name in enumerate(names)},
                "score": reference_distribution(scores),
            },
            # Held-out rows with the scores they must get: a reload checks the loaded model reproduces them.
            "samples": {
                "inputs": x_test[:SAMPLE_COUNT].tolist(),
                "scores": [float(score) for score in scores[:SAMPLE_COUNT]],
            },
        }
        write_skill_artifact(
            out_dir / skill,
            booster=classifier.get_booster(),
            mean=scaler.mean_,
            scale=scaler.scale_,
            metadata=metadata,
        )
        report["skills"][skill] = metrics
    report["plots"] = binary_plots(evaluations, out_dir)
    report["library_versions"] = library_versions()
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_report(report))
    return report


def evaluate(scores: np.ndarray, labels: np.ndarray, ratings: np.ndarray) -> dict[str, float]:
    predicted = (scores >= 0.5).astype(np.int32)
    return {
        "auc": round(float(roc_auc_score(labels, scores)), 4),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "f1": round(float(f1_score(labels, predicted)), 4),
        "brier": round(float(brier_score_loss(labels, scores)), 4),
        "rating_pearson_r": round(float(pearsonr(scores, ratings).statistic), 4),
        "positive_share": round(float(labels.mean()), 4),
    }


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"# Skills models {report['version']}",
        "",
        f"Trained {report['trained_at']} on {report['n_train']} generated students, evaluated on {report['n_test']} "
        f"held out (data hash `{report['training_data_hash'][:12]}`).",
        "",
        "| skill | AUC | accuracy | F1 | Brier | r (score, teacher rating) |",
        "|---|---|---|---|---|---|",
    ]
    for skill, m in report["skills"].items():
        lines.append(
            f"| {skill} | {m['auc']:.3f} | {m['accuracy']:.3f} | {m['f1']:.3f} | {m['brier']:.3f} | {m['rating_pearson_r']:.3f} |"
        )
    lines += ["", "Parameters: " + ", ".join(f"{k}={v}" for k, v in report["params"].items()), ""]
    lines += ["## Plots (held-out students)", "", *markdown_images(report.get("plots", {}))]
    return "\n".join(lines)


def _data_hash(sample: StudentSample, seed: int) -> str:
    digest = hashlib.sha256()
    digest.update(str(seed).encode())
    digest.update(np.ascontiguousarray(sample.features).tobytes())
    digest.update(np.ascontiguousarray(sample.ratings).tobytes())
    return digest.hexdigest()
