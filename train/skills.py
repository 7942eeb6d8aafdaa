"""Per-skill StandardScaler + XGBoost classifiers, evaluated on a held-out split, written as skill artifacts.

The data is a `SkillTable`: the demo's generated students by default, or a team's table read from a file
(`train.datasets.read_skill_table`, `python -m train skills --data FILE`). From there both go the same way: the
students are split once (a student's rows are all trained on or all held out), and each skill's model is fitted
on its own features, imputing missing values with the training medians, which its metadata keeps as the
imputation defaults the service uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from inference.families.skills.artifacts import write_skill_artifact
from inference.families.skills.schema import FeatureSchema, FeatureSpec
from inference.families.skills.scoring import top_importances
from inference.monitoring.drift import reference_distribution
from inference.progress import Progress, quiet_progress
from inference.store.registry import library_versions
from train.data.catalogue import FEATURES, SKILL_FEATURES, SKILLS
from train.data.students import HIGH_SKILL_RATING, StudentSample, generate_students
from train.datasets import DEFAULT_RATING_THRESHOLD, DataError, SkillExamples, SkillTable, read_skill_table
from train.params import generated_only, recorded_params
from train.plots import BinaryEvaluation, binary_plots, markdown_images
from train.samples import SAMPLE_COUNT
from train.trainer import Trainer

TEST_SHARE = 0.2


@dataclass(frozen=True)
class SkillTrainingParams:
    seed: int = 7
    n_students: int = generated_only(20_000)
    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.08
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    # For drills: train on shuffled labels, so the model learns nothing (monitoring must notice).
    shuffle_labels: bool = False


def train_skills(
    version: str,
    params: SkillTrainingParams,
    out_dir: Path,
    data: SkillTable | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train one model per skill of `data` (default: generated demo students), write `out_dir/<skill>/` artifacts
    and `out_dir/report.{json,md}`; return the report. `DataError` when a skill's rows cannot be split into
    training and held-out rows holding both labels. `progress` advances by one per skill."""
    table = data or generated_skill_table(params)
    progress = progress or quiet_progress()
    progress.set_total(len(table.skills))
    rng = np.random.default_rng(params.seed)
    place, n_test = held_out_students(table, rng)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    recorded = recorded_params(params, generated=data is None)
    report: dict[str, Any] = {
        "family": "skills",
        "version": version,
        "trained_at": trained_at,
        "training_data_hash": table.data_hash,
        "data": {"source": table.source, "label": table.label_rule},
        "params": recorded,
        "n_train": len(place) - n_test,
        "n_test": n_test,
        "rows": {},
        "skills": {},
    }
    evaluations: list[BinaryEvaluation] = []
    for skill_index, (skill, examples) in enumerate(table.skills.items()):
        train_rows, test_rows = split_rows(examples, place, n_test)
        _check_split(skill, examples.labels, train_rows, test_rows)
        x_train, x_test = examples.values[train_rows], examples.values[test_rows]
        y_train, y_test = examples.labels[train_rows], examples.labels[test_rows]
        if params.shuffle_labels:
            y_train = rng.permutation(y_train)

        medians = np.nanmedian(x_train, axis=0)
        unmeasured = [spec.name for spec, median in zip(examples.features, medians, strict=True) if np.isnan(median)]
        if unmeasured:
            raise DataError(f"skill {skill!r}: no training row has a value of {unmeasured}; give more rows")
        x_train = np.where(np.isnan(x_train), medians, x_train)
        x_test = np.where(np.isnan(x_test), medians, x_test)
        schema = FeatureSchema(
            tuple(replace(spec, default=float(m)) for spec, m in zip(examples.features, medians, strict=True))
        )
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
        ratings = None if examples.ratings is None else examples.ratings[test_rows]
        metrics = evaluate(scores, y_test, ratings)
        names = schema.names
        evaluations.append(
            BinaryEvaluation(skill, y_test, scores, top_importances(classifier.get_booster(), names, k=len(names)))
        )

        metadata = {
            "skill": skill,
            "semver": version,
            **schema.to_metadata(),
            "metrics": metrics,
            "trained_at": trained_at,
            "training_data_hash": table.data_hash,
            "params": recorded,
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
        report["rows"][skill] = {"train": int(train_rows.size), "test": int(test_rows.size)}
        report["skills"][skill] = metrics
        progress.advance(1, extra=f"{skill}: AUC {metrics['auc']}")
    report["plots"] = binary_plots(evaluations, out_dir)
    report["library_versions"] = library_versions()
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_report(report))
    return report


def generated_skill_table(params: SkillTrainingParams) -> SkillTable:
    """The demo data: `params.n_students` generated students, every one rated on every skill, each skill's model
    on its catalogue features (with their units, ranges and descriptions)."""
    sample = generate_students(params.n_students, seed=params.seed)
    skills = {}
    for skill_index, skill in enumerate(SKILLS):
        names = SKILL_FEATURES[skill]
        columns = [sample.feature_names.index(name) for name in names]
        skills[skill] = SkillExamples(
            features=tuple(_catalogue_spec(name) for name in names),
            student_ids=sample.student_ids,
            values=sample.features[:, columns],
            labels=sample.labels[:, skill_index],
            ratings=sample.ratings[:, skill_index],
        )
    return SkillTable(
        skills,
        source=f"generated students (seed {params.seed})",
        label_rule=f"rating >= {HIGH_SKILL_RATING:g}",
        data_hash=_data_hash(sample, params.seed),
    )


