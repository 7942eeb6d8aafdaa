import json
import shutil

import bentoml
import pytest
import yaml
from bentoml.exceptions import NotFound

from import_models import main as import_main
from import_models import recognise_family
from inference.artifacts import load_skill_model
from inference.catalogue import SKILLS
from inference.errors import ArtifactError, ModelVersionExists
from inference.families import pinned_tags
from inference.registry import (
    available_versions,
    check_semver,
    import_skill_artifacts,
    load_skill_models,
    resolve_version,
    semver_key,
)
from inference.settings import MODEL_PINS_FILE, Settings
from inference.text_artifacts import write_text_artifact
from inference.textpair_catalogue import TEXTPAIR_MODEL
from tests.utils.requests import delete_from_store
from tests.utils.servers import PROJECT_ROOT


def test_import_saves_seven_tagged_models_with_metadata_and_labels(trained_versions):
    for skill in SKILLS:
        stored = bentoml.models.get(f"skill-{skill}:v1.0.0")
        assert stored.info.labels == {"family": "skills", "skill": skill}
        metadata = stored.info.metadata
        assert metadata["semver"] == "v1.0.0"
        for key in ("trained_at", "training_data_hash", "metrics", "feature_names", "imputation_defaults", "reference"):
            assert metadata[key], key
        assert {"bentoml", "xgboost", "scikit-learn", "numpy"} <= set(metadata["library_versions"])
        assert metadata["metrics"]["auc"] > 0.75


def test_an_existing_version_is_never_overwritten(trained_versions):
    before = bentoml.models.get("skill-leadership:v1.0.0").info.metadata["training_data_hash"]
    with pytest.raises(ModelVersionExists, match="refusing to overwrite"):
        import_skill_artifacts(trained_versions["v1.1.0"], version="v1.0.0")
    assert bentoml.models.get("skill-leadership:v1.0.0").info.metadata["training_data_hash"] == before


def test_a_model_whose_features_do_not_match_the_catalogue_is_refused_before_anything_is_saved(
    trained_versions, tmp_path
):
    broken = tmp_path / "v9.0.0"
    shutil.copytree(trained_versions["v1.0.0"], broken)
    metadata_path = broken / "creativity" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["feature_names"][0] = "shoe_size"
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(
        ArtifactError,
        match=r"do not match the catalogue for skill 'creativity'.*missing \['novel_idea_count'\], unexpected \['shoe_size'\]",
    ):
        import_skill_artifacts(broken, version="v9.0.0")
    assert "v9.0.0" not in available_versions("communication")


def test_reordered_features_are_refused_too(trained_versions, tmp_path):
    shutil.copytree(trained_versions["v1.0.0"] / "leadership", tmp_path / "leadership")
    metadata_path = tmp_path / "leadership" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["feature_names"].reverse()
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="same names in another order"):
        load_skill_model(tmp_path / "leadership", version="v0")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model.json").unlink(), "no booster file"),
        (lambda d: (d / "model.json").write_text("{not json"), "not a readable XGBoost model"),
        (
            lambda d: (d / "scaler.json").write_text('{"mean": [1, 2], "scale": [1, 2]}'),
            "mean must be 7 finite numbers",
        ),
        (lambda d: (d / "metadata.json").unlink(), "file is missing"),
    ],
)
def test_a_corrupt_artifact_gives_an_error_naming_the_file(trained_versions, tmp_path, damage, message):
    directory = tmp_path / "communication"
    shutil.copytree(trained_versions["v1.0.0"] / "communication", directory)
    damage(directory)
    with pytest.raises(ArtifactError, match=message):
        load_skill_model(directory, version="v0")


def test_latest_resolves_to_the_highest_semver_and_pins_are_taken_as_given(trained_versions):
    assert available_versions("creativity") == ["v1.0.0", "v1.1.0"]
    assert resolve_version("creativity", "latest") == "v1.1.0"
    assert resolve_version("creativity", "v1.0.0") == "v1.0.0"
    models = load_skill_models({**dict.fromkeys(SKILLS, "v1.0.0"), "leadership": "latest"})
    assert models["leadership"].version == "v1.1.0" and models["creativity"].version == "v1.0.0"


