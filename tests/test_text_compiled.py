"""The fast predict_proba of the text families gives scikit-learn's probabilities: for the demo models, for the
pieces it rebuilds in their variants, and it steps aside (scikit-learn serves) when it cannot prove that."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from inference.families import text_compiled
from inference.families.text_compiled import FastTfidf, compile_text_model, with_fast_path
from inference.store.text_artifacts import load_stored_text_model
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries

QUERIES = generate_queries(400, seed=77).texts
EDGE_TEXTS = ["", "!!! ???", "Ünïcödé café straße", "a", "the the the the", "x" * 500]
TRAIN = generate_queries(600, seed=5)


@pytest.mark.parametrize("name", ["intent-classic", "intent-verticals", "intent-ensemble"])
def test_the_intent_models_predict_as_scikit_learn_does(text_reports, name):
    model = load_stored_text_model(name, "v1.0.0")
    fast = with_fast_path(model, QUERIES[:2])
    assert fast.fast_predict is not None
    for inputs in (QUERIES[:1], QUERIES[:17], QUERIES, EDGE_TEXTS):
        expected = model.estimator.predict_proba(list(inputs))
        assert np.allclose(fast.predict_proba(list(inputs)), expected, atol=1e-9, rtol=0)


def test_the_text_pair_model_predicts_as_scikit_learn_does(text_reports):
    model = load_stored_text_model("textpair", "v1.0.0")
    pairs = [list(pair) for pair in generate_pairs(300, seed=78).pairs] + [["", ""], ["same", "same"]]
    fast = with_fast_path(model, pairs[:2])
    assert fast.fast_predict is not None
    for inputs in (pairs[:1], pairs):
        assert np.allclose(fast.predict_proba(inputs), model.estimator.predict_proba(inputs), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2},
        {"analyzer": "char_wb", "ngram_range": (2, 4)},
        {"analyzer": "char", "ngram_range": (1, 3), "lowercase": False},
        {"binary": True, "use_idf": False},
        {"norm": None, "stop_words": "english"},
        {"smooth_idf": False, "max_features": 50},
    ],
)
def test_the_fast_tfidf_is_the_vectorizers_transform(options):
    vectorizer = TfidfVectorizer(**options).fit(TRAIN.texts)
    for texts in (QUERIES[:1], QUERIES, EDGE_TEXTS):
        expected = vectorizer.transform(texts)
        got = FastTfidf(vectorizer).transform(texts)
        assert sp.isspmatrix_csr(got) and got.shape == expected.shape and got.dtype == expected.dtype
        assert abs(got - expected).max() <= 1e-12 if expected.nnz else got.nnz == 0


def test_an_l1_norm_is_refused_and_scikit_learn_serves():
    pipeline = make_pipeline(TfidfVectorizer(norm="l1"), LogisticRegression(max_iter=500))
    pipeline.fit(TRAIN.texts, TRAIN.intents)
    predict, path = compile_text_model(pipeline, QUERIES[:5], name="l1")
    assert path == "scikit-learn" and predict == pipeline.predict_proba


def multilabel(n_labels: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((len(TRAIN.texts), n_labels)) < 0.4).astype(int)


@pytest.mark.parametrize(
    ("final", "targets"),
    [
        (LogisticRegression(max_iter=500), TRAIN.intents),  # multinomial
        (LogisticRegression(max_iter=500), [intent == TRAIN.intents[0] for intent in TRAIN.intents]),  # binary
        (OneVsRestClassifier(LogisticRegression(max_iter=500)), multilabel(4)),  # multi-label
        (OneVsRestClassifier(LogisticRegression(max_iter=500)), TRAIN.intents),  # multi-class: rows normalised
    ],
)
def test_linear_final_steps_give_scikit_learns_probabilities(final, targets):
    features = FeatureUnion([("words", TfidfVectorizer()), ("chars", TfidfVectorizer(analyzer="char_wb"))])
    pipeline = Pipeline([("features", features), ("model", final)]).fit(TRAIN.texts, targets)
    predict, path = compile_text_model(pipeline, QUERIES[:5], name="linear")
    assert path == "compiled"
    assert np.allclose(predict(QUERIES), pipeline.predict_proba(QUERIES), atol=1e-9, rtol=0)


class Lengths(BaseEstimator, ClassifierMixin):
    """A final step the compiler does not know: it must be called as it is."""

    def fit(self, features, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, features):
        share = np.asarray(features.sum(axis=1)).ravel() / (1 + np.asarray(features.sum(axis=1)).ravel())
        return np.column_stack([1 - share, share])


def test_steps_it_does_not_know_are_called_as_they_are():
    pipeline = make_pipeline(TfidfVectorizer(), StandardScaler(with_mean=False), Lengths())
    pipeline.fit(TRAIN.texts, [0, 1] * (len(TRAIN.texts) // 2))
    predict, path = compile_text_model(pipeline, QUERIES[:5], name="unknown")
    assert path == "compiled"
    assert np.allclose(predict(QUERIES), pipeline.predict_proba(QUERIES), atol=1e-9, rtol=0)


def test_a_fast_path_that_differs_is_not_used(text_reports, monkeypatch):
    model = load_stored_text_model("intent-classic", "v1.0.0")
    monkeypatch.setattr(text_compiled, "TOLERANCE", -1.0)  # no difference is small enough
    assert with_fast_path(model, QUERIES[:3]).fast_predict is None


def test_a_version_of_the_intent_models_featurises_a_query_once_for_all_its_models(text_reports):
    """The trainer fits the vertical detectors over the ensemble's features (whose word n-grams are the
    classic's): loaded together, the three models share two vectorizers, not five."""
    shared = text_compiled.SharedVectorizers()
    models = {
        name: with_fast_path(load_stored_text_model(name, "v1.0.0"), QUERIES[:2], shared)
        for name in ("intent-classic", "intent-ensemble", "intent-verticals")
    }
    assert len(shared) == 2
    words, chars = shared
    for model in models.values():
        assert model.fast_predict is not None
        assert np.allclose(model.predict_proba(QUERIES[:9]), model.estimator.predict_proba(QUERIES[:9]), atol=1e-9)
    # One query through the classic and then the verticals: the second finds it featurised.
    models["intent-classic"].predict_proba([QUERIES[50]])
    first = words.rows([QUERIES[50]])
    models["intent-verticals"].predict_proba([QUERIES[50]])
    assert words.rows([QUERIES[50]]) is first
    assert chars.rows([QUERIES[50]]) is chars.rows((QUERIES[50],))


