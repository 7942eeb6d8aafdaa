import json

import numpy as np
import pytest
import xgboost as xgb
from sklearn.preprocessing import StandardScaler

from inference.families.skills.scoring import (
    HIGH_SKILL_CLASS,
    TOP_IMPORTANCES,
    SkillRow,
    score_rows,
    score_skill_rows,
    top_importances,
)
from train.data.catalogue import SKILLS
from train.data.students import generate_students


def stored_classifier_and_scaler(artifact_dir):
    """The stored model as scikit-learn users know it: XGBClassifier.predict_proba after StandardScaler."""
    classifier = xgb.XGBClassifier()
    classifier.load_model(artifact_dir / "model.json")
    params = json.loads((artifact_dir / "scaler.json").read_text())
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = np.array(params["mean"]), np.array(params["scale"])
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(params["mean"])
    return classifier, scaler


def imputed_rows(model, n, seed):
    sample = generate_students(n, seed=seed)
    columns = [sample.feature_names.index(name) for name in model.feature_names]
    rows = sample.features[:, columns]
    return np.where(np.isnan(rows), model.imputation_defaults, rows)


@pytest.mark.parametrize("skill", SKILLS)
def test_scores_equal_predict_proba_of_the_stored_model(skill, stable_models, trained_versions):
    model = stable_models[skill]
    rows = imputed_rows(model, 300, seed=99)
    classifier, scaler = stored_classifier_and_scaler(trained_versions["v1.0.0"] / skill)
    expected = classifier.predict_proba(scaler.transform(rows))[:, HIGH_SKILL_CLASS]
    scores = score_rows(model, rows)
    np.testing.assert_allclose(scores.score, expected, atol=1e-6)


def test_scores_are_probabilities_and_confidence_follows_the_margin(stable_models):
    model = stable_models["creativity"]
    scores = score_rows(model, imputed_rows(model, 2000, seed=4))
    assert np.all((scores.score >= 0) & (scores.score <= 1))
    np.testing.assert_allclose(scores.confidence, np.abs(2 * scores.score - 1))
    np.testing.assert_allclose(scores.confidence, np.tanh(np.abs(scores.margin) / 2), atol=1e-9)
    # larger |margin| never means lower confidence
    order = np.argsort(np.abs(scores.margin))
    assert np.all(np.diff(scores.confidence[order]) >= -1e-12)


def test_one_row_scores_the_same_alone_and_in_a_batch(stable_models):
    model = stable_models["leadership"]
    rows = imputed_rows(model, 50, seed=8)
    together = score_rows(model, rows).score
    alone = np.array([score_rows(model, rows[i : i + 1]).score[0] for i in range(len(rows))])
    np.testing.assert_allclose(alone, together, atol=1e-12)


def test_mixed_skill_rows_are_scored_per_model_in_request_order(stable_models):
    rows, expected = [], []
    for index in range(30):
        model = stable_models[SKILLS[index % len(SKILLS)]]
        values = imputed_rows(model, 30, seed=21)[index]
        rows.append(SkillRow(model, values))
        expected.append(score_rows(model, values[None, :]).score[0])
    results = score_skill_rows(rows)
    np.testing.assert_allclose([result.score for result in results], expected, atol=1e-12)


def test_top_importances_are_five_named_features_descending(stable_models):
    for skill, model in stable_models.items():
        ranked = model.feature_importance
        assert len(ranked) == TOP_IMPORTANCES
        names = [name for name, _ in ranked]
        assert set(names) <= set(model.feature_names), skill
        values = [value for _, value in ranked]
        assert values == sorted(values, reverse=True)
        assert 0 < sum(values) <= 1 + 1e-9
        assert ranked == top_importances(model.booster, model.feature_names)


def test_the_strongest_generative_feature_ranks_first(stable_models):
    # The generator makes leadership_roles_taken the purest signal of leadership.
    assert stable_models["leadership"].feature_importance[0][0] == "leadership_roles_taken"
