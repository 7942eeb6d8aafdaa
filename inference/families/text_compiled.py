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

Models that answer one request together (the intent classifier and the vertical detectors) often carry the same
fitted vectorizer, pickled once per model. `SharedVectorizers` finds the equal ones (same parameters, vocabulary
and idf) and gives them one `FastTfidf`, which keeps its last result per thread: a query is featurised once for
all the models that share a vectorizer, not once per model.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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


class SparseRows:
    """Rows of sparse features as the CSR arrays (values, columns, row starts), without a scipy matrix: building
    one validates its arrays (~16 µs), stacking two builds a third (~110 µs), more than featurising a query
    costs. The fast steps pass these along; a step they do not know gets `matrix()`."""

    __slots__ = ("_matrix", "data", "indices", "indptr", "n_features")

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_features: int) -> None:
        self.data, self.indices, self.indptr, self.n_features = data, indices, indptr, n_features
        self._matrix: sp.csr_matrix | None = None
        # Shared between models: read-only, so that no step can change what the next model is given.
        for array in (data, indices, indptr):
            array.flags.writeable = False

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def matrix(self) -> sp.csr_matrix:
        if self._matrix is None:
            self._matrix = sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, self.n_features))
        return self._matrix

    @staticmethod
    def hstack(blocks: Sequence[SparseRows]) -> SparseRows:
        """The blocks side by side, as `scipy.sparse.hstack` puts them: each row's columns block by block."""
        if len(blocks) == 1:
            return blocks[0]
        offsets = np.cumsum([0, *(block.n_features for block in blocks)])
        n_rows = blocks[0].n_rows
        row_of = np.concatenate([np.repeat(np.arange(n_rows), np.diff(block.indptr)) for block in blocks])
        order = np.argsort(row_of, kind="stable")  # by row; within a row, block by block, columns kept in order
        data = np.concatenate([block.data for block in blocks])[order]
        indices = np.concatenate(
            [block.indices + offset for block, offset in zip(blocks, offsets, strict=False)]
        ).astype(np.int32, copy=False)[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of, minlength=n_rows))]).astype(np.int32)
        return SparseRows(data, indices, indptr, int(offsets[-1]))

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """`matrix() @ weights` for dense `weights` (features x outputs), each row summed in column order."""
        out = np.zeros((self.n_rows, weights.shape[1]), dtype=np.result_type(self.data, weights))
        lengths = np.diff(self.indptr)
        filled = np.flatnonzero(lengths)
        if len(filled):
            terms = weights[self.indices] * self.data[:, None]
            out[filled] = np.add.reduceat(terms, self.indptr[filled], axis=0)
        return out


def as_matrix(features: Any) -> Any:
    """What a scikit-learn step expects: a scipy matrix in place of `SparseRows`."""
    return features.matrix() if isinstance(features, SparseRows) else features


class FastTfidf:
    """`TfidfVectorizer.transform` for a fitted vectorizer, without scikit-learn's input checks. It keeps the last
    texts it featurised per thread, so models sharing it featurise a request once."""

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
        self._last = threading.local()  # each batcher thread keeps its own last (texts, rows)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.rows(texts).matrix()

    def rows(self, texts: Sequence[str]) -> SparseRows:
        key = tuple(texts)
        if getattr(self._last, "texts", None) == key:
            last: SparseRows = self._last.rows
            return last
        rows = self._featurise(key)
        self._last.texts, self._last.rows = key, rows
        return rows

    def _featurise(self, texts: Sequence[str]) -> SparseRows:
        vocabulary = self.vocabulary
        indptr, indices, counts = [0], [], []
        for text in texts:
            found = Counter(map(vocabulary.get, self.analyze(text)))  # counted in C; None: not in the vocabulary
            found.pop(None, None)
            for column, count in sorted(found.items()):
                indices.append(column)
                counts.append(count)
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
        return SparseRows(values.astype(self.dtype, copy=False), columns, starts, self.n_features)


class SharedVectorizers:
    """One `FastTfidf` per distinct fitted vectorizer among the models given to it (equal parameters, vocabulary
    and idf: the same featurisation), so that models answering the same texts featurise them once."""

    def __init__(self) -> None:
        self._fast: dict[str, FastTfidf] = {}

    def __len__(self) -> int:
        return len(self._fast)

    def __iter__(self) -> Iterator[FastTfidf]:
        return iter(self._fast.values())

    def fast(self, vectorizer: TfidfVectorizer) -> FastTfidf:
        key = fingerprint(vectorizer)
        if key not in self._fast:
            self._fast[key] = FastTfidf(vectorizer)
        return self._fast[key]


