"""deploy/compose.yaml brought up for real on a Docker engine: the service's image (built by deploy/containerize.sh),
Redis, PostgreSQL and the nightly batch scorer as a one-shot service, called over HTTP on loopback.

No registry can be pulled here, so Redis and PostgreSQL are stand-in images built from the project's local base
(tests/utils/compose_images/); the compose file runs unchanged, given the images, a port and the database password
through its variables. The engine is the one that answers, else Debian's dockerd started for this module; images are
built with podman (its build trusts this machine's CA bundle, docker build cannot) and moved with `docker load`.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from deploy.bases import base_images
from tests.utils.compose import DockerEngine, build_stand_in_images, docker_compose, docker_engine
from tests.utils.containers import PODMAN_ENV
from tests.utils.needs import unavailable
from tests.utils.servers import PROJECT_ROOT, free_port
from train.data.population import DEMO_FEATURE_NAMES
from train.data.students import generate_students

pytestmark = [pytest.mark.container, pytest.mark.slow]

COMPOSE_FILE = PROJECT_ROOT / "deploy" / "compose.yaml"
SECRETS = {
    "POSTGRES_PASSWORD": "compose-test-database",
    "INFERENCE_RATINGS_TOKEN": "compose-test-ratings-0123456789",
    "INFERENCE_ADMIN_TOKEN": "compose-test-admin-0123456789",
}
SKILLS_REQUEST = {"student_id": "s-1", "skill": "creativity", "features": {"novel_idea_count": 4}}
SKILL_COUNT = 7  # the demo models the image carries, one per skill
STUDENTS = 20
TIMINGS: dict[str, float] = {}


def timed(step: str, started: float) -> None:
    TIMINGS[step] = time.monotonic() - started
    print(f"compose: {step} in {TIMINGS[step]:.1f} s")


@dataclass(frozen=True)
class Stack:
    """One compose project of deploy/compose.yaml on `engine`, the service published on `url`."""

    engine: DockerEngine
    project: str
    files: tuple[Path, ...]
    env_file: Path
    variables: dict[str, str]
    url: str

    def compose(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        files = [option for path in self.files for option in ("-f", str(path))]
        return subprocess.run(
            [str(docker_compose()), *files, "--env-file", str(self.env_file), "-p", self.project, *arguments],
            cwd=PROJECT_ROOT,
            env={**self.engine.env, **self.variables},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def psql(self, statement: str) -> str:
        """`statement` run by psql in the postgres container (as its superuser over the socket), the rows as text."""
        run = self.compose(
            "exec", "-T", "postgres", "psql", "-U", "inference", "-d", "inference", "-v", "ON_ERROR_STOP=1", "-tAc",
            statement,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60").stdout[-6000:]


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    if shutil.which("podman") is None:
        unavailable("podman is not installed (deploy/containerize.sh installs it when run as root)")
    started = time.monotonic()
    with docker_engine() as running:
        timed("Docker engine " + ("started" if running.started else "found"), started)
        yield running


@pytest.fixture(scope="module")
def images(engine: DockerEngine, service_image: str) -> Iterator[dict[str, str]]:
    """The service's image (the session's) and the stand-ins, built with podman and loaded into the engine; the
    compose variables."""
    started = time.monotonic()
    variables = {"INFERENCE_IMAGE": service_image, **build_stand_in_images(base_images()["local"], PODMAN_ENV)}
    timed("stand-in Redis and PostgreSQL images built", started)
    started = time.monotonic()
    save = subprocess.Popen(["podman", "save", "-m", *variables.values()], env=PODMAN_ENV, stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "load"], env=engine.env, stdin=save.stdout, capture_output=True, timeout=600)
    assert save.wait(timeout=60) == 0 and load.returncode == 0, load.stderr[-2000:]
    timed("images loaded into the engine", started)
    try:
        yield variables
    finally:
        if not engine.started:  # an engine of the tests' own goes with its data
            engine.docker("rmi", "--force", *variables.values(), check=False)
        # The stand-ins stay in podman's store: the next run builds them from its layer cache in a second.


@pytest.fixture(scope="module")
def stack(engine: DockerEngine, images: dict[str, str], tmp_path_factory) -> Iterator[Stack]:
    """`up -d --wait`: every service healthy (the service ready), or a failure with the logs; `down -v` after."""
    directory = tmp_path_factory.mktemp("compose")
    env_file = directory / "secrets.env"  # in place of deploy/secrets.env, which a developer may have
    env_file.write_text("".join(f"{key}={value}\n" for key, value in SECRETS.items()))
    # The service reads the tokens from deploy/secrets.env (its `env_file`); this file is added to that list.
    override = directory / "secrets.override.yaml"
    override.write_text(yaml.safe_dump({"services": {"inference": {"env_file": [{"path": str(env_file)}]}}}))
    port = free_port()
    stack = Stack(
        engine=engine,
        project=f"inference-test-{os.getpid()}",
        files=(COMPOSE_FILE, override),
        env_file=env_file,
        variables={**images, "INFERENCE_PORT": str(port)},
        url=f"http://127.0.0.1:{port}",
    )
    started = time.monotonic()
    up = stack.compose("up", "--detach", "--wait", "--wait-timeout", "180", timeout=240)
    try:
        assert up.returncode == 0, f"{up.stderr[-3000:]}\n{stack.logs()}"
        timed("compose up --wait (service, Redis, PostgreSQL healthy)", started)
        yield stack
    finally:
        started = time.monotonic()
        down = stack.compose("down", "--volumes", "--timeout", "30", timeout=180)
        timed("compose down --volumes", started)
        print("compose: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in TIMINGS.items()))
        assert down.returncode == 0, down.stderr[-2000:]


def test_the_stack_comes_up_and_serves_every_family(stack):
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        skills = http.post("/api/v1/skills/infer", json=SKILLS_REQUEST)
        assert skills.status_code == 200, skills.text
        assert 0 <= skills.json()["score"] <= 1
        intent = http.post("/api/classify", json={"text": "dentist near me"})
        assert intent.status_code == 200, intent.text
        pair = http.post("/predict", json={"text1": "a cat sat", "text2": "a cat was sitting"})
        assert pair.status_code == 200 and pair.json()["prediction"] in (0, 1), pair.text
        families = {family["family"] for family in http.get("/api/v1/models").json()["families"]}
        assert families == {"skills", "intent", "textpair"}


def test_admin_changes_live_in_postgresql_and_answers_are_cached_in_redis(stack):
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        control = health.json()["control"]
        assert control["store"] == "postgresql" and control["reachable"] is True, control
        request = {**SKILLS_REQUEST, "student_id": "s-cached"}
        first = http.post("/api/v1/skills/infer", json=request)
        second = http.post("/api/v1/skills/infer", json=request)
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert second.json()["score"] == first.json()["score"]
    keys = stack.compose("exec", "-T", "redis", "redis-cli", "dbsize")
    assert keys.returncode == 0 and int(keys.stdout) > 0, keys.stderr  # the cache is Redis, not the worker's memory
    assert "control_state" in stack.psql("SELECT string_agg(tablename, ' ') FROM pg_tables")


def test_a_teachers_rating_is_stored_in_postgresql(stack):
    rating = {"student_id": "s-1", "skill": "creativity", "rating": 4, "rated_at": datetime.now(UTC).isoformat()}
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        refused = http.post("/api/v1/monitoring/ratings", json={"ratings": [rating]})
        stored = http.post(
            "/api/v1/monitoring/ratings",
            json={"ratings": [rating]},
            headers={"Authorization": f"Bearer {SECRETS['INFERENCE_RATINGS_TOKEN']}"},
        )
    assert refused.status_code == 401
    assert stored.status_code == 200 and stored.json() == {"stored": 1, "rejected": []}, stored.text
    assert stack.psql("SELECT count(*) FROM teacher_ratings WHERE student_id = 's-1'") == "1"


def demo_students_sql(count: int) -> str:
    """An INSERT of `count` demo students into `student_features`, as a team's feature pipeline would write them."""
    features = generate_students(count, seed=7).features
    columns = ", ".join(f'"{name}"' for name in DEMO_FEATURE_NAMES)
    rows = (
        ", ".join([f"'compose-{index}'", *("NULL" if math.isnan(value) else repr(value) for value in row), "now()"])
        for index, row in enumerate(features.tolist())
    )
    return f"INSERT INTO student_features (student_id, {columns}, updated_at) VALUES " + ", ".join(
        f"({row})" for row in rows
    )


def test_the_batch_scorer_runs_once_and_scores_the_students_in_postgresql(stack):
    def score(step: str) -> str:
        started = time.monotonic()
        run = stack.compose("run", "--rm", "--no-TTY", "batch-scorer", timeout=300)
        timed(step, started)
        assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        return run.stdout + run.stderr

    # A first run on an empty database: nothing to score, the feature table is made (a column per feature of the
    # served models), and the run succeeds.
    assert "0 students read, 0 assessments written" in score("batch scorer run, no students")
    stack.psql(demo_students_sql(STUDENTS))
    # The next nightly run scores each new student on every skill.
    output = score("batch scorer run, new students")
    assert f"{STUDENTS} students read, {STUDENTS * SKILL_COUNT} assessments written" in output
    assert " 0 items failed" in output
    assert stack.psql("SELECT count(*) FROM skill_assessments") == str(STUDENTS * SKILL_COUNT)
