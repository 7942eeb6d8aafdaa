"""Compiled scoring: every imported skill model carries an ONNX form that gives XGBoost's probabilities; a form that
disagrees, does not load or is missing leaves the model on XGBoost, said in the model's summary, never failing it."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from inference.families.skills import compiled as compiled_module
from inference.families.skills.artifacts import load_skill_model
from inference.families.skills.compiled import ONNX_FILE, compile_booster
from inference.families.skills.family import SkillsFamily, model_summary
from inference.families.skills.scoring import score_rows
from inference.settings import Settings
from inference.store.registry import stored_model_path
from train.data.catalogue import SKILLS

STABLE = "v1.0.0"


def rows_for(model, n: int, seed: int = 0) -> np.ndarray:
    """Rows spread around the model's training distribution (its scaler's mean and scale), within its ranges."""
    noise = np.random.default_rng(seed).normal(size=(n, len(model.feature_names)))
    return np.clip(model.mean + 1.5 * noise * model.scale, model.minimum, model.maximum)


def xgboost_only(model):
    return replace(model, compiled=None)


def test_every_imported_model_has_a_compiled_form_equal_to_xgboost(trained_versions):
    for skill in SKILLS:
        assert (stored_model_path(f"skill-{skill}", STABLE) / ONNX_FILE).is_file(), skill
    models = SkillsFamily().load_models(Settings(), STABLE)
    for skill, model in models.items():
        assert model.compiled is not None and model.compiled.path == "onnxruntime", (skill, model.compiled)
        for n in (1, 7, 64, 300):
            rows = rows_for(model, n, seed=n)
            compiled, reference = score_rows(model, rows), score_rows(xgboost_only(model), rows)
            assert np.max(np.abs(compiled.score - reference.score)) <= 1e-5, (skill, n)
            assert np.allclose(compiled.confidence, np.abs(2 * compiled.score - 1))
        assert model_summary(model)["scoring"]["path"] == "onnxruntime"


def test_a_row_scores_the_same_alone_and_in_a_batch_of_any_size(trained_versions):
    model = SkillsFamily().load_models(Settings(), STABLE)["communication"]
    rows = rows_for(model, 300, seed=9)
    together = score_rows(model, rows).score
    alone = np.array([score_rows(model, rows[i : i + 1]).score[0] for i in range(0, 300, 25)])
    assert np.array_equal(alone, together[::25])


def test_the_batch_scorer_scores_with_xgboost_for_every_chunk_size(trained_versions, monkeypatch):
    from inference.batch.chunks import FeatureChunk, score_chunk

    models = SkillsFamily().load_models(Settings(), STABLE)
    model = models["communication"]

    def refuse(_rows):
        raise AssertionError("the batch scorer asked the compiled form")

    for other in models.values():
        monkeypatch.setattr(other.compiled.booster, "probabilities", refuse)
    rows = rows_for(model, 3)
    names = list(model.feature_names)
    chunk = FeatureChunk.from_rows([(f"s{i}", None, *row) for i, row in enumerate(rows.tolist())], names)
    scored = score_chunk(chunk, {"communication": model})
    assert scored.scored[:, 0].all()
    assert np.array_equal(scored.scores[:, 0], score_rows(xgboost_only(model), rows).score)


def copy_of(skill: str, tmp_path):
    directory = tmp_path / skill
    shutil.copytree(stored_model_path(f"skill-{skill}", STABLE), directory)
    return directory


def test_a_compiled_form_of_another_model_is_refused_at_load_and_xgboost_serves(trained_versions, tmp_path):
    directory = copy_of("communication", tmp_path)
    shutil.copy(stored_model_path("skill-leadership", STABLE) / ONNX_FILE, directory / ONNX_FILE)
    model = load_skill_model(directory, version=STABLE)
    assert model.compiled.path == "xgboost" and model.compiled.booster is None
    assert str(directory / ONNX_FILE) in model.compiled.reason and "differs from XGBoost" in model.compiled.reason
    rows = rows_for(model, 5)
    assert np.array_equal(score_rows(model, rows).score, score_rows(xgboost_only(model), rows).score)
    assert model_summary(model)["scoring"] == {"path": "xgboost", "reason": model.compiled.reason}


def test_a_corrupt_compiled_form_does_not_fail_the_load(trained_versions, tmp_path):
    directory = copy_of("communication", tmp_path)
    (directory / ONNX_FILE).write_bytes(b"not an onnx model")
    model = load_skill_model(directory, version=STABLE)
    assert model.compiled.path == "xgboost" and "does not load" in model.compiled.reason


def test_a_model_stored_without_a_compiled_form_scores_with_xgboost(trained_versions, tmp_path):
    directory = copy_of("communication", tmp_path)
    (directory / ONNX_FILE).unlink()
    model = load_skill_model(directory, version=STABLE)
    assert model.compiled.path == "xgboost" and "no compiled form" in model.compiled.reason


def test_compiled_scoring_can_be_switched_off(trained_versions, monkeypatch):
    monkeypatch.setenv("INFERENCE_COMPILED_SCORING", "false")
    models = SkillsFamily().load_models(Settings(), STABLE)
    assert {model.compiled.path for model in models.values()} == {"xgboost"}
    assert "INFERENCE_COMPILED_SCORING" in models["communication"].compiled.reason


def test_a_conversion_outside_the_tolerance_is_not_kept(trained_versions, monkeypatch):
    model = SkillsFamily().load_models(Settings(), STABLE)["communication"]
    rows = (rows_for(model, 20) - model.mean) / model.scale
    model_bytes, reason = compile_booster(model.booster, rows)
    assert model_bytes is not None and "equal to XGBoost" in reason
    monkeypatch.setattr(compiled_module, "TOLERANCE", -1.0)  # no difference is small enough
    model_bytes, reason = compile_booster(model.booster, rows)
    assert model_bytes is None and "differs from XGBoost" in reason


@pytest.mark.parametrize("explain", [False, True])
def test_explanations_still_sum_to_the_margin_of_the_score_served(trained_versions, explain):
    from inference.families.skills.scoring import SkillRow, score_skill_rows

    model = SkillsFamily().load_models(Settings(), STABLE)[SKILLS[-1]]
    rows = rows_for(model, 3)
    scored = score_skill_rows([SkillRow(model, row, explain=explain) for row in rows])
    for result in scored:
        assert np.isclose(1 / (1 + np.exp(-result.margin)), result.score, atol=1e-5)
        if explain:
            assert result.contributions is not None
            assert np.isclose(result.contributions.sum(), result.margin)
