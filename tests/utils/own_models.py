"""A team's own models, trained outside the package on data sets that ship with scikit-learn, with feature names and
labels the project has never seen, and exported the ways teams export them (docs/models.md lists the formats).

Each factory writes a folder for `import_models.py` and returns the original in-memory model's answers, which the
tests compare with what the importer stored and what the service answers.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import xgboost as xgb
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import VotingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

TREES = 40


@dataclass(frozen=True)
class OwnSkill:
    """A skill model as a team exported it: its folder, the feature order, held-out rows and the original's
    P(class 1) for any rows."""

    name: str
    folder: Path
    feature_names: list[str]
    rows: np.ndarray  # held-out rows, in feature order
    probability: Callable[[np.ndarray], np.ndarray]
    training_mean: np.ndarray


def _transform(scaler: StandardScaler, rows: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # fitted "on a DataFrame", given a bare array
        warnings.simplefilter("ignore", UserWarning)
        return scaler.transform(rows)


def _split(data: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(5).permutation(len(data))
    test, train = order[:30], order[30:]
    return data[train], target[train], data[test], target[test]


def pickled_classifier(root: Path, name: str = "tumour_malignancy") -> OwnSkill:
    """Breast cancer: model.pkl (an XGBClassifier, early-stopped) with scaler.pkl; the feature order is the
    scaler's feature_names_in_ (what fitting on a DataFrame leaves: pandas is not installed here, so set by hand)."""
    data = datasets.load_breast_cancer()
    x_train, y_train, x_test, _ = _split(data.data, data.target)
    scaler = StandardScaler().fit(x_train)
    scaled = scaler.transform(x_train)
    scaler.feature_names_in_ = np.array(data.feature_names, dtype=object)
    classifier = xgb.XGBClassifier(n_estimators=TREES * 2, max_depth=3, early_stopping_rounds=5, n_jobs=1)
    classifier.fit(scaled[:400], y_train[:400], eval_set=[(scaled[400:], y_train[400:])], verbose=False)
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(classifier))
    (folder / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    return OwnSkill(
        name,
        folder,
        list(data.feature_names),
        x_test,
        lambda rows: classifier.predict_proba(_transform(scaler, rows))[:, 1],
        scaler.mean_,
    )


def joblib_pipeline(root: Path, name: str = "wine_origin") -> OwnSkill:
    """Wine (cultivar 1 or not): pipeline.joblib, a Pipeline of a StandardScaler and an XGBClassifier fitted on a
    bare array; the feature order is features.json, a list of names."""
    data = datasets.load_wine()
    x_train, y_train, x_test, _ = _split(data.data, (data.target == 1).astype(int))
    pipeline = make_pipeline(StandardScaler(), xgb.XGBClassifier(n_estimators=TREES, max_depth=2, n_jobs=1))
    pipeline.fit(x_train, y_train)
    folder = root / name
    folder.mkdir(parents=True)
    joblib.dump(pipeline, folder / "pipeline.joblib")
    (folder / "features.json").write_text(json.dumps(list(data.feature_names)))
    return OwnSkill(
        name,
        folder,
        list(data.feature_names),
        x_test,
        lambda rows: pipeline.predict_proba(rows)[:, 1],
        pipeline[0].mean_,
    )


def pickled_booster(root: Path, name: str = "digit_parity") -> OwnSkill:
    """Digits (even or odd): model.pkl, an xgboost Booster trained with named features, and a StandardScaler that
    does not centre (with_mean=False)."""
    data = datasets.load_digits()
    x_train, y_train, x_test, _ = _split(data.data, (data.target % 2 == 0).astype(int))
    scaler = StandardScaler(with_mean=False).fit(x_train)
    names = list(data.feature_names)
    matrix = xgb.DMatrix(scaler.transform(x_train), label=y_train, feature_names=names)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, matrix, TREES)
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(booster))
    (folder / "scaler.pkl").write_bytes(pickle.dumps(scaler))

    def probability(rows: np.ndarray) -> np.ndarray:
        margin = booster.predict(xgb.DMatrix(scaler.transform(rows), feature_names=names), output_margin=True)
        return 1.0 / (1.0 + np.exp(-margin.astype(np.float64)))

    return OwnSkill(name, folder, names, x_test, probability, scaler.mean_)


