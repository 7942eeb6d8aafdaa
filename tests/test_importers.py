"""The importers of a team's own models (docs/models.md): each supported format converts into the store's format
with the original's probabilities, and each refusal names the file at fault and writes nothing to the store."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris, load_wine
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from import_models import main as import_main
from import_models import recognise_family
from inference.errors import ArtifactError, ModelVersionExists
from inference.families.intent.importers import import_intent_models
from inference.families.skills.artifacts import load_skill_model
from inference.families.skills.importers import MEANS, convert_skill_folder, import_skill_models
from inference.families.skills.scoring import score_rows, skill_model_name
from inference.families.textpair.importers import import_textpair_model
from inference.store.importing import CONVERSION_TOLERANCE, ImportOptions
from inference.store.registry import available_model_versions, stored_model_path
from inference.store.text_artifacts import load_stored_text_model
from tests.utils import own_models
from tests.utils.requests import delete_from_store

TRUSTED = ImportOptions(trust_pickles=True, imputation=MEANS)
INTENT_NAMES = ["intent-classic", "intent-ensemble", "intent-verticals"]
VERTICALS = ",".join(own_models.VERTICALS)


def skill_names(root: Path) -> list[str]:
    return [skill_model_name(folder.name) for folder in root.iterdir() if folder.is_dir()]


def assert_nothing_stored(names: list[str], version: str) -> None:
    assert [name for name in names if version in available_model_versions(name)] == []


class ShiftedClassifier(xgb.XGBClassifier):
    """A team's wrapper that post-processes the probabilities: its booster alone does not answer as it does."""

    def predict_proba(self, X, **kwargs):
        probabilities = super().predict_proba(X, **kwargs)
        shifted = np.clip(probabilities[:, 1] * 0.9 + 0.05, 0, 1)
        return np.column_stack([1 - shifted, shifted])


# --- skills: every format ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", own_models.SKILL_FACTORIES, ids=lambda factory: factory.__name__)
def test_each_skill_format_becomes_the_pickle_free_format_with_the_originals_probabilities(tmp_path, factory):
    skill = factory(tmp_path / "team")
    out = convert_skill_folder(skill.folder, tmp_path / "store-format", version="v1.0.0", options=TRUSTED)

    assert sorted(path.name for path in out.iterdir()) == ["metadata.json", "model.json", "scaler.json"]
    model = load_skill_model(out, version="v1.0.0")
    assert model.skill == skill.name and list(model.feature_names) == skill.feature_names
    served = score_rows(model, skill.rows).score
    assert np.max(np.abs(served - skill.probability(skill.rows))) <= CONVERSION_TOLERANCE
    samples = model.metadata["samples"]
    assert len(samples["inputs"]) == len(samples["scores"]) > 10
    assert np.allclose(skill.probability(np.array(samples["inputs"])), samples["scores"], atol=CONVERSION_TOLERANCE)


@pytest.mark.parametrize("factory", [own_models.unscaled_classifier, own_models.unscaled_json])
def test_a_model_without_a_scaler_is_stored_with_identity_scaling_said_in_its_metadata(tmp_path, factory):
    skill = factory(tmp_path / "team")
    out = convert_skill_folder(skill.folder, tmp_path / "store-format", version="v1.0.0", options=TRUSTED)
    model = load_skill_model(out, version="v1.0.0")
    assert model.metadata["source"]["scaling"] == "identity"
    scaler = json.loads((out / "scaler.json").read_text())
    assert set(scaler["mean"]) == {0.0} and set(scaler["scale"]) == {1.0}
    assert np.max(np.abs(score_rows(model, skill.rows).score - skill.probability(skill.rows))) <= CONVERSION_TOLERANCE


def test_a_model_without_a_scaler_has_no_training_means_to_impute_with(tmp_path):
    skill = own_models.unscaled_classifier(tmp_path / "team")
    (skill.folder / "features.json").write_text(json.dumps(skill.feature_names))  # names only, no defaults
    with pytest.raises(ArtifactError, match=r"model\.pkl: a model without a scaler has no training means"):
        convert_skill_folder(skill.folder, tmp_path / "out", version="v1.0.0", options=TRUSTED)


