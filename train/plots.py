"""Evaluation plots for the training reports, as PNG: ROC, calibration, score histograms by class, feature
importance (binary models, one panel per model), and confusion matrices (intent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

PLOT_FILES = {
    "roc": "roc.png",
    "calibration": "calibration.png",
    "histogram": "score_histogram.png",
    "importance": "feature_importance.png",
}


@dataclass(frozen=True)
class BinaryEvaluation:
    """One binary model's held-out labels and scores, and its feature importances (name, value)."""

    name: str
    labels: np.ndarray
    scores: np.ndarray
    importances: Sequence[tuple[str, float]]


def _grid(count: int) -> tuple[plt.Figure, np.ndarray]:
    columns = min(count, 4)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, axes.flat


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def binary_plots(evaluations: Sequence[BinaryEvaluation], out_dir: Path) -> dict[str, str]:
    """Writes the four PNGs into `out_dir`; returns plot kind -> file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = _grid(len(evaluations))
    for axis, evaluation in zip(axes, evaluations, strict=False):
        false_positive, true_positive, _ = roc_curve(evaluation.labels, evaluation.scores)
        auc = roc_auc_score(evaluation.labels, evaluation.scores)
        axis.plot(false_positive, true_positive, color="#2f6fdf")
        axis.plot([0, 1], [0, 1], linestyle="--", color="#999")
        axis.set(title=f"{evaluation.name} (AUC {auc:.3f})", xlabel="false positive rate", ylabel="true positive rate")
    _save(figure, out_dir / PLOT_FILES["roc"])

    figure, axes = _grid(len(evaluations))
    for axis, evaluation in zip(axes, evaluations, strict=False):
        observed, predicted = calibration_curve(evaluation.labels, evaluation.scores, n_bins=10, strategy="quantile")
        axis.plot(predicted, observed, marker="o", color="#2f6fdf")
        axis.plot([0, 1], [0, 1], linestyle="--", color="#999")
        axis.set(title=evaluation.name, xlabel="mean predicted score", ylabel="share of positives")
    _save(figure, out_dir / PLOT_FILES["calibration"])

    figure, axes = _grid(len(evaluations))
    bins = np.linspace(0, 1, 21)
    for axis, evaluation in zip(axes, evaluations, strict=False):
        for label, colour in ((0, "#9aa5b1"), (1, "#2f6fdf")):
            axis.hist(
                evaluation.scores[evaluation.labels == label],
                bins=bins,
                alpha=0.7,
                color=colour,
                label=f"class {label}",
            )
        axis.set(title=evaluation.name, xlabel="score", ylabel="held-out examples")
        axis.legend()
    _save(figure, out_dir / PLOT_FILES["histogram"])

    figure, axes = _grid(len(evaluations))
    for axis, evaluation in zip(axes, evaluations, strict=False):
        names = [name for name, _ in evaluation.importances][::-1]
        values = [value for _, value in evaluation.importances][::-1]
        axis.barh(names, values, color="#2f6fdf")
        axis.set(title=evaluation.name, xlabel="importance")
        axis.tick_params(axis="y", labelsize=7)
    _save(figure, out_dir / PLOT_FILES["importance"])
    return dict(PLOT_FILES)


def confusion_plots(
    predictions: Mapping[str, tuple[Sequence[str], Sequence[str]]], labels: Sequence[str], out_dir: Path
) -> str:
    """One confusion matrix per model (rows: true label, columns: predicted), shares per row; returns the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = _grid(len(predictions))
    for axis, (name, (truth, predicted)) in zip(axes, predictions.items(), strict=False):
        matrix = confusion_matrix(truth, predicted, labels=list(labels), normalize="true")
        axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value > 0.5 else "black",
            )
        axis.set(title=name, xlabel="predicted", ylabel="true")
    _save(figure, out_dir / "confusion.png")
    return "confusion.png"


def markdown_images(files: Mapping[str, str]) -> list[str]:
    titles = {
        "roc": "ROC",
        "calibration": "Calibration",
        "histogram": "Scores by class",
        "importance": "Feature importance",
    }
    lines = []
    for kind, file in files.items():
        lines += [f"### {titles.get(kind, kind)}", "", f"![{titles.get(kind, kind)}]({file})", ""]
    return lines
