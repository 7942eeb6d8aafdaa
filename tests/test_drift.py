"""Drift statistics against the references stored with the models: live data like the training data stays
under the alert threshold, shifted data crosses it; workers sharing their windows report the drift of all of
them alike, and the files of workers gone stop counting."""

import asyncio
import dataclasses
import logging
import os
import time

import numpy as np
import pytest

from inference.families.skills.scoring import score_rows
from inference.logs import LOGGER_NAME
from inference.monitoring.drift import DriftMonitor, ks_distance, population_stability_index, reference_distribution
from inference.monitoring.ground_truth import PredictionLog
from inference.monitoring.metrics import NoMetrics
from inference.monitoring.observer import DriftInputs, Monitoring, Observer
from inference.storage import DeferredEngine
from train.data.students import generate_students

PSI_ALERT = 0.2


def test_psi_and_ks_are_near_zero_for_the_same_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    reference = reference_distribution(rng.normal(size=20_000))
    same = rng.normal(size=5000)
    shifted = rng.normal(loc=0.8, size=5000)
    assert population_stability_index(same, reference) < 0.02 and ks_distance(same, reference) < 0.03
    assert population_stability_index(shifted, reference) > PSI_ALERT and ks_distance(shifted, reference) > 0.25
    assert population_stability_index(np.full(100, 99.0), reference) > 5  # everything in one open-ended bin


def feed(monitor, models, sample, skill):
    model = models[skill]
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
    for features, score in zip(sample.feature_dicts(), scores, strict=True):
        monitor.observe(f"skill-{skill}", model.version, model.metadata["reference"], features, float(score))


@pytest.mark.parametrize("skill", ["communication", "leadership"])
def test_live_students_like_the_training_ones_raise_no_alert(stable_models, skill):
    monitor = DriftMonitor(window=3000, min_observations=100)
    feed(monitor, stable_models, generate_students(3000, seed=555), skill)
    (report,) = monitor.reports()
    assert report.window == 3000 and set(report.psi) == {*stable_models[skill].feature_names, "score"}
    assert report.worst_psi() < 0.1, report.psi


def test_a_shifted_population_crosses_the_alert_threshold_on_the_shifted_feature(stable_models):
    monitor = DriftMonitor(window=3000, min_observations=100)
    shifted = generate_students(3000, seed=556, feature_shift={"words_per_response": 1.5})
    feed(monitor, stable_models, shifted, "communication")
    (report,) = monitor.reports()
    assert report.psi["words_per_response"] > PSI_ALERT
    assert report.ks["words_per_response"] > 0.2
    assert report.psi["question_ratio"] < 0.1  # an unshifted input stays quiet
    assert report.psi["score"] > report.psi["question_ratio"]  # the shift moves the scores too


def test_no_statistics_below_the_minimum_window(stable_models):
    monitor = DriftMonitor(window=100, min_observations=50)
    feed(monitor, stable_models, generate_students(20, seed=557), "creativity")
    (report,) = monitor.reports()
    assert report.window == 20 and report.psi == {} and report.worst_psi() == 0.0


class RecordedGauges(NoMetrics):
    def __init__(self):
        self.gauges = {}

    def gauge(self, name, value, **labels):
        self.gauges[name, labels.get("feature")] = value


def test_drift_gauges_stay_current_while_the_database_is_away(tmp_path, caplog):
    rng = np.random.default_rng(1)
    reference = {
        "features": {"words_per_response": reference_distribution(rng.normal(size=5000))},
        "score": reference_distribution(rng.uniform(size=5000)),
    }
    away = DeferredEngine(f"sqlite:///{tmp_path / 'not-created-yet' / 'monitoring.db'}")  # cannot be opened
    metrics = RecordedGauges()
    observer = Observer(
        metrics=metrics, drift=DriftMonitor(window=1000, min_observations=100), predictions=PredictionLog(away)
    )
    monitoring = Monitoring(
        observer, away, psi_alert=0.2, correlation_alert_below=0.5, correlation_window_days=30, correlation_min_pairs=20
    )
    for index, (value, score) in enumerate(zip(rng.normal(loc=1.5, size=300), rng.uniform(size=300), strict=True)):
        features = {"words_per_response": float(value)}
        observer.answer(
            "skills",
            "skill-communication",
            "v1",
            score,
            inputs=DriftInputs(reference, features),
            logged_as=(f"s{index}", "communication"),
        )
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        asyncio.run(monitoring.tick(statistics=True))
    assert metrics.gauges.get(("inference_drift_window_size", None)) == 300
    assert metrics.gauges["inference_drift_psi", "words_per_response"] > 0.2
    assert metrics.gauges["inference_drift_ks", "score"] < 0.2
    failed = {record.args[0] for record in caplog.records if record.msg.startswith("monitoring step failed")}
    # Each of these needs the database: it really was away.
    assert failed == {"prediction log", "correlations", "batch runs", "feedback accuracy"}


def part(sample, rows: slice):
    return dataclasses.replace(
        sample,
        student_ids=sample.student_ids[rows],
        features=sample.features[rows],
        ratings=sample.ratings[rows],
        traits=sample.traits[rows],
    )


def test_workers_sharing_a_directory_report_the_drift_of_all_their_observations_alike(stable_models, tmp_path):
    sample = generate_students(1200, seed=558, feature_shift={"words_per_response": 1.5})
    first, second = (
        DriftMonitor(window=3000, min_observations=100, directory=tmp_path, worker=name) for name in ("a", "b")
    )
    alone = DriftMonitor(window=3000, min_observations=100)  # one process that saw every request
    feed(first, stable_models, part(sample, slice(0, 700)), "communication")
    feed(second, stable_models, part(sample, slice(700, None)), "communication")
    feed(alone, stable_models, sample, "communication")
    assert first.reports() == second.reports() == []  # nothing shared yet: not even a worker's own observations
    for monitor in (first, second):
        monitor.share()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["drift-a.npz", "drift-b.npz"]  # no temporary left
    (report,) = first.reports()
    assert report == second.reports()[0] == alone.reports()[0]
    assert report.window == 1200 and report.psi["words_per_response"] > PSI_ALERT
    assert first.histograms() == second.histograms()


def test_a_worker_refreshes_its_file_when_idle_and_the_files_of_workers_gone_are_dropped(stable_models, tmp_path):
    live, gone = (DriftMonitor(window=500, min_observations=50, directory=tmp_path, worker=name) for name in "ab")
    feed(live, stable_models, generate_students(100, seed=559), "creativity")
    feed(gone, stable_models, generate_students(200, seed=560), "creativity")
    for monitor in (live, gone):
        monitor.share()
    assert live.reports()[0].window == 300
    assert live.changed_windows() is None  # nothing new: the file is only marked as current
    long_ago = time.time() - live.stale_after_s - 60
    for path in tmp_path.iterdir():
        os.utime(path, (long_ago, long_ago))
    live.share()
    assert live.reports()[0].window == 100  # the other worker's file is too old to count
    assert sorted(path.name for path in tmp_path.iterdir()) == ["drift-a.npz"]  # and removed
    live.withdraw()
    assert live.reports() == []