def json_model(root: Path, name: str = "disease_progression") -> OwnSkill:
    """Diabetes (progression above the median): model.json and scaler.json, with features.json objects giving each
    feature's unit, range, description and imputation default."""
    data = datasets.load_diabetes()
    target = (data.target > np.median(data.target)).astype(int)
    x_train, y_train, x_test, _ = _split(data.data, target)
    scaler = StandardScaler().fit(x_train)
    classifier = xgb.XGBClassifier(n_estimators=TREES, max_depth=2, n_jobs=1).fit(scaler.transform(x_train), y_train)
    folder = root / name
    folder.mkdir(parents=True)
    classifier.get_booster().save_model(folder / "model.json")
    (folder / "scaler.json").write_text(json.dumps({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}))
    features = [
        {
            "name": feature,
            "unit": "standardised",
            "minimum": -1.0,
            "maximum": 1.0,
            "description": f"The data set's {feature}, mean-centred and scaled.",
            "default": float(np.median(x_train[:, index])),
        }
        for index, feature in enumerate(data.feature_names)
    ]
    (folder / "features.json").write_text(json.dumps(features))
    return OwnSkill(
        name,
        folder,
        list(data.feature_names),
        x_test,
        lambda rows: classifier.predict_proba(scaler.transform(rows))[:, 1],
        scaler.mean_,
    )


def _defaults(names: list[str], rows: np.ndarray) -> list[dict[str, object]]:
    """features.json objects naming each feature with its median as the imputation default."""
    return [{"name": name, "default": float(np.median(rows[:, index]))} for index, name in enumerate(names)]


def unscaled_classifier(root: Path, name: str = "cultivar_zero") -> OwnSkill:
    """Wine (cultivar 0 or not): model.pkl alone, an XGBClassifier trained on the raw features (no scaler: the
    commonest tree-model export), with features.json giving names and defaults."""
    data = datasets.load_wine()
    x_train, y_train, x_test, _ = _split(data.data, (data.target == 0).astype(int))
    classifier = xgb.XGBClassifier(n_estimators=TREES, max_depth=2, n_jobs=1).fit(x_train, y_train)
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(classifier))
    (folder / "features.json").write_text(json.dumps(_defaults(list(data.feature_names), x_train)))
    return OwnSkill(
        name,
        folder,
        list(data.feature_names),
        x_test,
        lambda rows: classifier.predict_proba(rows)[:, 1],
        np.mean(x_train, axis=0),
    )


def unscaled_json(root: Path, name: str = "malignancy_raw") -> OwnSkill:
    """Breast cancer: model.json alone (a Booster trained on raw features, saved in XGBoost's format, without
    scaler.json), with features.json."""
    data = datasets.load_breast_cancer()
    x_train, y_train, x_test, _ = _split(data.data, data.target)
    names = [re.sub(r"\W+", "_", feature) for feature in data.feature_names]
    matrix = xgb.DMatrix(x_train, label=y_train, feature_names=names)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, matrix, TREES)
    folder = root / name
    folder.mkdir(parents=True)
    booster.save_model(folder / "model.json")
    (folder / "features.json").write_text(json.dumps(_defaults(names, x_train)))

    def probability(rows: np.ndarray) -> np.ndarray:
        margin = booster.predict(xgb.DMatrix(rows, feature_names=names), output_margin=True)
        return 1.0 / (1.0 + np.exp(-margin.astype(np.float64)))

    return OwnSkill(name, folder, names, x_test, probability, np.mean(x_train, axis=0))


SKILL_FACTORIES = (pickled_classifier, joblib_pipeline, pickled_booster, json_model, unscaled_classifier, unscaled_json)


# --- text models: which data set's description a sentence comes from ---------------------------------------------

