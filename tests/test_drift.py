"""Drift statistics against the references stored with the models: live data like the training data stays
under the alert threshold, shifted data crosses it."""

import numpy as np
import pytest

from inference.drift import DriftMonitor, ks_distance, population_stability_index, reference_distribution
from inference.scoring import score_rows
from inference.synthetic import generate_students

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
