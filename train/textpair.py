"""The text-pair family: 30 engineered pair features, scaled, into a logistic regression; trained on generated
pairs, evaluated on a held-out split, written as an artifact with a report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inference.pair_features import N_PAIR_FEATURES, PAIR_FEATURES, PairFeaturizer
from inference.pairs import PairSample, generate_pairs
from inference.registry import library_versions
from inference.text_artifacts import write_text_artifact
from inference.textpair_catalogue import LABELS, TEXTPAIR_MODEL
from train.plots import BinaryEvaluation, binary_plots, markdown_images
from train.samples import SAMPLE_COUNT, held_out_samples

TEST_SHARE = 0.2


@dataclass(frozen=True)
class TextPairTrainingParams:
    seed: int = 17
    n_pairs: int = 8_000
    regularisation: float = 1.0  # logistic regression's C


def textpair_pipeline(params: TextPairTrainingParams) -> Pipeline:
    return Pipeline(
        [
            ("features", PairFeaturizer()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=params.regularisation, max_iter=2000)),
        ]
    )


def train_textpair(version: str, params: TextPairTrainingParams, out_dir: Path) -> dict[str, Any]:
    sample = generate_pairs(params.n_pairs, seed=params.seed)
    order = np.random.default_rng(params.seed).permutation(params.n_pairs)
    n_test = int(params.n_pairs * TEST_SHARE)
    test, train = order[:n_test], order[n_test:]
    labels = np.array([LABELS[label] for label in sample.labels])
    pairs = sample.pairs

    pipeline = textpair_pipeline(params).fit([pairs[i] for i in train], labels[train])
    probabilities = pipeline.predict_proba([pairs[i] for i in test])
    positive = list(pipeline.classes_).index(LABELS[1])
    predicted = pipeline.classes_[probabilities.argmax(axis=1)]
    truth = labels[test]
    metrics = {
        "f1": round(float(f1_score(truth, predicted, pos_label=LABELS[1])), 4),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "auc": round(float(roc_auc_score(truth == LABELS[1], probabilities[:, positive])), 4),
    }
    coefficients = np.abs(pipeline.named_steps["model"].coef_[0])
    ranked = sorted(zip(PAIR_FEATURES, coefficients / coefficients.sum(), strict=True), key=lambda item: -item[1])
    evaluation = BinaryEvaluation(TEXTPAIR_MODEL, truth == LABELS[1], probabilities[:, positive], ranked[:12])
    plots = binary_plots([evaluation], out_dir)
    report: dict[str, Any] = {
        "family": "textpair",
        "model": TEXTPAIR_MODEL,
        "version": version,
        "type": "logistic regression over engineered pair features",
        "feature_count": N_PAIR_FEATURES,
        "labels": list(pipeline.classes_),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_data_hash": _data_hash(sample, params.seed),
        "params": asdict(params),
        "library_versions": library_versions(),
        "n_train": int(train.size),
        "n_test": int(test.size),
        "metrics": metrics,
        "plots": plots,
        "samples": held_out_samples(pipeline, [list(pairs[i]) for i in test[:SAMPLE_COUNT]]),
    }
    write_text_artifact(out_dir / TEXTPAIR_MODEL, pipeline, report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(
        f"# Text-pair model {version}\n\nTrained {report['trained_at']} on {report['n_train']} generated pairs, "
        f"evaluated on {report['n_test']} held out (seed {params.seed}).\n\n"
        f"| F1 (same meaning) | accuracy | AUC |\n|---|---|---|\n"
        f"| {metrics['f1']} | {metrics['accuracy']} | {metrics['auc']} |\n\n"
        "Feature importance is the absolute logistic coefficient on the scaled feature, as a share.\n\n"
        + "\n".join(markdown_images(plots))
    )
    return report


def _data_hash(sample: PairSample, seed: int) -> str:
    digest = hashlib.sha256(f"pairs:{seed}:{len(sample.pairs)}".encode())
    for (first, second), label in zip(sample.pairs, sample.labels, strict=True):
        digest.update(f"{first}\t{second}\t{label}\n".encode())
    return digest.hexdigest()
