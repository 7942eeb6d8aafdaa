"""The batch scorer scores skills and features it has never seen. Two skill models are trained here on
scikit-learn's data sets with their own feature names (wine: 'od280/od315_of_diluted_wines'; breast cancer:
'mean radius', and one renamed to hold a quote and a percent sign), written in the artifact format, imported into
the model store and served through INFERENCE_SKILLS; `python -m inference.batch score` then scores a population
into SQLite and PostgreSQL exactly as the models' own pipelines do (`predict_proba`, to 1e-6)."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import inspect, select
from xgboost import XGBClassifier

from inference.batch.chunks import served_feature_names
from inference.batch.database import BatchDatabase
from inference.families.skills.artifacts import write_skill_artifact
from inference.families.skills.family import import_skill_artifacts, pinned_skill_models
from inference.families.skills.schema import FeatureSchema, FeatureSpec
from inference.settings import Settings
from inference.storage import engine_for, scoring_failures
from tests.utils.batch import run_batch, stored_assessments
from tests.utils.postgres import throwaway_database

VERSION = "v0.1.0"  # below the demo versions: never the store's latest
SLASHED = "od280/od315_of_diluted_wines"
QUOTED = 'mean concave points ("%")'
N_STUDENTS = 600


class OwnModel:
    """A team's model: a scikit-learn pipeline over its own features, and the schema it is imported with."""

    def __init__(self, skill, data, target, feature_names):
        self.skill = skill
        self.schema = FeatureSchema(
            tuple(
                FeatureSpec(name=name, default=float(np.median(data[:, index])), minimum=0.0, unit="as measured")
                for index, name in enumerate(feature_names)
            )
        )
        self.pipeline: Pipeline = make_pipeline(
            StandardScaler(), XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.3, random_state=0)
        ).fit(data, target)
        self.data = data

    @property
    def feature_names(self):
        return self.schema.names

    def write_artifact(self, directory):
        scaler, classifier = self.pipeline[0], self.pipeline[-1]
        write_skill_artifact(
            directory / self.skill,
            booster=classifier.get_booster(),
            mean=scaler.mean_,
            scale=scaler.scale_,
            metadata={"skill": self.skill, **self.schema.to_metadata()},
        )

    def expected_scores(self, values, missing):
        """`predict_proba` of the pipeline on the rows, a missing value imputed with the schema's default."""
        return self.pipeline.predict_proba(np.where(missing, self.schema.defaults(), values))[:, 1]


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    wine, cancer = load_wine(), load_breast_cancer()
    cancer_names = [QUOTED if name == "mean concave points" else str(name) for name in cancer.feature_names]
    assert SLASHED in wine.feature_names and "mean radius" in cancer_names
    models = {
        "cultivar": OwnModel("cultivar", wine.data, (wine.target == 0).astype(int), list(wine.feature_names)),
        "malignancy": OwnModel("malignancy", cancer.data, (cancer.target == 0).astype(int), cancer_names),
    }
    artifacts = tmp_path_factory.mktemp("own-models")
    for model in models.values():
        model.write_artifact(artifacts)
    import_skill_artifacts(artifacts, version=VERSION)
    return models


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'own.db'}"
        return
    with throwaway_database() as url:
        yield url


def population(own_models):
    """Each student holds a wine row and a breast cancer row, some values not measured, two students bad for the
    wine model: one with none of its features, one with a value below its range."""
    rng = np.random.default_rng(3)
    cultivar, malignancy = own_models["cultivar"], own_models["malignancy"]
    wine_rows = cultivar.data[rng.integers(0, len(cultivar.data), N_STUDENTS)]
    cancer_rows = malignancy.data[rng.integers(0, len(malignancy.data), N_STUDENTS)]
    features = {
        **dict(zip(cultivar.feature_names, wine_rows.T, strict=True)),
        **dict(zip(malignancy.feature_names, cancer_rows.T, strict=True)),
    }
    for values in features.values():
        values[rng.random(N_STUDENTS) < 0.05] = np.nan  # not measured: NULL
    for name in cultivar.feature_names:
        features[name][0] = np.nan
    features[SLASHED][1] = -1.0
    return [f"s-{index:04d}" for index in range(N_STUDENTS)], features


def test_a_skill_set_and_features_never_seen_before_score_as_their_own_pipelines(own_models, database_url):
    skills_env = {"INFERENCE_SKILLS": json.dumps(list(own_models)), "INFERENCE_SKILLS_VERSION": VERSION}
    served = pinned_skill_models(Settings(skills=list(own_models), skills_version=VERSION))
    names = served_feature_names(served)
    assert names == (*own_models["cultivar"].feature_names, *own_models["malignancy"].feature_names)
    students, features = population(own_models)
    engine = engine_for(database_url)
    try:
        database = BatchDatabase(engine, names)
        assert [column["name"] for column in inspect(engine).get_columns("student_features")] == [
            "student_id",
            *names,
            "updated_at",
        ]
        database.upsert_students(
            students, np.column_stack([features[name] for name in names]), updated_at=datetime.now(UTC)
        )

        scored = run_batch("score", "--chunk-size", "128", database_url=database_url, env=skills_env)
        assert scored.returncode == 0, scored.stdout[-3000:]
        assert f"{N_STUDENTS:,} students read, {2 * N_STUDENTS - 2:,} assessments written" in scored.stdout

        stored = stored_assessments(engine)
        assert {row.model_version for row in stored.values()} == {VERSION}
        compared = 0
        for skill, model in own_models.items():
            values = np.column_stack([features[name] for name in model.feature_names])
            expected = model.expected_scores(values, np.isnan(values))
            for index, student in enumerate(students):
                if skill == "cultivar" and index in (0, 1):
                    assert (student, skill) not in stored
                    continue
                assert abs(stored[student, skill].score - expected[index]) <= 1e-6, (student, skill)
                compared += 1
        assert compared == 2 * N_STUDENTS - 2

        with engine.connect() as connection:
            failures = {row.student_id: row for row in connection.execute(select(scoring_failures))}
        assert set(failures) == {"s-0000", "s-0001"}
        assert failures["s-0000"].code == "no_known_features"
        assert failures["s-0001"].message.startswith(f"features.{SLASHED}: -1 is outside the valid range [0, inf]")

        again = run_batch("score", "--mode", "incremental", database_url=database_url, env=skills_env)
        assert again.returncode == 0 and "0 students read, 0 assessments written" in again.stdout
    finally:
        engine.dispose()
