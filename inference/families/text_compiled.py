"""Fast predict_proba for the text families' scikit-learn pipelines, for the few texts a request brings.

scikit-learn spends most of a one-text `predict_proba` on checks of its inputs: a `TfidfVectorizer.transform`
of one query takes ~0.6 ms, of which the tokenizer is ~10 µs; the rest is `check_array`, dataframe detection and
sparse-matrix validation, once per step and per estimator (a `OneVsRestClassifier` of 6 logistic regressions:
~2 ms for one text). `compile_text_model` rebuilds what it recognises from the fitted parts themselves:

- `TfidfVectorizer`: the vectorizer's own analyzer, vocabulary and idf, counted and normalised in numpy;
- `FeatureUnion` without weights: its parts side by side, without joblib's dispatch;
- `StandardScaler` on dense features: the subtraction and division it does;
- `LogisticRegression` and a `OneVsRestClassifier` of them: one sparse-dense product and the logistic or
  softmax, as scikit-learn computes them;
- a fitted step with `words_` / `chars_` vectorizers (the text pair's featurizer): those vectorizers swapped
  for the fast ones in a copy of the step;

and leaves every other step to scikit-learn. The result is used only after it has given the estimator's own
probabilities on the texts the load checks with (`TOLERANCE`); otherwise the estimator's `predict_proba` serves,
and the reason is logged. Nothing is written back to the store.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import sklearn
from scipy.special import expit, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from inference.logs import LOGGER_NAME
from inference.store.text_artifacts import TextModel

logger = logging.getLogger(LOGGER_NAME)

TOLERANCE = 1e-9  # float64 throughout; only the order of summation differs from scikit-learn's
Transform = Callable[[Any], Any]
PredictProba = Callable[[Sequence[Any]], np.ndarray]


class FastTfidf:
    """`TfidfVectorizer.transform` for a fitted vectorizer, without scikit-learn's input checks."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        if vectorizer.norm not in ("l2", None):
            raise ValueError(f"norm={vectorizer.norm!r} is not supported")
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.n_features = len(self.vocabulary)
        self.binary = bool(vectorizer.binary)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64) if vectorizer.use_idf else None
        self.l2 = vectorizer.norm == "l2"
        self.dtype = vectorizer.dtype

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        vocabulary = self.vocabulary
        indptr, indices, counts = [0], [], []
        for text in texts:
            found: dict[int, int] = {}
            for token in self.analyze(text):
                column = vocabulary.get(token)
                if column is not None:
                    found[column] = found.get(column, 0) + 1
            for column in sorted(found):
                indices.append(column)
                counts.append(found[column])
            indptr.append(len(indices))
        columns = np.asarray(indices, dtype=np.int32)
        values = np.ones(len(counts)) if self.binary else np.asarray(counts, dtype=np.float64)
        if self.sublinear:
            np.log(values, out=values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[columns]
        starts = np.asarray(indptr, dtype=np.int32)
        if self.l2 and len(values):
            rows = np.repeat(np.arange(len(texts)), np.diff(starts))
            norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(texts)))
            norms[norms == 0.0] = 1.0
            values /= norms[rows]
        return sp.csr_matrix(
            (values.astype(self.dtype, copy=False), columns, starts), shape=(len(texts), self.n_features)
        )


def _transform(step: Any) -> Transform:
    """A fitted transformer's transform, fast where the step is recognised."""
    if isinstance(step, TfidfVectorizer):
        return FastTfidf(step).transform
    if isinstance(step, FeatureUnion) and not step.transformer_weights:
        parts = [_transform(part) for _, part in step.transformer_list if part not in ("drop", None)]

        def union(texts: Any) -> Any:
            blocks = [part(texts) for part in parts]
            return sp.hstack(blocks, format="csr") if any(sp.issparse(b) for b in blocks) else np.hstack(blocks)

        return union
    if isinstance(getattr(step, "words_", None), TfidfVectorizer) or isinstance(
        getattr(step, "chars_", None), TfidfVectorizer
    ):
        fast = copy.copy(step)  # the store's object stays as it was loaded
        for name in ("words_", "chars_"):
            vectorizer = getattr(step, name, None)
            if isinstance(vectorizer, TfidfVectorizer):
                setattr(fast, name, FastTfidf(vectorizer))
        return fast.transform
    if isinstance(step, StandardScaler) and step.n_features_in_:
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def scaled(features: Any) -> Any:
            if sp.issparse(features):
                return step.transform(features)
            values = np.array(features, dtype=np.float64)
            if mean is not None:
                values -= mean
            if scale is not None:
                values /= scale
            return values

        return scaled
    return step.transform