def test_the_early_stopped_classifier_keeps_only_the_trees_predict_proba_uses(tmp_path):
    skill = own_models.pickled_classifier(tmp_path / "team")
    classifier = pickle.loads((skill.folder / "model.pkl").read_bytes())
    model = load_skill_model(
        convert_skill_folder(skill.folder, tmp_path / "out", version="v1", options=TRUSTED), version="v1"
    )
    assert (
        model.booster.num_boosted_rounds()
        == classifier.best_iteration + 1
        < classifier.get_booster().num_boosted_rounds()
    )


def test_imputation_defaults_come_from_the_features_file_or_the_scalers_means(tmp_path):
    with_file = own_models.json_model(tmp_path / "team")
    features = json.loads((with_file.folder / "features.json").read_text())
    model = load_skill_model(
        convert_skill_folder(with_file.folder, tmp_path / "a", version="v1", options=TRUSTED), version="v1"
    )
    assert model.metadata["imputation_defaults"] == {entry["name"]: entry["default"] for entry in features}
    assert model.metadata["features"]["bmi"] == {
        "unit": "standardised",
        "minimum": -1.0,
        "maximum": 1.0,
        "description": "The data set's bmi, mean-centred and scaled.",
    }
    means = own_models.pickled_booster(tmp_path / "team")  # with_mean=False: the training means are still known
    model = load_skill_model(
        convert_skill_folder(means.folder, tmp_path / "b", version="v1", options=TRUSTED), version="v1"
    )
    assert np.allclose(model.imputation_defaults, means.training_mean)
    assert model.metadata["source"]["imputed_with_means"] == means.feature_names


def test_sample_rows_from_a_csv_are_checked_and_kept(tmp_path):
    skill = own_models.joblib_pipeline(tmp_path / "team")
    samples = tmp_path / "samples.csv"
    header = ",".join(skill.feature_names)
    samples.write_text(header + "\n" + "\n".join(",".join(map(repr, row)) for row in skill.rows[:7].tolist()) + "\n")
    options = ImportOptions(trust_pickles=True, imputation=MEANS, samples=samples)
    model = load_skill_model(
        convert_skill_folder(skill.folder, tmp_path / "out", version="v1", options=options), version="v1"
    )
    assert model.metadata["samples"]["inputs"] == skill.rows[:7].tolist()


def test_the_training_output_imports_as_it_did_with_its_samples_checked(tmp_path):
    skill = own_models.json_model(tmp_path / "team")
    first = convert_skill_folder(skill.folder, tmp_path / "first", version="v1", options=TRUSTED)
    # What `python -m train` writes is the store's format: it imports again, samples and schema kept.
    again = convert_skill_folder(first, tmp_path / "again", version="v2", options=ImportOptions())
    assert (
        json.loads((again / "metadata.json").read_text())["samples"]
        == json.loads((first / "metadata.json").read_text())["samples"]
    )
    metadata = json.loads((first / "metadata.json").read_text())
    metadata["samples"]["scores"][0] += 0.01
    (first / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match=r"model\.json: the model does not reproduce the answers stored with it"):
        convert_skill_folder(first, tmp_path / "third", version="v3", options=ImportOptions())


def test_a_skill_import_saves_every_folder_and_never_overwrites(tmp_path):
    root = tmp_path / "team"
    skills = [factory(root) for factory in own_models.SKILL_FACTORIES]
    version = "v0.1.0-own"
    try:
        tags = import_skill_models(root, version=version, options=TRUSTED)
        assert sorted(tags) == sorted(f"skill-{skill.name}:{version}" for skill in skills)
        for skill in skills:
            stored = stored_model_path(skill_model_name(skill.name), version)
            assert not list(stored.glob("*.pkl")) and not list(stored.glob("*.joblib"))
        before = json.loads((stored / "metadata.json").read_text())["imported_at"]
        with pytest.raises(ModelVersionExists, match="refusing to overwrite"):
            import_skill_models(root, version=version, options=TRUSTED)
        assert json.loads((stored / "metadata.json").read_text())["imported_at"] == before
    finally:
        delete_from_store(skill_names(root), version)


# --- skills: refusals, each naming the file, nothing written ------------------------------------------------------


