"""A team's own models, end to end: trained outside the package on data sets that ship with scikit-learn (feature
names and labels the project has never seen), exported in every supported format, imported with
`import_models.py`, served by `bentoml serve`, and every HTTP answer compared with the original model's
`predict_proba` (to 1e-6). The skills are served beside the seven demo skills by import and `INFERENCE_SKILLS`
only, the example of docs/models.md among them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.families.skills.scoring import score_rows
from inference.store.importing import CONVERSION_TOLERANCE
from tests.conftest import STABLE
from tests.utils import own_models
from tests.utils.docs import doc_block
from tests.utils.servers import PROJECT_ROOT, RunningServer, start_server
from train.data.catalogue import SKILLS

pytestmark = [pytest.mark.server, pytest.mark.slow]

IMPORT = [sys.executable, str(PROJECT_ROOT / "import_models.py")]
DOC_COMMANDS = re.search(
    r"```python\n.*?```\n.*?```bash\n(.*?)```", (PROJECT_ROOT / "docs" / "models.md").read_text(), re.DOTALL
)
DEFAULT_INTENT = "iris"


@dataclass(frozen=True)
class OwnModels:
    skills: list[own_models.OwnSkill]  # every format, the docs' example last
    intent: own_models.OwnIntent
    pairs: own_models.OwnTextPair
    served_skills: list[str]  # INFERENCE_SKILLS: the docs' list (the demo's seven and its own), and ours
    store: Path
    import_output: str


def run_docs_example(folder: Path, env: dict[str, str]) -> tuple[own_models.OwnSkill, list[str], str]:
    """docs/models.md's example as a reader runs it in `folder`: its Python block, then its import command; the
    skill it made, the skills its serve command lists, and what the import printed."""
    folder.mkdir(parents=True)
    namespace: dict[str, Any] = {}
    with contextlib.chdir(folder):
        exec(compile(doc_block("models.md", "python"), "docs/models.md", "exec"), namespace)
    import_line, serve_line = DOC_COMMANDS.group(1).strip().splitlines()
    command = import_line.replace(".venv/bin/python import_models.py", " ".join(IMPORT))
    imported = subprocess.run(command, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    served = json.loads(re.search(r"INFERENCE_SKILLS='(.*?)'", serve_line).group(1))
    model, scaler = namespace["model"], namespace["scaler"]
    skill = own_models.OwnSkill(
        name=namespace["folder"].name,
        folder=folder / namespace["folder"],
        feature_names=list(namespace["wine"].feature_names),
        rows=namespace["wine"].data[::6],
        probability=lambda rows: model.predict_proba(scaler.transform(rows))[:, 1],
        training_mean=scaler.mean_,
    )
    return skill, served, imported.stdout


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, trained_versions: dict[str, Path]) -> OwnModels:
    root = tmp_path_factory.mktemp("own-models")
    store = root / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(store)}
    skills = [factory(root / "skills") for factory in own_models.SKILL_FACTORIES]
    intent = own_models.intent_models(root)
    pairs = own_models.textpair_model(root)
    outputs = []
    for arguments in (
        [str(trained_versions[STABLE])],  # the seven demo skills, as `python -m train` wrote them
        [str(root / "skills"), "--version", STABLE, "--trust-pickles", "--imputation", "means"],
        [str(intent.folder), "--version", STABLE, "--trust-pickles", "--verticals", ",".join(own_models.VERTICALS)],
        [str(pairs.folder), "--version", STABLE, "--trust-pickles", "--positive-label", own_models.SAME_SOURCE],
    ):
        imported = subprocess.run([*IMPORT, *arguments], env=env, capture_output=True, text=True, timeout=300)
        assert imported.returncode == 0, imported.stderr
        outputs.append(imported.stdout)
    example, served, output = run_docs_example(root / "example", env)
    return OwnModels(
        skills=[*skills, example],
        intent=intent,
        pairs=pairs,
        served_skills=[*served, *(skill.name for skill in skills)],
        store=store,
        import_output="".join([*outputs, output]),
    )


@pytest.fixture(scope="module")
def own_server(own: OwnModels, session_dir: Path) -> Iterator[RunningServer]:
    env = {
        "BENTOML_HOME": str(own.store),
        "INFERENCE_SKILLS": json.dumps(own.served_skills),  # every version pinned by models.env: v1.0.0
        "INFERENCE_DEFAULT_INTENT": DEFAULT_INTENT,
        "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "10000",
        "CACHE_URL": "none://",  # every answer below comes from the model
    }
    with start_server(session_dir / "logs-own-models", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def http(own_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_server.url, timeout=60) as client:
        yield client


def test_every_import_printed_its_tags(own):
    expected = [f"skill-{skill}:{STABLE}" for skill in [*SKILLS, *(skill.name for skill in own.skills)]]
    expected += [f"intent-{model}:{STABLE}" for model in ("classic", "ensemble", "verticals")]
    expected += [f"textpair:{STABLE}"]
    assert sorted(own.import_output.split()) == sorted(["imported"] * len(expected) + expected)


def test_every_own_skill_answers_over_http_as_the_original_model(own, http):
    for skill in own.skills:
        items = [
            {
                "student_id": f"{skill.name}-{index}",
                "skill": skill.name,
                "features": dict(zip(skill.feature_names, row, strict=True)),
            }
            for index, row in enumerate(skill.rows.tolist())
        ]
        answer = http.post("/api/v1/skills/infer/batch", json={"items": items}).json()
        assert answer["failed"] == 0, answer
        scores = np.array([result["score"] for result in answer["results"]])
        assert np.max(np.abs(scores - skill.probability(skill.rows))) <= CONVERSION_TOLERANCE, skill.name
        assert {result["model_version"] for result in answer["results"]} == {STABLE}
        single = http.post("/api/v1/skills/infer", json=items[0]).json()
        assert abs(single["score"] - skill.probability(skill.rows[:1])[0]) <= CONVERSION_TOLERANCE


def test_a_missing_feature_takes_the_documented_default(own, http):
    by_name = {skill.name: skill for skill in own.skills}
    means, declared = by_name["tumour_malignancy"], by_name["disease_progression"]
    defaults = {
        entry["name"]: entry["default"] for entry in json.loads((declared.folder / "features.json").read_text())
    }
    for skill, feature, default in (
        (means, "mean radius", means.training_mean[0]),  # --imputation means: the scaler's training mean
        (declared, "bmi", defaults["bmi"]),  # the default in features.json
    ):
        row = skill.rows[0].copy()
        features = dict(zip(skill.feature_names, row.tolist(), strict=True))
        del features[feature]
        answer = http.post("/api/v1/skills/infer", json={"student_id": "s", "skill": skill.name, "features": features})
        assert answer.json()["imputed_features"] == [feature]
        row[skill.feature_names.index(feature)] = default
        assert abs(answer.json()["score"] - skill.probability(row[None, :])[0]) <= CONVERSION_TOLERANCE


def test_the_demo_skills_answer_as_before_beside_the_new_ones(own, http, stable_models):
    listed = {model["skill"]: model for model in http.get("/api/v1/skills/models").json()["models"]}
    assert sorted(listed) == sorted(own.served_skills) and len(listed) == len(SKILLS) + len(own.skills)
    for skill in SKILLS:
        model = stable_models[skill]
        rows = np.array(model.metadata["samples"]["inputs"][:5])
        items = [
            {
                "student_id": f"{skill}-{index}",
                "skill": skill,
                "features": dict(zip(model.feature_names, row, strict=True)),
            }
            for index, row in enumerate(rows.tolist())
        ]
        scores = [
            result["score"]
            for result in http.post("/api/v1/skills/infer/batch", json={"items": items}).json()["results"]
        ]
        assert np.max(np.abs(np.array(scores) - score_rows(model, rows).score)) <= CONVERSION_TOLERANCE, skill


def test_the_models_route_reports_each_imported_schema(own, http):
    listed = {model["skill"]: model for model in http.get("/api/v1/skills/models").json()["models"]}
    by_name = {skill.name: skill for skill in own.skills}
    for name, skill in by_name.items():
        assert listed[name]["feature_names"] == skill.feature_names and listed[name]["served_version"] == STABLE
    bmi = next(feature for feature in listed["disease_progression"]["features"] if feature["name"] == "bmi")
    assert bmi["unit"] == "standardised" and (bmi["minimum"], bmi["maximum"]) == (-1.0, 1.0)
    assert bmi["description"] == "The data set's bmi, mean-centred and scaled."
    wine = listed["wine_cultivar"]["features"]
    assert [feature["imputation_default"] for feature in wine] == pytest.approx(
        by_name["wine_cultivar"].training_mean.tolist()
    )


@pytest.mark.parametrize("variant", ["classic", "ensemble"])
def test_intent_answers_are_the_original_models(own, http, variant):
    intent = own.intent
    answer = http.post("/api/classify/batch", json={"texts": intent.texts}, headers={"X-Model-Preference": variant})
    results = answer.json()["results"]
    original = getattr(intent, variant)
    probabilities = original.predict_proba(intent.texts)
    vertical_scores = intent.verticals.predict_proba(intent.texts)
    thresholds = np.array([intent.thresholds[vertical] for vertical in own_models.VERTICALS])
    for index, result in enumerate(results):
        best = int(np.argmax(probabilities[index]))
        assert (result["variant"], result["fallback"], result["model_version"]) == (variant, False, STABLE)
        assert result["intent"] == original.classes_[best]
        assert abs(result["confidence"] - probabilities[index, best]) <= CONVERSION_TOLERANCE
        detected = {item["vertical"]: item["score"] for item in result["verticals"]}
        expected = {
            vertical: vertical_scores[index, column]
            for column, vertical in enumerate(own_models.VERTICALS)
            if vertical_scores[index, column] >= thresholds[column]
        }
        assert detected.keys() == expected.keys()
        assert all(abs(detected[vertical] - expected[vertical]) <= CONVERSION_TOLERANCE for vertical in expected)
    answered = {result["intent"] for result in results}
    assert len(answered) > 1 and answered <= set(own_models.DATA_SETS)  # the model's own labels


def test_text_pair_answers_are_the_original_models(own, http):
    model = own.pairs.model
    same = list(model.classes_).index(own_models.SAME_SOURCE)
    for pair, probability in zip(own.pairs.pairs, model.predict_proba(own.pairs.pairs)[:, same], strict=True):
        answer = http.post("/predict", json={"text1": pair[0], "text2": pair[1]}).json()
        assert answer["label"] == (own_models.SAME_SOURCE if probability >= 0.5 else own_models.OTHER_SOURCE)
        answered = answer["confidence"] if answer["prediction"] == 1 else 1 - answer["confidence"]
        assert abs(answered - probability) <= CONVERSION_TOLERANCE
