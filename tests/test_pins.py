"""models.env is the one file of a build's model versions: bentofile.yaml's model list is written from it
(`python -m tools.pins`), and `--from-store` pins what a model store holds (a team's imported models)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

from tests.utils import own_models
from tests.utils.servers import PROJECT_ROOT
from tools import pins


def test_the_bentofile_carries_exactly_models_envs_pins():
    assert pins.main(["--check"]) == 0
    listed = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())["models"]
    assert listed == pins.pinned() and not [tag for tag in listed if tag.endswith(":latest")]


def test_writing_the_list_changes_the_models_block_only():
    bentofile = (PROJECT_ROOT / "bentofile.yaml").read_text()
    rewritten = pins.written(bentofile, ["skill-a:v9.0.0"])
    assert yaml.safe_load(rewritten)["models"] == ["skill-a:v9.0.0"]
    before, after = yaml.safe_load(bentofile), yaml.safe_load(rewritten)
    assert {key: value for key, value in before.items() if key != "models"} == {
        key: value for key, value in after.items() if key != "models"
    }


def test_from_store_pins_a_teams_imported_skills_and_writes_them_into_the_bentofile(tmp_path):
    store = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(store)}
    skill = own_models.unscaled_classifier(tmp_path / "team")
    imported = subprocess.run(
        [
            sys.executable,
            "import_models.py",
            str(tmp_path / "team"),
            "--family",
            "skills",
            "--version",
            "v3.1.0",
            "--trust-pickles",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0, imported.stderr
    models_env, bentofile = tmp_path / "models.env", tmp_path / "bentofile.yaml"
    shutil.copy(PROJECT_ROOT / "models.env", models_env)
    shutil.copy(PROJECT_ROOT / "bentofile.yaml", bentofile)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.pins",
            "--from-store",
            "--models-env",
            str(models_env),
            "--bentofile",
            str(bentofile),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    pinned_env = models_env.read_text()
    assert "INFERENCE_SKILLS_VERSION=v3.1.0\n" in pinned_env and f'INFERENCE_SKILLS=["{skill.name}"]\n' in pinned_env
    assert 'INFERENCE_FAMILIES=["skills"]\n' in pinned_env  # the store holds no intent or text-pair models
    assert "# Model versions served by this build" in pinned_env  # its comments kept
    assert yaml.safe_load(bentofile.read_text())["models"] == [f"skill-{skill.name}:v3.1.0"]  # the store's only
