"""The README's "serve your own models in three commands", run as written against an empty model store: the import
of a team's skill folders (one with a scaler, one without), `bentoml serve` of what the store holds
(INFERENCE_MODELS_FILE=none: no pins, nothing trained), and the call; every answer equal to the original model's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.store.importing import CONVERSION_TOLERANCE
from tests.utils import own_models
from tests.utils.servers import PROJECT_ROOT, start_server

pytestmark = pytest.mark.server

README = (PROJECT_ROOT / "README.md").read_text()
COMMANDS = re.search(r"Serve your own models in three commands.*?```bash\n(.*?)```", README, re.DOTALL)


def test_the_readmes_three_commands_serve_a_teams_models_and_nothing_else(tmp_path, session_dir):
    assert COMMANDS, "README: the three commands of 'Your models, your data' are gone"
    import_line, serve_line, call_line = COMMANDS.group(1).strip().splitlines()
    skills = [
        own_models.unscaled_classifier(tmp_path / "my-skills"),
        own_models.pickled_classifier(tmp_path / "my-skills"),
    ]
    for skill in skills:  # what features.json says: the names in the model's order, each with a default
        defaults = [
            {"name": name, "default": float(mean)}
            for name, mean in zip(skill.feature_names, skill.training_mean, strict=True)
        ]
        (skill.folder / "features.json").write_text(json.dumps(defaults))
    store = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(store)}

    # Run from the checkout, as the README's commands are; the team's folder is here.
    command = import_line.split("#")[0].replace(".venv/bin/python", sys.executable)
    command = command.replace(" my-skills/", f" {tmp_path / 'my-skills'}/")
    imported = subprocess.run(
        command, shell=True, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert imported.returncode == 0, imported.stderr
    assert sorted(imported.stdout.split()) == sorted(["imported"] * 2 + [f"skill-{s.name}:v2.0.0" for s in skills])

    serve_env = dict(part.split("=", 1) for part in serve_line.split("#")[0].split() if "=" in part)
    assert serve_env == {"INFERENCE_MODELS_FILE": "none"} and "bentoml serve service:Inference" in serve_line
    with (
        start_server(session_dir / "logs-serve-store", env={"BENTOML_HOME": str(store), **serve_env}) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert call_line.split()[2].startswith("localhost:3000/api/v1/skills/models")
        listed = {model["skill"]: model for model in http.get("/api/v1/skills/models").json()["models"]}
        assert sorted(listed) == sorted(skill.name for skill in skills)  # the store's, not the demo's seven
        health = http.get("/health").json()
        assert [family["family"] for family in health["families"]] == ["skills"]  # no intent, no text pair
        for skill in skills:
            items = [
                {
                    "student_id": f"s{index}",
                    "skill": skill.name,
                    "features": dict(zip(skill.feature_names, row, strict=True)),
                }
                for index, row in enumerate(skill.rows.tolist())
            ]
            answer = http.post("/api/v1/skills/infer/batch", json={"items": items}).json()
            scores = np.array([result["score"] for result in answer["results"]])
            assert np.max(np.abs(scores - skill.probability(skill.rows))) <= CONVERSION_TOLERANCE, skill.name
            assert {result["model_version"] for result in answer["results"]} == {"v2.0.0"}
    models = sorted(path.name for path in (store / "models").iterdir())
    assert models == sorted(f"skill-{skill.name}" for skill in skills)  # nothing was trained into the store
    assert not Path(tmp_path / "artifacts").exists()
