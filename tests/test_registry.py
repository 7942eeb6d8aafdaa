"""The model store as the registry: imports tagged and never overwritten, every fault of an artifact refused
naming the file before anything is saved, versions resolved, the build's pins in agreement, and imports from the
model source only of files its SHA256SUMS vouches for."""

import hashlib
import json
import shutil
import subprocess

import bentoml
import pytest
import yaml

from import_models import main as import_main
from inference.errors import ArtifactError, ModelVersionExists
from inference.families import pinned_tags
from inference.families.skills.artifacts import load_skill_model
from inference.families.skills.family import SkillsFamily, import_skill_artifacts, load_skill_models
from inference.families.skills.scoring import skill_model_name
from inference.settings import MODEL_PINS_FILE, Settings
from inference.store import registry
from inference.store.registry import (
    SOURCE_MANIFEST,
    UntrustedArtifact,
    available_model_versions,
    check_semver,
    pull_from_source,
    resolve_model_version,
    semver_key,
)
from tests.utils.requests import delete_from_store
from tests.utils.servers import PROJECT_ROOT
from train.data.catalogue import SKILLS


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


def test_a_model_whose_features_disagree_with_its_scaler_is_refused_before_anything_is_saved(
    trained_versions, tmp_path
):
    broken = tmp_path / "v9.0.0"
    shutil.copytree(trained_versions["v1.0.0"], broken)
    metadata_path = broken / "creativity" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["feature_names"].append("shoe_size")  # one more than the booster takes
    metadata["imputation_defaults"]["shoe_size"] = 42.0
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match=r"creativity/scaler\.json: mean must be 7 finite numbers"):
        import_skill_artifacts(broken, version="v9.0.0")
    assert "v9.0.0" not in available_model_versions("skill-communication")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["feature_names"].append(m["feature_names"][0]), "more than once"),
        (lambda m: m["imputation_defaults"].pop(m["feature_names"][0]), "imputation_defaults must give one value"),
        (lambda m: m["features"].update({"nope": {}}), r"features describes \['nope'\]"),
        (lambda m: m["features"][m["feature_names"][0]].update({"colour": "red"}), "may hold only"),
        (lambda m: m.update(skill="Leadership!"), "not a usable skill name"),
    ],
)
def test_a_schema_the_metadata_gets_wrong_is_refused_naming_the_fault(trained_versions, tmp_path, edit, message):
    directory = tmp_path / "leadership"
    shutil.copytree(trained_versions["v1.0.0"] / "leadership", directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    edit(metadata)
    (directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match=message):
        load_skill_model(directory, version="v0")


def test_an_imputation_default_outside_the_features_range_is_refused(trained_versions, tmp_path):
    directory = tmp_path / "leadership"
    shutil.copytree(trained_versions["v1.0.0"] / "leadership", directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["imputation_defaults"]["leadership_roles_taken"] = 99.0  # its range is [0, 50]
    (directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match=r"leadership_roles_taken = 99 is outside the feature's range \[0, 50\]"):
        load_skill_model(directory, version="v0")


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
    assert available_model_versions("skill-creativity") == ["v1.0.0", "v1.1.0"]
    assert resolve_model_version("skill-creativity", "latest") == "v1.1.0"
    assert resolve_model_version("skill-creativity", "v1.0.0") == "v1.0.0"
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


def test_bentofile_pins_exactly_the_versions_in_models_env():
    # No fixed count: a canary build routes a second version, and then both versions' tags belong in the Bento.
    bentofile = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    pinned = pinned_tags(Settings(_env_file=MODEL_PINS_FILE))
    assert sorted(bentofile["models"]) == sorted(pinned)
    assert "latest" not in " ".join(bentofile["models"])
    assert bentofile["python"]["lock_packages"] is False


def test_the_served_skills_are_the_settings_list_else_every_skill_in_the_store(trained_versions, monkeypatch):
    family = SkillsFamily()
    assert family.model_names(Settings(skills=["leadership", "creativity"]), "v1.0.0") == [
        "skill-leadership",
        "skill-creativity",
    ]
    discovered = Settings.model_construct(**{**Settings().model_dump(), "skills": None})
    assert sorted(family.model_names(discovered, "v1.0.0")) == sorted(f"skill-{skill}" for skill in SKILLS)
    with pytest.raises(ArtifactError, match=r"no skill model is in the model store at version v4\.4\.4"):
        family.model_names(discovered, "v4.4.4")


def test_settings_refuse_names_that_cannot_be_skills(monkeypatch):
    monkeypatch.setenv("INFERENCE_SKILL_VERSIONS", '{"Cooking!": "v1.0.0"}')
    with pytest.raises(ValueError, match="are not skill names"):
        Settings()
    monkeypatch.delenv("INFERENCE_SKILL_VERSIONS")
    monkeypatch.setenv("INFERENCE_SKILLS", '["leadership", "leadership"]')
    with pytest.raises(ValueError, match="a skill is listed twice"):
        Settings()


def test_an_override_for_a_skill_the_version_does_not_serve_stops_the_load(trained_versions):
    settings = Settings(skills_version="v1.0.0", skills=["leadership"], skill_versions={"creativity": "v1.1.0"})
    with pytest.raises(ArtifactError, match=r"INFERENCE_SKILL_VERSIONS names \['creativity'\]"):
        SkillsFamily().load_models(settings, "v1.0.0")


@pytest.mark.parametrize("name", [" padded", "x" * 64, "student_id", ""])
def test_a_feature_name_that_cannot_be_a_column_is_refused_at_load_too(trained_versions, tmp_path, name):
    directory = tmp_path / "leadership"
    shutil.copytree(trained_versions["v1.0.0"] / "leadership", directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    first = metadata["feature_names"][0]
    metadata["feature_names"][0] = name
    metadata["imputation_defaults"][name] = metadata["imputation_defaults"].pop(first)
    metadata["features"][name] = metadata["features"].pop(first)
    (directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="is not usable"):
        load_skill_model(directory, version="v0")


# --- the model source: a shared folder of `bentoml models export` files and their SHA256SUMS ------------------

SOURCE_VERSION = "v1.5.0"
SOURCE_NAMES = [skill_model_name(skill) for skill in ("creativity", "leadership")]


@pytest.fixture(scope="module")
def exported(trained_versions, tmp_path_factory):
    """Two skill models of v1.5.0 exported to a folder, then removed from the store: what a replica whose image
    lacks the version finds on the shared volume (without a manifest yet)."""
    import_skill_artifacts(trained_versions["v1.1.0"], version=SOURCE_VERSION)
    folder = tmp_path_factory.mktemp("exported")
    try:
        for name in SOURCE_NAMES:
            bentoml.models.export_model(f"{name}:{SOURCE_VERSION}", str(folder))
    finally:
        delete_from_store([skill_model_name(skill) for skill in SKILLS], SOURCE_VERSION)
    return folder


@pytest.fixture
def source(exported, tmp_path):
    """A copy of the exported folder a test may change; nothing of the version in the store after it."""
    folder = tmp_path / "models-volume"
    shutil.copytree(exported, folder)
    yield folder
    delete_from_store(SOURCE_NAMES, SOURCE_VERSION)


def write_manifest(folder):
    """The manifest as docs/versions.md tells an operator to write it."""
    subprocess.run(f"cd {folder} && sha256sum *.bentomodel > {SOURCE_MANIFEST}", shell=True, check=True)


def imported_any():
    return any(SOURCE_VERSION in available_model_versions(name) for name in SOURCE_NAMES)


def test_files_the_manifest_vouches_for_are_imported(source):
    write_manifest(source)
    pulled = pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source))
    assert pulled == [f"{name}:{SOURCE_VERSION}" for name in SOURCE_NAMES]
    assert all(SOURCE_VERSION in available_model_versions(name) for name in SOURCE_NAMES)
    assert pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source)) == []  # already there: nothing to do


