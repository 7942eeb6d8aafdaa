"""Drift is the server's, whichever worker is asked: a real two-worker server, its workers each answering part of
the requests, gives one drift answer over all of them once the workers have shared their windows (every 2 s)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.utils.servers import start_server
from train.data.students import generate_students

pytestmark = pytest.mark.server

REQUESTS = 240
SKILL = "leadership"
CLIENTS = 8  # at once, each request on a connection of its own: both workers get a share


@pytest.fixture(scope="module")
def two_workers(trained_versions, session_dir, tmp_path_factory):
    state = tmp_path_factory.mktemp("drift-state")
    env = {
        "INFERENCE_WORKERS": "2",
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_STATE_DIR": str(state),
        "INFERENCE_DRIFT_MIN_OBSERVATIONS": "50",
        "CACHE_URL": "none://",
    }
    with start_server(session_dir / "logs-drift-replica", env=env) as server:
        yield server, state


def get(url: str) -> httpx.Response:
    return httpx.get(url, headers={"Connection": "close"}, timeout=30)


def test_every_worker_gives_the_same_drift_over_all_the_requests(two_workers):
    server, state = two_workers
    sample = generate_students(REQUESTS, seed=811)
    items = [
        {"student_id": student_id, "skill": SKILL, "features": features}
        for student_id, features in zip(sample.student_ids, sample.feature_dicts(), strict=True)
    ]

    def infer(item: dict) -> int:
        return httpx.post(
            server.url + "/api/v1/skills/infer", json=item, headers={"Connection": "close"}, timeout=30
        ).status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        assert set(pool.map(infer, items)) == {200}

    def window() -> int:
        models = get(server.url + "/api/v1/monitoring/drift").json()["models"]
        return next((entry["window"] for entry in models if entry["model"] == f"skill-{SKILL}"), 0)

    deadline = time.monotonic() + 30
    while window() != REQUESTS:  # the workers write every 2 s
        assert time.monotonic() < deadline, window()
        time.sleep(0.5)
    assert len(list(state.glob("drift/drift-*.npz"))) == 2  # both workers answered some, and wrote their windows

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(get, [server.url + "/api/v1/monitoring/drift"] * 64))
        pages = list(pool.map(get, [server.url + "/dashboard"] * 32))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text for answer in answers}) == 1  # one answer, whichever worker gave it
    (model,) = [entry for entry in answers[0].json()["models"] if entry["model"] == f"skill-{SKILL}"]
    assert model["window"] == REQUESTS and "score" in model["psi"]
    workers = {re.search(r"answered by worker (\d+)", page.text).group(1) for page in pages}
    assert len(workers) == 2  # both workers answered reads
    assert {
        re.search(rf"skill-{SKILL} <small>v1.0.0</small></h2><p>window (\d+)", page.text).group(1) for page in pages
    } == {str(REQUESTS)}