def _linear(coef: np.ndarray, intercept: np.ndarray) -> Callable[[Any], np.ndarray]:
    weights = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T)
    bias = np.asarray(intercept, dtype=np.float64)

    def decision(features: Any) -> np.ndarray:
        return np.asarray(features @ weights) + bias

    return decision


def _final(estimator: Any) -> Callable[[Any], np.ndarray]:
    """The last step's predict_proba on features, fast where it is recognised."""
    if isinstance(estimator, LogisticRegression):
        decision = _linear(estimator.coef_, estimator.intercept_)
        if len(estimator.classes_) <= 2:

            def binary(features: Any) -> np.ndarray:
                positive = expit(decision(features)[:, 0])
                return np.column_stack([1.0 - positive, positive])

            return binary
        return lambda features: softmax(decision(features), axis=1)
    if isinstance(estimator, OneVsRestClassifier) and all(
        isinstance(member, LogisticRegression) and len(member.classes_) == 2 for member in estimator.estimators_
    ):
        decision = _linear(
            np.vstack([member.coef_ for member in estimator.estimators_]),
            np.concatenate([member.intercept_ for member in estimator.estimators_]),
        )
        multilabel = estimator.multilabel_

        def one_vs_rest(features: Any) -> np.ndarray:
            probabilities = expit(decision(features))
            if probabilities.shape[1] == 1:
                return np.hstack([1.0 - probabilities, probabilities])
            if not multilabel:
                sums = probabilities.sum(axis=1, keepdims=True)
                np.divide(probabilities, sums, out=probabilities, where=sums != 0)
            return probabilities

        return one_vs_rest
    return estimator.predict_proba


def _build(estimator: Any) -> PredictProba:
    if isinstance(estimator, Pipeline):
        transforms = [_transform(step) for _, step in estimator.steps[:-1] if step not in ("passthrough", None)]
        final = _final(estimator.steps[-1][1])

        def pipeline(inputs: Sequence[Any]) -> np.ndarray:
            features: Any = list(inputs)
            for transform in transforms:
                features = transform(features)
            return final(features)

        return pipeline
    return _final(estimator)


def compile_text_model(estimator: Any, check_inputs: Sequence[Any], *, name: str) -> tuple[PredictProba, str]:
    """A fast `predict_proba` for `estimator` if it gives the same probabilities on `check_inputs`, else the
    estimator's own; and which of the two, said for the log."""
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        reference = np.asarray(estimator.predict_proba(list(check_inputs)), dtype=np.float64)
    try:
        fast = _build(estimator)
        candidate = np.asarray(fast(list(check_inputs)), dtype=np.float64)
        difference = float(np.max(np.abs(candidate - reference))) if candidate.shape == reference.shape else np.inf
    except Exception as err:  # an unforeseen estimator: scikit-learn's own path stays correct
        logger.warning("%s: fast text path not used (%s: %s)", name, type(err).__name__, err)
        return estimator.predict_proba, "scikit-learn"
    if difference > TOLERANCE:
        logger.warning("%s: fast text path differs from scikit-learn by %.3g; not used", name, difference)
        return estimator.predict_proba, "scikit-learn"
    return fast, "compiled"


def with_fast_path(model: TextModel, neutral_inputs: Sequence[Any]) -> TextModel:
    """`model` with its fast predict_proba when that gives the estimator's probabilities on the model's stored
    samples and `neutral_inputs`."""
    samples = model.metadata.get("samples") or {}
    check_inputs = [*(samples.get("inputs") or []), *neutral_inputs]
    predict, path = compile_text_model(model.estimator, check_inputs, name=f"{model.name}:{model.version}")
    logger.info("%s:%s predicts with %s", model.name, model.version, path)
    return replace(model, fast_predict=None if path == "scikit-learn" else predict)