def refused_skill_import(root: Path, options: ImportOptions, match: str) -> None:
    version = "v0.0.1-refused"
    with pytest.raises(ArtifactError, match=match):
        import_skill_models(root, version=version, options=options)
    assert_nothing_stored(skill_names(root), version)


def test_a_pickle_is_not_opened_without_the_trust_flag(tmp_path):
    skill = own_models.pickled_classifier(tmp_path / "team")
    refused_skill_import(
        tmp_path / "team",
        ImportOptions(imputation=MEANS),
        rf"{skill.folder / 'model.pkl'}: a pickle runs code .*--trust-pickles",
    )


def test_a_conversion_whose_probabilities_differ_is_refused(tmp_path):
    data = load_wine()
    scaler = StandardScaler().fit(data.data)
    classifier = ShiftedClassifier(n_estimators=10, max_depth=2).fit(scaler.transform(data.data), data.target == 0)
    folder = tmp_path / "team" / "wine_shifted"
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(classifier))
    (folder / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    (folder / "features.json").write_text(json.dumps(data.feature_names))
    refused_skill_import(
        tmp_path / "team",
        TRUSTED,
        rf"{folder / 'model.pkl'}: the converted model's probabilities differ from the original's",
    )


def test_a_feature_list_the_scalers_shape_contradicts_is_refused(tmp_path):
    skill = own_models.joblib_pipeline(tmp_path / "team")
    (skill.folder / "features.json").write_text(json.dumps(skill.feature_names[:-1]))
    refused_skill_import(
        tmp_path / "team",
        TRUSTED,
        rf"{skill.folder / 'features.json'}: lists 12 features, but the scaler \(pipeline.joblib\) takes 13",
    )


def test_a_feature_list_the_model_contradicts_is_refused(tmp_path):
    skill = own_models.pickled_booster(tmp_path / "team")  # the booster names its features
    renamed = [*skill.feature_names[1:], skill.feature_names[0]]
    (skill.folder / "features.json").write_text(json.dumps(renamed))
    refused_skill_import(tmp_path / "team", TRUSTED, rf"{skill.folder / 'features.json'}: lists the features .* states")


def test_a_model_that_does_not_name_its_features_needs_a_features_file(tmp_path):
    skill = own_models.joblib_pipeline(tmp_path / "team")
    (skill.folder / "features.json").unlink()
    refused_skill_import(tmp_path / "team", TRUSTED, rf"{skill.folder}: the model does not name its features")


@pytest.mark.parametrize("name", [" padded", "x" * 64, "é" * 32, "student_id", ""])
def test_an_unusable_feature_name_is_refused(tmp_path, name):
    skill = own_models.joblib_pipeline(tmp_path / "team")
    (skill.folder / "features.json").write_text(json.dumps([name, *skill.feature_names[1:]]))
    refused_skill_import(
        tmp_path / "team", TRUSTED, rf"{skill.folder / 'features.json'}: feature name .* is not usable"
    )


def test_features_without_an_imputation_default_are_refused_unless_the_means_are_asked_for(tmp_path):
    skill = own_models.joblib_pipeline(tmp_path / "team")
    refused_skill_import(
        tmp_path / "team", ImportOptions(trust_pickles=True), rf"{skill.folder}: no imputation default for \['alcohol'"
    )


def test_a_pipeline_of_other_steps_is_refused_naming_them(tmp_path):
    data = load_wine()
    pipeline = make_pipeline(MinMaxScaler(), xgb.XGBClassifier(n_estimators=5)).fit(data.data, data.target == 0)
    folder = tmp_path / "team" / "wine_minmax"
    folder.mkdir(parents=True)
    joblib.dump(pipeline, folder / "pipeline.joblib")
    refused_skill_import(
        tmp_path / "team",
        TRUSTED,
        rf"{folder / 'pipeline.joblib'}: a pipeline of \[\('minmaxscaler', 'MinMaxScaler'\), \('xgbclassifier', "
        r"'XGBClassifier'\)\]; expected exactly a StandardScaler then an XGBClassifier",
    )


def test_a_multiclass_classifier_is_refused(tmp_path):
    data = load_iris()
    scaler = StandardScaler().fit(data.data)
    folder = tmp_path / "team" / "iris_species"
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(xgb.XGBClassifier(n_estimators=5).fit(data.data, data.target)))
    (folder / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    refused_skill_import(tmp_path / "team", TRUSTED, rf"{folder / 'model.pkl'}: the XGBClassifier has 3 classes")


def test_one_bad_folder_refuses_the_whole_import(tmp_path):
    own_models.json_model(tmp_path / "team")
    bad = own_models.joblib_pipeline(tmp_path / "team")
    (bad.folder / "features.json").write_text(json.dumps(bad.feature_names[:3]))
    refused_skill_import(tmp_path / "team", TRUSTED, "lists 3 features")


def test_a_folder_named_as_no_skill_can_be_is_refused(tmp_path):
    skill = own_models.json_model(tmp_path / "team")
    shutil.move(skill.folder, tmp_path / "team" / "Disease-Progression")
    with pytest.raises(ArtifactError, match="is not a usable skill name"):
        import_skill_models(tmp_path / "team", version="v0.0.1-refused", options=TRUSTED)


# --- intent and text pair -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_intent(tmp_path_factory) -> own_models.OwnIntent:
    return own_models.intent_models(tmp_path_factory.mktemp("intent"))


def test_intent_models_import_with_their_own_labels_and_verticals(own_intent):
    version = "v0.1.0-own"
    options = ImportOptions(trust_pickles=True, verticals=tuple(own_models.VERTICALS))
    try:
        assert import_intent_models(own_intent.folder, version=version, options=options) == [
            f"{name}:{version}" for name in INTENT_NAMES
        ]
        for name, original in zip(
            INTENT_NAMES, (own_intent.classic, own_intent.ensemble, own_intent.verticals), strict=True
        ):
            stored = load_stored_text_model(name, version)
            assert np.allclose(
                stored.estimator.predict_proba(own_intent.texts),
                original.predict_proba(own_intent.texts),
                atol=CONVERSION_TOLERANCE,
                rtol=0,
            )
        assert load_stored_text_model("intent-classic", version).labels == tuple(sorted(own_models.DATA_SETS))
        verticals = load_stored_text_model("intent-verticals", version)
        assert verticals.labels == own_models.VERTICALS and verticals.metadata["thresholds"] == own_intent.thresholds
    finally:
        delete_from_store(INTENT_NAMES, version)


def test_one_intent_model_is_imported_as_both_variants(tmp_path, own_intent):
    joblib.dump(own_intent.classic, tmp_path / "model.joblib")
    version = "v0.1.1-own"
    try:
        assert import_intent_models(tmp_path, version=version, options=ImportOptions(trust_pickles=True)) == [
            f"intent-classic:{version}",
            f"intent-ensemble:{version}",
        ]
    finally:
        delete_from_store(INTENT_NAMES, version)


def test_labels_the_metadata_contradicts_are_refused(tmp_path, own_intent):
    shutil.copytree(own_intent.folder, tmp_path / "intent")
    classic = tmp_path / "intent" / "classic"
    (classic / "metadata.json").write_text(json.dumps({"labels": sorted(own_models.DATA_SETS, reverse=True)}))
    version = "v0.0.1-refused"
    with pytest.raises(
        ArtifactError, match=rf"{classic / 'model.pkl'}: the metadata's labels .* are not the estimator's classes"
    ):
        import_intent_models(
            tmp_path / "intent",
            version=version,
            options=ImportOptions(trust_pickles=True, verticals=tuple(own_models.VERTICALS)),
        )
    assert_nothing_stored(INTENT_NAMES, version)


def test_a_vertical_detector_without_names_for_its_columns_is_refused(own_intent):
    version = "v0.0.1-refused"
    with pytest.raises(ArtifactError, match=r"verticals/model\.joblib: the detector's classes are column numbers"):
        import_intent_models(own_intent.folder, version=version, options=ImportOptions(trust_pickles=True))
    with pytest.raises(
        ArtifactError, match=r"verticals/model\.joblib: --verticals names 2 columns; the estimator has 3 classes"
    ):
        import_intent_models(
            own_intent.folder, version=version, options=ImportOptions(trust_pickles=True, verticals=("a", "b"))
        )
    assert_nothing_stored(INTENT_NAMES, version)


def test_intent_pickles_need_the_trust_flag_too(own_intent):
    with pytest.raises(ArtifactError, match=r"classic/model\.pkl: a pickle runs code"):
        import_intent_models(own_intent.folder, version="v0.0.1-refused", options=ImportOptions())
    assert_nothing_stored(INTENT_NAMES, "v0.0.1-refused")


def test_a_text_pair_model_with_numbered_labels_infers_its_positive_label(tmp_path):
    folder = tmp_path / "pairs" / "textpair"
    folder.mkdir(parents=True)
    estimator = DummyClassifier(strategy="prior").fit([[0], [1], [2]], [1, 0, 1])
    joblib.dump(estimator, folder / "model.joblib")
    version = "v0.1.0-own"
    samples = tmp_path / "pairs.csv"
    samples.write_text("text1,text2\na cat,a cat\nrain,the stock market\n")
    try:
        options = ImportOptions(trust_pickles=True, samples=samples)
        assert import_textpair_model(tmp_path / "pairs", version=version, options=options) == [f"textpair:{version}"]
        stored = load_stored_text_model("textpair", version)
        assert stored.labels == ("0", "1") and stored.metadata["positive_label"] == "1"
        assert stored.metadata["samples"]["inputs"] == [["a cat", "a cat"], ["rain", "the stock market"]]
    finally:
        delete_from_store(["textpair"], version)


def test_a_text_pair_model_whose_positive_label_is_unknown_is_refused(tmp_path):
    estimator = DummyClassifier(strategy="prior").fit([[0], [1]], ["near", "far"])
    joblib.dump(estimator, tmp_path / "model.joblib")
    version = "v0.0.1-refused"
    for options, match in (
        (
            ImportOptions(trust_pickles=True),
            r"say which of \['far', 'near'\] means the same meaning \(--positive-label\)",
        ),
        (
            ImportOptions(trust_pickles=True, positive_label="same"),
            r"the positive label 'same' is not one of its labels",
        ),
    ):
        with pytest.raises(ArtifactError, match=rf"{tmp_path / 'model.joblib'}: {match}"):
            import_textpair_model(tmp_path, version=version, options=options)
    assert_nothing_stored(["textpair"], version)


# --- the command line ---------------------------------------------------------------------------------------------


def test_the_family_is_recognised_from_the_folder(tmp_path, own_intent):
    assert recognise_family(own_intent.folder) == "intent"
    own_models.json_model(tmp_path / "skills")
    assert recognise_family(tmp_path / "skills") == "skills"
    assert recognise_family(tmp_path / "skills" / "disease_progression") == "skills"
    (tmp_path / "pairs" / "textpair").mkdir(parents=True)
    assert recognise_family(tmp_path / "pairs") == "textpair"
    joblib.dump(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "model.joblib")
    with pytest.raises(ValueError, match="cannot tell the family"):
        recognise_family(tmp_path)


def test_the_cli_refuses_a_flag_of_another_family_and_reports_errors_without_a_traceback(tmp_path, capsys):
    own_models.json_model(tmp_path / "team")
    assert import_main([str(tmp_path / "team"), "--version", "v0.0.1-refused", "--verticals", "a,b"]) == 2
    assert "--verticals: not a flag of the skills family" in capsys.readouterr().err
    assert (
        import_main(
            [str(tmp_path / "team"), "--version", "v0.0.1-refused", "--positive-label", "1", "--family", "intent"]
        )
        == 2
    )
    assert "--positive-label: not a flag of the intent family" in capsys.readouterr().err
    assert import_main([str(tmp_path / "team")]) == 2
    assert "version 'team' is not a semantic version" in capsys.readouterr().err


def test_the_cli_imports_a_teams_folder_and_prints_the_tags(tmp_path, capsys):
    skill = own_models.pickled_classifier(tmp_path / "team")
    version = "v0.2.0-own"
    try:
        arguments = [str(tmp_path / "team"), "--version", version, "--trust-pickles", "--imputation", "means"]
        assert import_main(arguments) == 0
        assert capsys.readouterr().out == f"imported skill-{skill.name}:{version}\n"
    finally:
        delete_from_store([skill_model_name(skill.name)], version)