def held_out_students(table: SkillTable, rng: np.random.Generator) -> tuple[dict[str, int], int]:
    """Each student's place in one seeded shuffle of the students (taken in the order first met), and how many of
    the first places are held out: a student's rows, whatever the skill, are all trained on or all held out."""
    students = list(dict.fromkeys(sid for examples in table.skills.values() for sid in examples.student_ids))
    order = rng.permutation(len(students))
    return {students[index]: place for place, index in enumerate(order.tolist())}, int(len(students) * TEST_SHARE)


def split_rows(examples: SkillExamples, place: dict[str, int], n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """A skill's training and held-out rows, each in the order of the shuffle."""
    places = np.array([place[sid] for sid in examples.student_ids], dtype=np.int64)
    order = np.argsort(places, kind="stable")
    return order[places[order] >= n_test], order[places[order] < n_test]


def evaluate(scores: np.ndarray, labels: np.ndarray, ratings: np.ndarray | None = None) -> dict[str, float]:
    """Held-out metrics; `rating_pearson_r` (score against teacher rating) only when the data has ratings."""
    predicted = (scores >= 0.5).astype(np.int32)
    metrics = {
        "auc": round(float(roc_auc_score(labels, scores)), 4),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 4),
        "brier": round(float(brier_score_loss(labels, scores)), 4),
        "positive_share": round(float(labels.mean()), 4),
    }
    if ratings is not None:
        rated = np.isfinite(ratings)
        if rated.sum() >= 2 and ratings[rated].std() > 0 and scores[rated].std() > 0:
            metrics["rating_pearson_r"] = round(float(pearsonr(scores[rated], ratings[rated]).statistic), 4)
    return dict(sorted(metrics.items()))


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"# Skills models {report['version']}",
        "",
        f"Trained {report['trained_at']} on {report['n_train']} students from {report['data']['source']}, evaluated "
        f"on {report['n_test']} held out (label: {report['data']['label']}; data hash "
        f"`{report['training_data_hash'][:12]}`).",
        "",
        "| skill | AUC | accuracy | F1 | Brier | r (score, teacher rating) | rows (train / held out) |",
        "|---|---|---|---|---|---|---|",
    ]
    for skill, m in report["skills"].items():
        r = f"{m['rating_pearson_r']:.3f}" if "rating_pearson_r" in m else "-"
        rows = report["rows"][skill]
        lines.append(
            f"| {skill} | {m['auc']:.3f} | {m['accuracy']:.3f} | {m['f1']:.3f} | {m['brier']:.3f} | {r} | "
            f"{rows['train']} / {rows['test']} |"
        )
    lines += ["", "Parameters: " + ", ".join(f"{k}={v}" for k, v in report["params"].items()), ""]
    lines += ["## Plots (held-out students)", "", *markdown_images(report.get("plots", {}))]
    return "\n".join(lines)


def _check_split(skill: str, labels: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray) -> None:
    for name, rows in (("training", train_rows), ("held-out", test_rows)):
        found = np.unique(labels[rows])
        if found.size < 2:
            raise DataError(
                f"skill {skill!r}: its {rows.size} {name} rows hold only label {found.tolist()}; a model is fitted "
                "and evaluated on both labels: give more rated students of this skill"
            )


def _catalogue_spec(name: str) -> FeatureSpec:
    feature = FEATURES[name]
    return FeatureSpec(
        name=name,
        default=math.nan,  # the training median, set at training
        unit=feature.unit,
        minimum=feature.minimum,
        maximum=feature.maximum,
        description=feature.description,
    )


def _data_hash(sample: StudentSample, seed: int) -> str:
    digest = hashlib.sha256()
    digest.update(str(seed).encode())
    digest.update(np.ascontiguousarray(sample.features).tobytes())
    digest.update(np.ascontiguousarray(sample.ratings).tobytes())
    return digest.hexdigest()


def _read_data(args: argparse.Namespace) -> SkillTable:
    threshold = DEFAULT_RATING_THRESHOLD if args.rating_threshold is None else args.rating_threshold
    return read_skill_table(args.data, rating_threshold=threshold, features_file=args.features)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rating-threshold",
        type=float,
        help=f"with --data: label 1 is a rating at or above this (default: {DEFAULT_RATING_THRESHOLD:g}); "
        "ignored when the file has a label column",
    )
    parser.add_argument(
        "--features",
        type=Path,
        help='with --data: JSON of the features per skill, {"skill": ["feature", ...]} (an entry may be '
        '{"name", "unit", "minimum", "maximum", "description"}); default: every feature column with a value '
        "among the skill's rows",
    )


def _summary(report: dict[str, Any]) -> list[str]:
    return [
        f"  {skill:<18} AUC {m['auc']:.3f}  F1 {m['f1']:.3f}"
        + (f"  r {m['rating_pearson_r']:.3f}" if "rating_pearson_r" in m else "")
        for skill, m in report["skills"].items()
    ]


TRAINER = Trainer(
    SkillTrainingParams,
    train_skills,
    _read_data,
    "per-skill StandardScaler + XGBoost classifiers",
    "student_id, skill, numeric feature columns, and rating (1-5) or label (0/1)",
    summary=_summary,
    add_options=_options,
    data_only=("rating_threshold", "features"),
)
