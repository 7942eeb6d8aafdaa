"""docs/retraining.md runs as written: its walkthrough goes round the loop (ratings posted to a real server, the
export, a version trained on it, imported, made a canary and promoted), and its SQL gives the rows the export
writes: each rated skill with the student's features and latest rating."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from inference.monitoring.ground_truth import store_ratings
from inference.storage import engine_for
from tests.utils.servers import PROJECT_ROOT, free_port
from train.data.catalogue import FEATURES, SKILLS
from train.data.students import generate_students
from train.datasets import read_table

DOC = (PROJECT_ROOT / "docs" / "retraining.md").read_text()
WALKTHROUGH = re.search(r"## Try it on one machine\n.*?```bash\n(.*?)```", DOC, flags=re.DOTALL).group(1)
EXPORT = re.search(r"## 2\. Export the training data\n(.*?)\n## 3\.", DOC, flags=re.DOTALL).group(1)
EXPORT_SQL = re.search(r"```sql\n(.*?)```", EXPORT, flags=re.DOTALL).group(1)
VENV_BIN = f"{Path(sys.executable).parent}/"


def answers(output: str, key: str) -> list[dict]:
    """The JSON answers of the walkthrough's curl calls that hold `key`."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and f'"{key}"' in line]


@pytest.mark.server
@pytest.mark.slow
def test_the_walkthrough_goes_from_ratings_over_http_to_a_promoted_version(tmp_path):
    # One bash script, as an operator pastes it (it exports BENTOML_HOME and DATABASE_URL, holds a heredoc and
    # starts a server it stops at the end); its `mktemp -d` folders land in tmp_path, and PORT is a free port.
    port = free_port()
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", WALKTHROUGH.replace(".venv/bin/", VENV_BIN)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path), "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=900,  # two trainings, two imports and a server: a minute or two, more on a busy shared machine
    )
    logs = list(tmp_path.glob("tmp.*/server.log"))  # in the block's scratch folder, WORK
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + "".join(p.read_text()[-3000:] for p in logs)
    output, work = run.stdout, logs[0].parent

    assert "posted 21000 ratings of 3000 students\n" in output
    assert re.search(r"^wrote 21000 rows of 7 skills \(collaboration 3000, communication 3000, ", output, re.MULTILINE)
    report = json.loads((work / "skills" / "v1.1.0" / "report.json").read_text())
    assert report["data"] == {"source": "ratings.parquet", "label": "rating >= 3.5"}
    assert "# Skills models v1.1.0" in output and (work / "skills" / "v1.1.0" / "roc.png").is_file()
    for skill in SKILLS:
        metrics = report["skills"][skill]
        assert metrics["auc"] > 0.75 and metrics["rating_pearson_r"] > 0.5, skill
        # Each `train` prints AUC, F1 and r per skill: v1.0.0's run first, then v1.1.0's.
        trained = re.findall(rf"^  {skill} +AUC (\d\.\d{{3}})  F1 \d\.\d{{3}}  r \d\.\d{{3}}$", output, re.MULTILINE)
        assert len(trained) == 2 and trained[1] == f"{metrics['auc']:.3f}", skill
        for version in ("v1.0.0", "v1.1.0"):
            assert f"imported skill-{skill}:{version}\n" in output
    store = next(tmp_path.glob("tmp.*/bentoml/models"))
    assert (store / "skill-leadership" / "v1.1.0").is_dir()

    canary, promoted = (answer["route"] for answer in answers(output, "route"))
    assert canary == {"stable": "v1.0.0", "weights": {"v1.0.0": 90.0, "v1.1.0": 10.0}}
    assert promoted == {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}
    [scored] = answers(output, "model_version")
    assert scored["model_version"] == "v1.1.0" and 0 <= scored["score"] <= 1
    [routes] = answers(output, "routes")
    assert routes["routes"]["skills"]["stable"] == "v1.1.0"
    with pytest.raises(httpx.ConnectError):  # the block stops its server
        httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)