def test_shared_features_are_read_only_and_kept_per_thread():
    import threading

    fast = FastTfidf(TfidfVectorizer().fit(TRAIN.texts))
    rows = fast.rows(QUERIES[:3])
    with pytest.raises(ValueError, match="read-only"):
        rows.data[0] = 0.0
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(fast.rows(QUERIES[:3])))
    thread.start()
    thread.join()
    assert elsewhere[0] is not rows and np.array_equal(elsewhere[0].data, rows.data)
    assert fast.rows(QUERIES[:3]) is rows and fast.rows(QUERIES[:4]) is not rows


def test_vectorizers_fitted_apart_are_not_taken_for_one():
    shared = text_compiled.SharedVectorizers()
    one = shared.fast(TfidfVectorizer().fit(TRAIN.texts))
    assert shared.fast(TfidfVectorizer().fit(TRAIN.texts)) is one  # fitted alike: the same featurisation
    assert shared.fast(TfidfVectorizer().fit(TRAIN.texts[:300])) is not one  # another vocabulary
    assert shared.fast(TfidfVectorizer(sublinear_tf=True).fit(TRAIN.texts)) is not one  # another weighting
    assert len(shared) == 3


def test_sparse_rows_stack_and_multiply_as_scipy_does():
    words = FastTfidf(TfidfVectorizer().fit(TRAIN.texts))
    chars = FastTfidf(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)).fit(TRAIN.texts))
    weights = np.random.default_rng(3).normal(size=(words.n_features + chars.n_features, 4))
    for texts in (QUERIES[:1], QUERIES[:40], ["", *QUERIES[:2], "", "!!!"]):  # rows without a known token too
        blocks = [words.rows(texts), chars.rows(texts)]
        stacked = text_compiled.SparseRows.hstack(blocks)
        expected = sp.hstack([block.matrix() for block in blocks], format="csr")
        assert (stacked.matrix() != expected).nnz == 0 and stacked.matrix().shape == expected.shape
        assert np.allclose(stacked.dot(weights), expected @ weights, atol=1e-12, rtol=0)
    alone = text_compiled.SparseRows.hstack([words.rows(QUERIES[5:6]), chars.rows(QUERIES[5:6])]).dot(weights)
    batched = text_compiled.SparseRows.hstack([words.rows(QUERIES[:9]), chars.rows(QUERIES[:9])]).dot(weights)
    assert np.array_equal(alone[0], batched[5])  # a text scores the same alone or in a batch, to the bit
