"""docs/retraining.md runs as written: its walkthrough trains, imports and compares two skill versions in a scratch
model store, and its export snippet and SQL give each rated skill with the student's features and latest rating."""

import csv
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from inference.catalogue import FEATURES, SKILLS
from inference.ground_truth import store_ratings
from inference.storage import engine_for, student_features
from tests.utils.servers import PROJECT_ROOT

DOC = (PROJECT_ROOT / "docs" / "retraining.md").read_text()
WALKTHROUGH = re.search(r"## Try it on one machine\n.*?```bash\n(.*?)```", DOC, flags=re.DOTALL).group(1)
EXPORT = re.search(r"## 1\. Export the training data\n(.*?)\n## 2\.", DOC, flags=re.DOTALL).group(1)
EXPORT_SQL = re.search(r"```sql\n(.*?)```", EXPORT, flags=re.DOTALL).group(1)
EXPORT_PYTHON = re.search(r"```python\n(.*?)```", EXPORT, flags=re.DOTALL).group(1)
VENV_BIN = f"{Path(sys.executable).parent}/"


@pytest.mark.slow
def test_the_walkthrough_trains_imports_and_compares_two_versions_in_a_scratch_store(tmp_path):
    # One bash script, as an operator pastes it (the block exports BENTOML_HOME and holds a heredoc); its
    # `mktemp -d` folders land in tmp_path, so the scratch store and artifacts go with the test.
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", WALKTHROUGH.replace(".venv/bin/", VENV_BIN)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,  # two trainings and two imports: seconds alone, minutes on a busy shared machine
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    output = run.stdout

    [artifacts] = tmp_path.glob("tmp.*/skills/v1.1.0")
    [store] = tmp_path.glob("tmp.*/bentoml/models")
    assert (store / "skill-communication" / "v1.1.0").is_dir() and (store / "skill-leadership" / "v1.0.0").is_dir()
    report = json.loads((artifacts / "report.json").read_text())
    assert "# Skills models v1.1.0" in output and (artifacts / "roc.png").is_file()
    for version in ("v1.0.0", "v1.1.0"):
        assert all(f"imported skill-{skill}:{version}\n" in output for skill in SKILLS)
        assert re.search(rf"^ skill-communication:{re.escape(version)} ", output, flags=re.MULTILINE)
    assert "labels: {'family': 'skills', 'skill': 'communication'}" in output
    assert "  semver: v1.1.0\n" in output
    assert f"  training_data_hash: {report['training_data_hash']}\n" in output
    for skill in SKILLS:
        # Each `train` prints AUC, F1 and r per skill: v1.0.0's run first, then v1.1.0's.
        trained = re.findall(rf"^  {skill} +AUC (\d\.\d{{3}})  F1 \d\.\d{{3}}  r \d\.\d{{3}}$", output, re.MULTILINE)
        assert len(trained) == 2 and trained[1] == f"{report['skills'][skill]['auc']:.3f}", skill
        [line] = [line for line in output.splitlines() if line.startswith(f"{skill} ")]
        assert line.count(" -> ") == 3
        assert f" -> {report['skills'][skill]['auc']:.3f}" in line


@pytest.mark.clock
def test_the_export_snippet_and_sql_give_each_rated_skill_with_features_and_latest_rating(tmp_path):
    url = f"sqlite:///{tmp_path / 'inference.db'}"
    env = {**os.environ, "DATABASE_URL": url}
    generate = [sys.executable, "-m", "inference.batch", "generate", "--students", "30"]
    subprocess.run(generate, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, timeout=120)
    engine = engine_for(url)
    now = datetime.now(UTC)
    rating = {"student_id": "student-0000001", "skill": "leadership"}
    store_ratings(
        engine,
        [
            {**rating, "rating": 2.0, "rated_at": now - timedelta(days=2)},
            {**rating, "rating": 4.5, "rated_at": now - timedelta(days=1)},  # received last: the one exported
            {"student_id": "student-0000001", "skill": "creativity", "rating": 3.0, "rated_at": now},
            {"student_id": "student-0000007", "skill": "creativity", "rating": 1.5, "rated_at": now},
            {"student_id": "not-a-student", "skill": "creativity", "rating": 5.0, "rated_at": now},  # no features
        ],
    )
    expected = [
        ("student-0000001", "creativity", 3.0),
        ("student-0000001", "leadership", 4.5),
        ("student-0000007", "creativity", 1.5),
    ]

    (tmp_path / "export_training_data.py").write_text(EXPORT_PYTHON)
    run = subprocess.run(
        [sys.executable, "export_training_data.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with (tmp_path / "training-data.csv").open(newline="") as exported:
        rows = list(csv.DictReader(exported))
    assert [(row["student_id"], row["skill"], float(row["rating"])) for row in rows] == expected
    with engine.connect() as connection:
        stored = connection.execute(
            select(student_features).where(student_features.c.student_id == "student-0000007")
        ).one()
        from_sql = connection.execute(text(EXPORT_SQL)).all()
    for name in FEATURES:
        value = getattr(stored, name)
        assert rows[2][name] == ("" if value is None else str(value)), name
    assert [(row.student_id, row.skill, row.rating) for row in from_sql] == expected
    engine.dispose()


def test_the_docs_give_one_recipe_for_the_skills_v1_1_0_example():
    # The README, models.md, versions.md and this procedure train the same example version (the walkthrough's is
    # smaller).
    pattern = r"python -m train skills --version v1\.1\.0 (--seed [^#\n]*?)\s*(?:#|$)"
    recipes = {
        page: re.findall(pattern, (PROJECT_ROOT / page).read_text(), flags=re.MULTILINE)
        for page in ("README.md", "docs/models.md", "docs/versions.md", "docs/retraining.md")
    }
    assert all(len(found) == 1 for found in recipes.values()), recipes
    assert len({found[0] for found in recipes.values()}) == 1, recipes
