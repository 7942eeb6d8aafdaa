"""docs/batch.md's "Try it locally" block runs as written, on a fresh SQLite database, and does what it says; its
upsert of a team's own features runs on SQLite and PostgreSQL."""

import contextlib
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from inference.storage import engine_for, ensure_student_features
from tests.utils.postgres import throwaway_database
from tests.utils.servers import PROJECT_ROOT

DOC = (PROJECT_ROOT / "docs" / "batch.md").read_text()
TRY_IT = re.search(r"## Try it locally\n.*?```bash\n(.*?)```", DOC, flags=re.DOTALL).group(1)


def test_the_try_it_locally_commands_run_and_score_what_they_say(trained_versions, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'docs.db'}",
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
    }
    outputs = []
    for line in TRY_IT.strip().splitlines():
        command = line.split("  #", 1)[0].strip().replace(".venv/bin/python", sys.executable)
        run = subprocess.run(
            ["bash", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, f"{command}\n{run.stderr[-2000:]}"
        outputs.append(run.stdout + run.stderr)
    assert len(outputs) == 6
    assert "1,000 students read, 7,000 assessments written" in outputs[1]
    assert "0 students read, 0 assessments written" in outputs[2]
    changed = int(re.search(r"wrote ([\d,]+) students", outputs[3]).group(1).replace(",", ""))
    assert 60 < changed < 140
    assert f"{changed:,} students read" in outputs[4]
    listing = outputs[5].strip().splitlines()
    assert [line.split()[1] for line in listing[1:]] == ["incremental", "incremental", "full"]


YOUR_FEATURES = re.search(r"## Your students' features\n.*?```sql\n(.*?)```", DOC, flags=re.DOTALL).group(1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_upsert_of_your_own_features_runs_on_both_databases_and_quotes_what_it_must(kind, tmp_path):
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'own.db'}" if kind == "sqlite" else stack.enter_context(throwaway_database())
        engine = engine_for(url)
        stack.callback(engine.dispose)
        table = ensure_student_features(engine, ["alcohol", "od280/od315_of_diluted_wines"])
        for _ in range(2):  # the second time, the upsert's update
            with engine.begin() as connection:
                connection.exec_driver_sql(YOUR_FEATURES)
        with engine.connect() as connection:
            row = connection.execute(select(table)).one()
        assert row.student_id == "student-0001234" and row.alcohol == 13.2
        assert row._mapping["od280/od315_of_diluted_wines"] is None
