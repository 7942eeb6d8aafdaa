"""Teacher ratings against the scores given: a real model correlates well above the alert threshold, a model
trained on shuffled labels falls below it; on SQLite and on a real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inference.artifacts import load_skill_model
from inference.catalogue import SKILLS
from inference.ground_truth import PredictionLog, correlations, store_ratings
from inference.scoring import score_rows
from inference.storage import engine_for
from inference.synthetic import generate_students
from train.skills import SkillTrainingParams, train_skills

SKILL = "collaboration"


@pytest.fixture(scope="module")
def broken_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("broken")
    train_skills("v0.0.1-broken", SkillTrainingParams(n_students=3000, n_estimators=40, shuffle_labels=True), out)
    return load_skill_model(out / SKILL, version="v0.0.1-broken")


def log_scores_and_ratings(engine, model, sample, *, rated_days_ago=1.0):
    log = PredictionLog(engine)
    rows = np.array(
        [
            [
                features.get(name, default)
                for name, default in zip(model.feature_names, model.imputation_defaults, strict=True)
            ]
            for features in sample.feature_dicts()
        ]
    )
    scores = score_rows(model, rows).score
    for student_id, score in zip(sample.student_ids, scores, strict=True):
        log.add(student_id, SKILL, model.version, float(score))
    assert log.flush() == len(sample.student_ids)
    skill_index = SKILLS.index(SKILL)  # ratings columns follow the catalogue's skill order
    rated_at = datetime.now(UTC) - timedelta(days=rated_days_ago)
    store_ratings(
        engine,
        [
            {"student_id": student_id, "skill": SKILL, "rating": float(rating), "rated_at": rated_at}
            for student_id, rating in zip(sample.student_ids, sample.ratings[:, skill_index], strict=True)
        ],
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_real_model_correlates_and_a_broken_one_raises_the_alert(
    database, stable_models, broken_model, tmp_path, request
):
    url = f"sqlite:///{tmp_path / 'ratings.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    sample = generate_students(400, seed=601)
    log_scores_and_ratings(engine, stable_models[SKILL], sample)
    log_scores_and_ratings(engine, broken_model, sample)
    found = {entry.model_version: entry for entry in correlations(engine, window_days=30, threshold=0.5, min_pairs=20)}
    good, broken = found["v1.0.0"], found["v0.0.1-broken"]
    assert good.pairs == 400 and good.pearson_r > 0.6 and not good.alert
    assert broken.pairs == 400 and broken.pearson_r < 0.5 and broken.alert


def test_ratings_outside_the_window_and_too_few_pairs_give_no_r(stable_models, tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'window.db'}")
    log_scores_and_ratings(engine, stable_models[SKILL], generate_students(50, seed=602), rated_days_ago=40)
    assert correlations(engine, window_days=30, threshold=0.5, min_pairs=20) == []
    log_scores_and_ratings(engine, stable_models[SKILL], generate_students(10, seed=603))
    (entry,) = correlations(engine, window_days=30, threshold=0.5, min_pairs=20)
    assert entry.pairs == 10 and entry.pearson_r is None and not entry.alert


def test_a_full_prediction_log_drops_and_counts_instead_of_growing(tmp_path):
    log = PredictionLog(engine_for(f"sqlite:///{tmp_path / 'full.db'}"), capacity=5)
    for index in range(8):
        log.add(f"s{index}", SKILL, "v1", 0.5)
    assert log.dropped == 3 and log.flush() == 5
