"""Teacher ratings against the scores given: a real model correlates well above the alert threshold, a model
trained on shuffled labels falls below it; on SQLite and on a real PostgreSQL."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from inference.errors import InvalidRequest, UnknownSkill
from inference.families.skills.artifacts import load_skill_model
from inference.families.skills.scoring import score_rows
from inference.monitoring.ground_truth import PredictionLog, correlations, store_ratings
from inference.monitoring.observer import FUTURE_TOLERANCE, check_ratings
from inference.schemas import RatingsRequest
from inference.storage import DeferredEngine, engine_for, predictions
from tests.utils.prometheus import rows_dropped
from train.data.catalogue import SKILLS
from train.data.students import generate_students
from train.skills import SkillTrainingParams, train_skills

pytestmark = pytest.mark.clock  # ratings and scores within a window of days before now

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


def buffer_full_drops():
    return rows_dropped("predictions", "buffer_full")


def test_a_full_prediction_log_drops_and_counts_instead_of_growing(tmp_path):
    log = PredictionLog(engine_for(f"sqlite:///{tmp_path / 'full.db'}"), capacity=5)
    before = buffer_full_drops()
    for index in range(8):
        log.add(f"s{index}", SKILL, "v1", 0.5)
    assert log.dropped == 3 and log.flush() == 5
    assert buffer_full_drops() == before + 3  # in /metrics too, not only in the log


class HeldThenFailingEngine:
    """An engine whose write waits until the test lets it go, then fails as a lost database would."""

    def __init__(self):
        self.writing = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def begin(self):
        self.writing.set()
        assert self.release.wait(timeout=30)
        raise OperationalError("INSERT", {}, ConnectionError("the database went away"))
        yield


def test_a_failed_flush_keeps_the_oldest_rows_within_the_capacity_and_counts_every_drop(tmp_path):
    engine = HeldThenFailingEngine()
    log = PredictionLog(engine, capacity=5)
    for index in range(3):
        log.add(f"s{index}", SKILL, "v1", 0.5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        flush = pool.submit(log.flush)
        assert engine.writing.wait(timeout=30)
        for index in range(3, 7):  # while the 3 rows are being written, only 2 more fit
            log.add(f"s{index}", SKILL, "v1", 0.5)
        engine.release.set()
        with pytest.raises(OperationalError):
            flush.result(timeout=30)
    assert log.dropped == 2
    log.add("s7", SKILL, "v1", 0.5)  # the failed rows came back: the log is full
    assert log.dropped == 3
    log.engine = engine_for(f"sqlite:///{tmp_path / 'after.db'}")
    assert log.flush() == 5  # 5 written + 3 dropped: every one of the 8 rows accounted for
    with log.engine.connect() as connection:
        written = connection.execute(select(predictions.c.student_id).order_by(predictions.c.id)).scalars().all()
    assert written == ["s0", "s1", "s2", "s3", "s4"]  # the newest were dropped, as when the log is full


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_latest_rating_is_the_one_rated_last_not_the_one_received_last(database, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'latest.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    skill, version = "self_regulation", f"v1-{uuid.uuid4().hex[:8]}"  # its own pairs in a shared database
    rng = np.random.default_rng(604)
    ratings = rng.uniform(1, 5, size=60).round(1)
    students = [f"latest-{index}" for index in range(60)]
    log = PredictionLog(engine)
    for student_id, rating in zip(students, ratings, strict=True):
        log.add(student_id, skill, version, float(rating) / 5)  # scores that follow this week's ratings exactly
    log.flush()
    now = datetime.now(UTC)

    def rate(values, days_ago):
        rows = [
            {
                "student_id": student_id,
                "skill": skill,
                "rating": float(value),
                "rated_at": now - timedelta(days=days_ago),
            }
            for student_id, value in zip(students, values, strict=True)
        ]
        store_ratings(engine, rows)

    rate(ratings, days_ago=1)
    rate(6 - ratings, days_ago=20)  # last term's, the opposite, received after this week's
    (found,) = [
        entry
        for entry in correlations(engine, window_days=30, threshold=0.5, min_pairs=20)
        if entry.model_version == version
    ]
    assert found.pairs == 60 and found.pearson_r == pytest.approx(1.0)


def test_ratings_and_the_prediction_log_reach_a_database_that_comes_back_without_a_restart(tmp_path):
    folder = tmp_path / "database"  # not there yet: SQLite cannot open the file
    engine = DeferredEngine(f"sqlite:///{folder / 'inference.db'}")
    log = PredictionLog(engine)
    log.add("s-back", SKILL, "v1", 0.7)
    rating = {"student_id": "s-back", "skill": SKILL, "rating": 4.0, "rated_at": datetime.now(UTC)}
    for use in (engine.open, lambda: store_ratings(engine, [rating]), log.flush):
        with pytest.raises(FileNotFoundError):  # the folder of the SQLite file is missing
            use()
    folder.mkdir()  # the database is reachable from now on: the same objects use it at their next call
    assert store_ratings(engine, [rating]).stored == 1
    assert log.flush() == 1 and log.dropped == 0
    (found,) = correlations(engine, window_days=30, threshold=0.5, min_pairs=20)
    assert (found.skill, found.model_version, found.pairs) == (SKILL, "v1", 1)


def rated(rated_at):
    return RatingsRequest.model_validate(
        {"ratings": [{"student_id": "s", "skill": SKILL, "rating": 3, "rated_at": rated_at}]}
    )


def test_rating_times_are_stored_in_utc_and_may_be_a_few_minutes_ahead():
    (row,) = check_ratings(rated("2026-01-10T10:00:00+02:00"), [SKILL])
    assert row["rated_at"].isoformat() == "2026-01-10T08:00:00+00:00"  # SQLite would keep 10:00 and drop the zone
    (row,) = check_ratings(rated("2026-01-10T10:00:00"), [SKILL])
    assert row["rated_at"].isoformat() == "2026-01-10T10:00:00+00:00"
    slightly_ahead = datetime.now(UTC) + FUTURE_TOLERANCE - timedelta(minutes=1)
    assert check_ratings(rated(slightly_ahead.isoformat()), [SKILL])
    with pytest.raises(InvalidRequest, match=r"ratings\[0\]\.rated_at: .* is in the future"):
        check_ratings(rated((datetime.now(UTC) + FUTURE_TOLERANCE + timedelta(minutes=1)).isoformat()), [SKILL])


def test_a_rating_names_a_skill_the_server_serves_or_any_when_it_serves_none():
    with pytest.raises(UnknownSkill, match="expected one of leadership, digital_literacy"):
        check_ratings(rated(datetime.now(UTC).isoformat()), ["leadership", "digital_literacy"])
    assert check_ratings(rated(datetime.now(UTC).isoformat()), None)  # no skills family here: nothing to check


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_nightly_assessments_are_correlated_with_the_ratings_too(database, tmp_path, request):
    """The batch scorer's scores (skill_assessments) get a correlation of their own, per version, beside the served
    ones: its latest assessment of each rated student in the window."""
    from sqlalchemy import insert

    from inference.storage import skill_assessments, teacher_ratings

    url = f"sqlite:///{tmp_path / 'nightly.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    rng = np.random.default_rng(8)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    students = [f"nightly-{run}-{index}" for index in range(60)]
    ratings = rng.uniform(1, 5, len(students))
    rows, rating_rows = [], []
    for student, rating in zip(students, ratings, strict=True):
        rating_rows.append({"student_id": student, "skill": SKILL, "rating": float(rating), "rated_at": now})
        for version, score in (("v7.0.0", rating / 5 + rng.normal(0, 0.05)), ("v7.1.0", rng.uniform())):
            # An older assessment of the same student: only the latest counts.
            for days_ago, value in ((3, float(rng.uniform())), (1, float(score))):
                rows.append(
                    {
                        "student_id": student,
                        "skill": SKILL,
                        "features_hash": hash((version, days_ago)) & 0x7FFFFFFF,
                        "score": value,
                        "confidence": abs(2 * value - 1),
                        "model_version": version,
                        "features_updated_at": now - timedelta(days=days_ago),
                        "scored_at": now - timedelta(days=days_ago),
                        "run_id": 1,
                    }
                )
    with engine.begin() as connection:
        connection.execute(insert(teacher_ratings), [{**row, "received_at": now} for row in rating_rows])
        connection.execute(insert(skill_assessments), rows)
    found = {
        entry.model_version: entry
        for entry in correlations(engine, window_days=30, threshold=0.5, min_pairs=20)
        if entry.source == "nightly" and entry.model_version.startswith("v7.")
    }
    assert found["v7.0.0"].pairs == 60 and found["v7.0.0"].pearson_r > 0.9 and not found["v7.0.0"].alert
    assert found["v7.1.0"].pairs == 60 and found["v7.1.0"].pearson_r < 0.5 and found["v7.1.0"].alert
