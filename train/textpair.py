"""The text-pair family: 30 engineered pair features, scaled, into a logistic regression; trained on generated
pairs or a team's (`python -m train textpair --data FILE`: `train.datasets`), evaluated on a held-out split,
written as an artifact with a report."""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inference.families.textpair.features import N_PAIR_FEATURES, PAIR_FEATURES, PairFeaturizer
from inference.families.textpair.scorer import TEXTPAIR_MODEL
from inference.progress import Progress, quiet_progress
from inference.store.registry import library_versions
from inference.store.text_artifacts import write_text_artifact
from train.data.pairs import PairSample, generate_pairs
from train.datasets import DataError, PairTable, read_pair_table
from train.params import generated_only, recorded_params
from train.plots import BinaryEvaluation, binary_plots, markdown_images
from train.samples import SAMPLE_COUNT, held_out_samples
from train.trainer import Trainer

TEST_SHARE = 0.2
LABELS = {0: "different", 1: "paraphrase"}  # the demo's labels; the service reads a model's own from its metadata


@dataclass(frozen=True)
class TextPairTrainingParams:
    seed: int = 17
    n_pairs: int = generated_only(8_000)
    regularisation: float = 1.0  # logistic regression's C


def textpair_pipeline(params: TextPairTrainingParams) -> Pipeline:
    return Pipeline(
        [
            ("features", PairFeaturizer()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=params.regularisation, max_iter=2000)),
        ]
    )


def train_textpair(
    version: str,
    params: TextPairTrainingParams,
    out_dir: Path,
    data: PairTable | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train on `data` (default: generated demo pairs), write `out_dir/textpair/` and `out_dir/report.{json,md}`.
    `progress` advances by one, for the one model."""
    table = data or generated_pair_table(params)
    progress = progress or quiet_progress()
    progress.set_total(1)
    n_pairs = len(table.pairs)
    order = np.random.default_rng(params.seed).permutation(n_pairs)
    n_test = int(n_pairs * TEST_SHARE)
    test, train = order[:n_test], order[n_test:]
    labels = np.array(table.labels)
    pairs = table.pairs
    positive_label = table.positive_label
    for name, rows in (("training", train), ("held-out", test)):
        if np.unique(labels[rows]).size < 2:
            raise DataError(f"{table.source}: the {rows.size} {name} pairs hold one label only; give more pairs")

    pipeline = textpair_pipeline(params).fit([pairs[i] for i in train], labels[train])
    probabilities = pipeline.predict_proba([pairs[i] for i in test])
    positive = list(pipeline.classes_).index(positive_label)
    predicted = pipeline.classes_[probabilities.argmax(axis=1)]
    truth = labels[test]
    metrics = {
        "f1": round(float(f1_score(truth, predicted, pos_label=positive_label)), 4),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "auc": round(float(roc_auc_score(truth == positive_label, probabilities[:, positive])), 4),
    }
    coefficients = np.abs(pipeline.named_steps["model"].coef_[0])
    ranked = sorted(zip(PAIR_FEATURES, coefficients / coefficients.sum(), strict=True), key=lambda item: -item[1])
    evaluation = BinaryEvaluation(TEXTPAIR_MODEL, truth == positive_label, probabilities[:, positive], ranked[:12])
    plots = binary_plots([evaluation], out_dir)
    report: dict[str, Any] = {
        "family": "textpair",
        "model": TEXTPAIR_MODEL,
        "version": version,
        "type": "logistic regression over engineered pair features",
        "feature_count": N_PAIR_FEATURES,
        "labels": list(pipeline.classes_),
        "positive_label": positive_label,
        "features": list(PAIR_FEATURES),
        "feature_descriptions": dict(PAIR_FEATURES),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_data_hash": table.data_hash,
        "data": {"source": table.source},
        "params": recorded_params(params, generated=data is None),
        "library_versions": library_versions(),
        "n_train": int(train.size),
        "n_test": int(test.size),
        "metrics": metrics,
        "plots": plots,
        "samples": held_out_samples(pipeline, [list(pairs[i]) for i in test[:SAMPLE_COUNT]]),
    }
    write_text_artifact(out_dir / TEXTPAIR_MODEL, pipeline, report)
    progress.advance(1, extra=f"{TEXTPAIR_MODEL}: F1 {metrics['f1']}")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(
        f"# Text-pair model {version}\n\nTrained {report['trained_at']} on {report['n_train']} pairs from "
        f"{table.source}, evaluated on {report['n_test']} held out (data hash `{table.data_hash[:12]}`).\n\n"
        f"| F1 (label {positive_label}) | accuracy | AUC |\n|---|---|---|\n"
        f"| {metrics['f1']} | {metrics['accuracy']} | {metrics['auc']} |\n\n"
        "Feature importance is the absolute logistic coefficient on the scaled feature, as a share.\n\n"
        + "\n".join(markdown_images(plots))
    )
    return report


def generated_pair_table(params: TextPairTrainingParams) -> PairTable:
    """The demo data: `params.n_pairs` generated pairs, labelled `paraphrase` or `different`."""
    sample = generate_pairs(params.n_pairs, seed=params.seed)
    return PairTable(
        pairs=sample.pairs,
        labels=[LABELS[label] for label in sample.labels],
        positive_label=LABELS[1],
        source=f"generated pairs (seed {params.seed})",
        data_hash=_data_hash(sample, params.seed),
    )


def _data_hash(sample: PairSample, seed: int) -> str:
    digest = hashlib.sha256(f"pairs:{seed}:{len(sample.pairs)}".encode())
    for (first, second), label in zip(sample.pairs, sample.labels, strict=True):
        digest.update(f"{first}\t{second}\t{label}\n".encode())
    return digest.hexdigest()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--positive-label",
        help="with --data: the label that means the same meaning (default: the one reading 1/true/yes/same/paraphrase)",
    )


TRAINER = Trainer(
    TextPairTrainingParams,
    train_textpair,
    lambda args: read_pair_table(args.data, positive_label=args.positive_label),
    "30 pair features into a logistic regression",
    "text1, text2, label (two values)",
    summary=lambda report: [f"  {report['model']:<18} {report['metrics']}"],
    add_options=_options,
    data_only=("positive_label",),
)