DATA_SETS = ("iris", "wine", "breast_cancer", "diabetes", "digits", "linnerud")
VERTICALS = ("has_number", "has_bracket", "wordy")


def described_sentences() -> tuple[list[str], list[str]]:
    """The lines of the data sets' descriptions (four words or more) and the data set each comes from."""
    texts, labels = [], []
    for name in DATA_SETS:
        for line in getattr(datasets, f"load_{name}")().DESCR.splitlines():
            if len(line.split()) >= 4:
                texts.append(line.strip())
                labels.append(name)
    return texts, labels


def vertical_sets(texts: list[str]) -> list[set[str]]:
    return [
        {
            vertical
            for vertical, present in zip(
                VERTICALS, (re.search(r"\d", text), re.search(r"[(\[]", text), len(text) > 60), strict=True
            )
            if present
        }
        for text in texts
    ]


@dataclass(frozen=True)
class OwnIntent:
    folder: Path  # classic/ (model.pkl), ensemble/ (pipeline.joblib), verticals/ (model.joblib + metadata.json)
    classic: Pipeline
    ensemble: Pipeline
    verticals: Pipeline
    thresholds: dict[str, float]
    texts: list[str]  # some of the training sentences, and some the models never saw


def intent_models(root: Path) -> OwnIntent:
    texts, labels = described_sentences()
    classic = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000)).fit(texts, labels)
    voters = [
        ("logistic", LogisticRegression(max_iter=1000)),
        ("bayes", ComplementNB()),
        ("sgd", SGDClassifier(loss="log_loss", random_state=0)),
    ]
    ensemble = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)), VotingClassifier(voters, voting="soft")
    ).fit(texts, labels)
    indicators = MultiLabelBinarizer(classes=list(VERTICALS)).fit_transform(vertical_sets(texts))
    verticals = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)), OneVsRestClassifier(LogisticRegression())
    ).fit(texts, indicators)
    thresholds = {"has_number": 0.4, "has_bracket": 0.5, "wordy": 0.6}
    folder = root / "intent"
    for sub in ("classic", "ensemble", "verticals"):
        (folder / sub).mkdir(parents=True)
    (folder / "classic" / "model.pkl").write_bytes(pickle.dumps(classic))
    joblib.dump(ensemble, folder / "ensemble" / "pipeline.joblib")
    joblib.dump(verticals, folder / "verticals" / "model.joblib")
    (folder / "verticals" / "metadata.json").write_text(json.dumps({"thresholds": thresholds}))
    unseen = ["how many petals does this flower have", "a wine made of three grapes (red)", "pixels of a scanned 7"]
    return OwnIntent(folder, classic, ensemble, verticals, thresholds, texts[::17] + unseen)


@dataclass(frozen=True)
class OwnTextPair:
    folder: Path  # textpair/ (model.joblib + metadata.json)
    model: Pipeline
    pairs: list[list[str]]


SAME_SOURCE, OTHER_SOURCE = "same_source", "other_source"


def textpair_model(root: Path) -> OwnTextPair:
    """Do two sentences describe the same data set? A ColumnTransformer of one TF-IDF per text, then a logistic
    regression; it takes pairs as [text1, text2] lists."""
    texts, labels = described_sentences()
    rng = np.random.default_rng(3)
    first, second = rng.integers(0, len(texts), 600), rng.integers(0, len(texts), 600)
    pairs = [[texts[i], texts[j]] for i, j in zip(first, second, strict=True)]
    same = [SAME_SOURCE if labels[i] == labels[j] else OTHER_SOURCE for i, j in zip(first, second, strict=True)]
    columns = ColumnTransformer([("text1", TfidfVectorizer(), 0), ("text2", TfidfVectorizer(), 1)])
    model = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(pairs, same)
    folder = root / "pairs" / "textpair"
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "metadata.json").write_text(json.dumps({"metrics": {"accuracy": float(model.score(pairs, same))}}))
    return OwnTextPair(folder.parent, model, [*pairs[:12], ["iris flowers", "a flower of the iris family"]])