def test_a_source_without_a_manifest_imports_nothing(source):
    with pytest.raises(UntrustedArtifact, match=rf"{SOURCE_MANIFEST}: no manifest, refusing to import") as refused:
        pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source))
    assert f"sha256sum *.bentomodel > {SOURCE_MANIFEST}" in refused.value.message
    assert isinstance(refused.value, ArtifactError) and not imported_any()


def test_a_file_the_manifest_does_not_list_is_refused_and_nothing_is_imported(source):
    write_manifest(source)
    unlisted = f"{SOURCE_NAMES[1]}-{SOURCE_VERSION}.bentomodel"
    manifest = source / SOURCE_MANIFEST
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines() if unlisted not in line))
    with pytest.raises(UntrustedArtifact, match=rf"{unlisted}: not listed in .*{SOURCE_MANIFEST}"):
        pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source))
    assert not imported_any()  # the first file was fine, and is not imported either


def test_a_file_whose_digest_differs_from_the_manifest_is_refused_and_nothing_is_imported(source):
    write_manifest(source)
    swapped = source / f"{SOURCE_NAMES[1]}-{SOURCE_VERSION}.bentomodel"
    with swapped.open("ab") as file:  # changed after the manifest was written
        file.write(b"tampered")
    actual = hashlib.sha256(swapped.read_bytes()).hexdigest()
    with pytest.raises(UntrustedArtifact, match=rf"{swapped.name}: its sha256 is {actual}, not [0-9a-f]{{64}} as"):
        pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source))
    assert not imported_any()


def test_a_file_larger_than_a_model_export_may_be_is_refused_before_it_is_read(source, monkeypatch):
    write_manifest(source)
    monkeypatch.setattr(registry, "MAX_SOURCE_FILE_BYTES", 1024)
    with pytest.raises(UntrustedArtifact, match=r"bytes, more than the 1024 a model export may have"):
        pull_from_source(SOURCE_NAMES, SOURCE_VERSION, str(source))
    assert not imported_any()


def test_a_version_that_is_not_semver_never_becomes_a_path_in_the_source(tmp_path):
    with pytest.raises(ArtifactError, match=r"model source: version '\.\./\.\./x' is not a semantic version"):
        pull_from_source(["skill-creativity"], "../../x", str(tmp_path))