def test_loading_a_version_missing_from_the_store_names_the_tag(trained_versions):
    with pytest.raises(ArtifactError, match=r"skill-communication:v7\.7\.7 is not in the model store"):
        load_skill_models(dict.fromkeys(SKILLS, "v7.7.7"))


def test_semver_checks_and_ordering():
    assert check_semver("v1.2.3") == "v1.2.3"
    for bad in ("1.2.3", "v1.2", "V1.2.3", "v01.2.3", "latest"):
        with pytest.raises(ValueError, match="not a semantic version"):
            check_semver(bad)
    versions = ["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v0.9.9"]
    assert sorted(versions, key=semver_key) == ["v0.9.9", "v1.2.0-rc.1", "v1.2.0", "v1.10.0"]


def test_import_cli_reports_errors_without_a_traceback(trained_versions, capsys):
    assert import_main([str(trained_versions["v1.0.0"]), "--version", "1.0"]) == 2
    assert "not a semantic version" in capsys.readouterr().err
    assert import_main([str(trained_versions["v1.0.0"])]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_the_family_is_recognised_from_its_sub_folders_and_a_partial_set_is_refused(tmp_path):
    for family, folders in (
        ("skills", SKILLS),
        ("intent", ["intent-classic", "intent-ensemble", "intent-verticals"]),
        ("textpair", ["textpair"]),
    ):
        for folder in folders:
            (tmp_path / family / folder).mkdir(parents=True)
        assert recognise_family(tmp_path / family) == family
    partial = tmp_path / "partial"
    (partial / "intent-classic").mkdir(parents=True)
    (partial / "intent-ensemble").mkdir()
    with pytest.raises(ValueError, match=r"no family's artifact folders found; expected one of these sets: skills: "):
        recognise_family(partial)


def write_textpair_artifact(root, labels):
    """A text-pair artifact with these labels: a trivial estimator, since the import checks the format only."""
    from sklearn.dummy import DummyClassifier

    estimator = DummyClassifier(strategy="prior").fit([[0], [1]], labels)
    write_text_artifact(root / TEXTPAIR_MODEL, estimator, {"model": TEXTPAIR_MODEL, "labels": list(labels)})
    return root


def test_text_labels_must_be_the_catalogues_names_in_any_order(tmp_path, capsys):
    version = "v0.0.1-labels"
    try:
        accepted = write_textpair_artifact(tmp_path / "ok", ["paraphrase", "different"])
        assert import_main([str(accepted), "--version", version]) == 0  # family recognised: textpair
        assert f"imported textpair:{version}" in capsys.readouterr().out
        delete_from_store([TEXTPAIR_MODEL], version)
        for labels in (["different", "Paraphrase"], ["different", "same"]):
            refused = write_textpair_artifact(tmp_path / labels[1], labels)
            assert import_main([str(refused), "--version", version]) == 2
            assert "do not match the catalogue's ['different', 'paraphrase']" in capsys.readouterr().err
            with pytest.raises(NotFound):
                bentoml.models.get(f"{TEXTPAIR_MODEL}:{version}")
    finally:
        delete_from_store([TEXTPAIR_MODEL], version)


def test_bentofile_pins_exactly_the_versions_in_models_env():
    # No fixed count: a canary build routes a second version, and then both versions' tags belong in the Bento.
    bentofile = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    pinned = pinned_tags(Settings(_env_file=MODEL_PINS_FILE))
    assert sorted(bentofile["models"]) == sorted(pinned)
    assert "latest" not in " ".join(bentofile["models"])
    assert bentofile["python"]["lock_packages"] is False


def test_settings_refuse_unknown_skills_in_overrides(monkeypatch):
    monkeypatch.setenv("INFERENCE_SKILL_VERSIONS", '{"cooking": "v1.0.0"}')
    with pytest.raises(ValueError, match="unknown skills"):
        Settings()
    monkeypatch.setenv("INFERENCE_SKILL_VERSIONS", '{"leadership": "v1.1.0"}')
    monkeypatch.setenv("INFERENCE_SKILLS_VERSION", "v1.0.0")
    assert Settings().pinned_skill_versions() == {**dict.fromkeys(SKILLS, "v1.0.0"), "leadership": "v1.1.0"}
