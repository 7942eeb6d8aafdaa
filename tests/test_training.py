import json

import numpy as np

from inference.families import FAMILIES
from inference.families.skills.artifacts import read_metadata
from inference.settings import MODEL_PINS_FILE, Settings
from train import publish
from train.__main__ import main as train_main
from train.data.catalogue import FEATURES, SKILL_FEATURES, SKILLS


def test_report_has_meaningful_metrics_for_every_skill(trained_versions):
    report = json.loads((trained_versions["v1.0.0"] / "report.json").read_text())
    assert report["version"] == "v1.0.0"
    assert set(report["skills"]) == set(SKILLS)
    for skill, metrics in report["skills"].items():
        assert 0.75 < metrics["auc"] < 0.97, skill
        assert metrics["rating_pearson_r"] > 0.5, skill
        assert 0 < metrics["brier"] < 0.25, skill
        assert 0.6 < metrics["accuracy"] < 1 and 0 < metrics["f1"] < 1, skill
    assert (trained_versions["v1.0.0"] / "report.md").read_text().startswith("# Skills models v1.0.0")
    # Generated data stays the default: the demo's students, labelled by the demo's rule, all parameters recorded.
    assert report["data"] == {"source": "generated students (seed 7)", "label": "rating >= 3.5"}
    assert report["params"]["n_students"] == 20_000 and report["n_train"] + report["n_test"] == 20_000


def test_artifacts_carry_features_defaults_and_reference_distributions(trained_versions):
    for skill in SKILLS:
        metadata = read_metadata(trained_versions["v1.0.0"] / skill)
        assert metadata["feature_names"] == list(SKILL_FEATURES[skill])
        assert set(metadata["imputation_defaults"]) == set(SKILL_FEATURES[skill])
        for name in SKILL_FEATURES[skill]:  # the demo catalogue's units and ranges travel with the model
            feature = FEATURES[name]
            assert metadata["features"][name] == {
                "unit": feature.unit,
                "minimum": feature.minimum,
                "maximum": feature.maximum,
                "description": feature.description,
            }
            assert feature.minimum <= metadata["imputation_defaults"][name] <= feature.maximum
        assert set(metadata["reference"]["features"]) == set(SKILL_FEATURES[skill])
        shares = metadata["reference"]["score"]["shares"]
        assert abs(sum(shares) - 1) < 1e-9 and len(shares) == len(metadata["reference"]["score"]["edges"]) + 1


def test_another_seed_and_hyperparameters_give_a_different_comparable_model(trained_versions):
    stable = json.loads((trained_versions["v1.0.0"] / "report.json").read_text())
    candidate = json.loads((trained_versions["v1.1.0"] / "report.json").read_text())
    assert stable["training_data_hash"] != candidate["training_data_hash"]
    assert stable["params"] != candidate["params"]
    for skill in SKILLS:
        assert abs(stable["skills"][skill]["auc"] - candidate["skills"][skill]["auc"]) < 0.05, skill
    stable_model = (trained_versions["v1.0.0"] / "communication" / "model.json").read_bytes()
    assert stable_model != (trained_versions["v1.1.0"] / "communication" / "model.json").read_bytes()


def test_cli_trains_into_a_versioned_folder_and_refuses_to_overwrite(tmp_path, capsys):
    argv = ["skills", "--version", "v0.0.1", "--out", str(tmp_path), "--n-students", "1500", "--n-estimators", "20"]
    assert train_main(argv) == 0
    assert (tmp_path / "skills" / "v0.0.1" / "leadership" / "model.json").is_file()
    printed = capsys.readouterr()
    assert "AUC" in printed.out
    # Off a terminal, a progress line per model trained, on stderr: stdout keeps the summary alone.
    progress = printed.err.splitlines()
    assert len(progress) == len(SKILLS) and all(line.startswith("trained ") and "ETA" in line for line in progress)
    assert progress[0].startswith(f"trained 1/{len(SKILLS)} models") and "AUC" in progress[0]
    assert progress[-1].startswith(f"trained {len(SKILLS)}/{len(SKILLS)} models (100.0%)")
    assert train_main(argv) == 2
    assert "already holds artifacts" in capsys.readouterr().err


def test_the_same_seed_reproduces_the_same_data_hash(tmp_path):
    for name in ("a", "b"):
        train_main(
            [
                "skills",
                "--version",
                "v0.0.1",
                "--out",
                str(tmp_path / name),
                "--n-students",
                "1000",
                "--n-estimators",
                "5",
            ]
        )
    first = json.loads((tmp_path / "a" / "skills" / "v0.0.1" / "report.json").read_text())
    second = json.loads((tmp_path / "b" / "skills" / "v0.0.1" / "report.json").read_text())
    assert first["training_data_hash"] == second["training_data_hash"]
    assert np.isclose(first["skills"]["creativity"]["auc"], second["skills"]["creativity"]["auc"])


def test_publish_copies_each_pinned_versions_report_and_plots_and_nothing_else(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(publish, "REPORTS", tmp_path / "docs-reports")  # never the real docs/reports
    pins = Settings(_env_file=MODEL_PINS_FILE)
    pinned = {family: pins.version_of(family) for family in FAMILIES}
    artifacts = tmp_path / "artifacts"
    for family in FAMILIES:
        for version in (pinned[family], "v9.9.9"):  # the pinned version's report is published, no other
            source = artifacts / family / version
            source.mkdir(parents=True)
            (source / "report.md").write_text(f"# {family} {version}\n")
            (source / "roc.png").write_bytes(f"png {version}".encode())
            (source / "report.json").write_text("{}")
        (artifacts / family / pinned[family] / "model").mkdir()
    stale = tmp_path / "docs-reports" / "skills" / "old-plot.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")

    assert publish.main(["--artifacts", str(artifacts)]) == 0
    for family in FAMILIES:
        published = tmp_path / "docs-reports" / family
        assert sorted(path.name for path in published.iterdir()) == ["report.md", "roc.png"]
        assert (published / "report.md").read_text() == f"# {family} {pinned[family]}\n"
        assert (published / "roc.png").read_bytes() == f"png {pinned[family]}".encode()
    assert f"skills {pinned['skills']}: " in capsys.readouterr().out

    (artifacts / "textpair" / pinned["textpair"] / "report.md").unlink()
    assert publish.main(["--artifacts", str(artifacts)]) == 2
    assert f"report.md is missing; train textpair {pinned['textpair']} first" in capsys.readouterr().err
