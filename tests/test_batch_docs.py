"""docs/batch.md's "Try it locally" block runs as written, on a fresh SQLite database, and does what it says."""

import os
import re
import subprocess
import sys

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