@pytest.mark.clock
def test_the_export_and_the_docs_sql_give_each_rated_skill_with_features_and_latest_rating(tmp_path):
    url = f"sqlite:///{tmp_path / 'inference.db'}"
    sample = generate_students(30, seed=2, id_prefix="s")
    names = list(FEATURES)
    engine = create_engine(url)
    with engine.begin() as connection:  # the features a team's pipeline writes
        definitions = ", ".join(f"{name} REAL" for name in names)
        connection.execute(
            text(f"CREATE TABLE student_features (student_id TEXT PRIMARY KEY, {definitions}, updated_at TEXT)")
        )
        connection.execute(
            text(
                f"INSERT INTO student_features VALUES (:student_id, {', '.join(f':{name}' for name in names)}, "
                "'2026-01-01')"
            ),
            [
                {
                    "student_id": student,
                    **{n: None if np.isnan(v) else float(v) for n, v in zip(names, row, strict=True)},
                }
                for student, row in zip(sample.student_ids, sample.features, strict=True)
            ],
        )
    engine.dispose()
    first, seventh = sample.student_ids[0], sample.student_ids[6]
    now = datetime.now(UTC)
    ratings = engine_for(url)
    store_ratings(
        ratings,
        [
            {"student_id": first, "skill": "leadership", "rating": 2.0, "rated_at": now - timedelta(days=1)},
            {"student_id": first, "skill": "creativity", "rating": 3.0, "rated_at": now},
            {"student_id": seventh, "skill": "creativity", "rating": 1.5, "rated_at": now},
            {"student_id": "not-a-student", "skill": "creativity", "rating": 5.0, "rated_at": now},  # no features
        ],
    )
    store_ratings(
        ratings,
        [
            {"student_id": first, "skill": "leadership", "rating": 4.5, "rated_at": now - timedelta(days=1)},  # a tie
            {"student_id": first, "skill": "creativity", "rating": 1.0, "rated_at": now - timedelta(days=9)},  # older
        ],
    )
    expected = [(first, "creativity", 3.0), (first, "leadership", 4.5), (seventh, "creativity", 1.5)]

    run = subprocess.run(
        [sys.executable, "-m", "train.export", "--out", str(tmp_path / "ratings.csv")],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote 3 rows of 2 skills (creativity 2, leadership 1)" in run.stdout
    assert "left out 1 latest ratings of students without a student_features row" in run.stdout
    rows = read_table(tmp_path / "ratings.csv", text_columns=("student_id", "skill")).to_pylist()
    assert [(row["student_id"], row["skill"], row["rating"]) for row in rows] == expected
    assert list(rows[2]) == ["student_id", "skill", *names, "rating"]
    for name, value in zip(names, sample.features[6], strict=True):
        assert rows[2][name] == (None if np.isnan(value) else pytest.approx(value)), name

    with ratings.connect() as connection:
        from_sql = connection.execute(text(EXPORT_SQL)).mappings().all()
    assert [(row["student_id"], row["skill"], row["rating"]) for row in from_sql] == expected
    assert all(row[name] == exported[name] for row, exported in zip(from_sql, rows, strict=True) for name in names)
    ratings.dispose()


def test_the_docs_give_one_recipe_for_the_skills_v1_1_0_example():
    # The README, models.md, versions.md and this procedure train the same example version (the walkthrough's is
    # trained on exported ratings).
    pattern = r"python -m train skills --version v1\.1\.0 (--seed [^#\n]*?)\s*(?:#|$)"
    recipes = {
        page: re.findall(pattern, (PROJECT_ROOT / page).read_text(), flags=re.MULTILINE)
        for page in ("README.md", "docs/models.md", "docs/versions.md", "docs/retraining.md")
    }
    assert all(len(found) == 1 for found in recipes.values()), recipes
    assert len({found[0] for found in recipes.values()}) == 1, recipes