def fingerprint(vectorizer: TfidfVectorizer) -> str:
    """Equal for two fitted vectorizers that featurise every text alike."""
    digest = hashlib.sha256(repr(sorted(vectorizer.get_params().items(), key=lambda item: item[0])).encode())
    digest.update(repr(sorted(vectorizer.vocabulary_.items())).encode())
    if vectorizer.use_idf:
        digest.update(np.asarray(vectorizer.idf_, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _transform(step: Any, shared: SharedVectorizers) -> Transform:
    """A fitted transformer's transform, fast where the step is recognised; it may return `SparseRows`."""
    if isinstance(step, TfidfVectorizer):
        return shared.fast(step).rows
    if isinstance(step, FeatureUnion) and not step.transformer_weights:
        parts = [_transform(part, shared) for _, part in step.transformer_list if part not in ("drop", None)]

        def union(texts: Any) -> Any:
            blocks = [part(texts) for part in parts]
            if all(isinstance(block, SparseRows) for block in blocks):
                return SparseRows.hstack(blocks)
            blocks = [as_matrix(block) for block in blocks]
            return sp.hstack(blocks, format="csr") if any(sp.issparse(b) for b in blocks) else np.hstack(blocks)

        return union
    if isinstance(getattr(step, "words_", None), TfidfVectorizer) or isinstance(
        getattr(step, "chars_", None), TfidfVectorizer
    ):
        fast = copy.copy(step)  # the store's object stays as it was loaded
        for name in ("words_", "chars_"):
            vectorizer = getattr(step, name, None)
            if isinstance(vectorizer, TfidfVectorizer):
                setattr(fast, name, shared.fast(vectorizer))
        transform: Callable[[Any], Any] = fast.transform
        return transform
    if isinstance(step, StandardScaler) and step.n_features_in_:
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def scaled(features: Any) -> Any:
            if isinstance(features, SparseRows) or sp.issparse(features):
                return step.transform(as_matrix(features))
            values = np.array(features, dtype=np.float64)
            if mean is not None:
                values -= mean
            if scale is not None:
                values /= scale
            return values

        return scaled
    return lambda features: step.transform(as_matrix(features))


def _linear(coef: np.ndarray, intercept: np.ndarray) -> Callable[[Any], np.ndarray]:
    weights = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T)
    bias = np.asarray(intercept, dtype=np.float64)

    def decision(features: Any) -> np.ndarray:
        if isinstance(features, SparseRows):
            return features.dot(weights) + bias
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
            return np.asarray(probabilities)

        return one_vs_rest
    return lambda features: estimator.predict_proba(as_matrix(features))


def _build(estimator: Any, shared: SharedVectorizers) -> PredictProba:
    if isinstance(estimator, Pipeline):
        transforms = [_transform(step, shared) for _, step in estimator.steps[:-1] if step not in ("passthrough", None)]
        final = _final(estimator.steps[-1][1])

        def pipeline(inputs: Sequence[Any]) -> np.ndarray:
            features: Any = list(inputs)
            for transform in transforms:
                features = transform(features)
            return final(features)

        return pipeline
    return _final(estimator)


def compile_text_model(
    estimator: Any, check_inputs: Sequence[Any], *, name: str, shared: SharedVectorizers | None = None
) -> tuple[PredictProba, str]:
    """A fast `predict_proba` for `estimator` if it gives the same probabilities on `check_inputs`, else the
    estimator's own; and which of the two, said for the log. Vectorizers equal to one already in `shared` use
    that one's featurisation."""
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        reference = np.asarray(estimator.predict_proba(list(check_inputs)), dtype=np.float64)
    try:
        fast = _build(estimator, shared if shared is not None else SharedVectorizers())
        candidate = np.asarray(fast(list(check_inputs)), dtype=np.float64)
        difference = float(np.max(np.abs(candidate - reference))) if candidate.shape == reference.shape else np.inf
    except Exception as err:  # an unforeseen estimator: scikit-learn's own path stays correct
        logger.warning("%s: fast text path not used (%s: %s)", name, type(err).__name__, err)
        return estimator.predict_proba, "scikit-learn"
    if difference > TOLERANCE:
        logger.warning("%s: fast text path differs from scikit-learn by %.3g; not used", name, difference)
        return estimator.predict_proba, "scikit-learn"
    return fast, "compiled"


def with_fast_path(
    model: TextModel, neutral_inputs: Sequence[Any], shared: SharedVectorizers | None = None
) -> TextModel:
    """`model` with its fast predict_proba when that gives the estimator's probabilities on the model's stored
    samples and `neutral_inputs`; featurising with the vectorizers in `shared` where it has equal ones."""
    samples = model.metadata.get("samples") or {}
    check_inputs = [*(samples.get("inputs") or []), *neutral_inputs]
    predict, path = compile_text_model(
        model.estimator, check_inputs, name=f"{model.name}:{model.version}", shared=shared
    )
    logger.info("%s:%s predicts with %s", model.name, model.version, path)
    return replace(model, fast_predict=None if path == "scikit-learn" else predict)
