"""Versions, admin API and cache over HTTP, against a real server with two skill versions routed 90/10."""

import concurrent.futures
import json
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.utils.requests import student_items
from tests.utils.servers import start_server, wait_until

pytestmark = pytest.mark.server

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INFER, BATCH = "/api/v1/skills/infer", "/api/v1/skills/infer/batch"


@pytest.fixture(scope="module")
def routed(trained_versions, session_dir):
    env = {
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_ROUTES": json.dumps({"skills": {"v1.0.0": 90, "v1.1.0": 10}}),
        "INFERENCE_ADMIN_TOKEN": TOKEN,
    }
    with (
        start_server(session_dir / "logs-admin", env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        yield server, http


def versions_seen(http, items):
    """One new connection per request, so the answers come from every worker, not only the one a kept-alive
    connection happens to reach."""
    return [http.post(INFER, json=item, headers={"Connection": "close"}).json()["model_version"] for item in items]


def settled(http, items, expected):
    """Admin changes reach the other workers within about a second (they poll the shared state)."""
    return wait_until(lambda: all(set(versions_seen(http, items)) == expected for _ in range(2)))


def test_the_admin_api_needs_the_bearer_token(routed, client_without_admin):
    _, http = routed
    assert http.get("/admin/routes").status_code == 401
    wrong = http.get("/admin/routes", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert http.get("/admin/routes", headers={"Authorization": TOKEN}).status_code == 401  # not a bearer header
    answer = http.get("/admin/routes", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["routes"]["skills"] == {
        "stable": "v1.0.0",
        "weights": {"v1.0.0": 90.0, "v1.1.0": 10.0},
        "loaded": ["v1.0.0", "v1.1.0"],
    }
    disabled = client_without_admin.get("/admin/routes", headers=AUTH)
    assert disabled.status_code == 403 and "INFERENCE_ADMIN_TOKEN" in disabled.json()["error"]


def test_students_split_90_10_sticky_and_a_header_forces_a_version(routed):
    _, http = routed
    items = student_items(2000, seed=71, skills=("leadership",))
    seen = versions_seen(http, items)
    assert Counter(seen)["v1.1.0"] / len(seen) == pytest.approx(0.10, abs=0.025)
    assert versions_seen(http, items[:100]) == seen[:100]  # the same students, the same versions, any worker
    forced = http.post(INFER, json=items[0], headers={"X-Model-Variant": "v1.1.0"}).json()
    assert forced["model_version"] == "v1.1.0"
    unknown = http.post(INFER, json=items[0], headers={"X-Model-Variant": "v3.0.0"})
    assert unknown.status_code == 400 and "X-Model-Variant" in unknown.json()["error"]
    assert unknown.json()["code"] == "invalid_header"
    metrics = http.get("/metrics").text
    assert (
        'model_version="v1.1.0"' in metrics
        and "student" not in metrics.split("inference_cache_requests_total", 1)[1].split("\n#", 1)[0]
    )


def test_weights_change_at_runtime_on_every_worker_and_one_call_rolls_back(routed):
    _, http = routed
    items = student_items(40, seed=72, skills=("creativity",))
    bad = http.put("/admin/routes/skills", json={"weights": {"v1.0.0": 50, "v8.0.0": 50}}, headers=AUTH)
    assert bad.status_code == 400 and "v8.0.0" in bad.json()["error"]
    negative = http.put("/admin/routes/skills", json={"weights": {"v1.0.0": -1}}, headers=AUTH)
    assert negative.status_code == 400
    unknown = http.put("/admin/routes/cooking", json={"weights": {"v1.0.0": 100}}, headers=AUTH)
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_family", unknown.text
    changed = http.put("/admin/routes/skills", json={"weights": {"v1.1.0": 100}}, headers=AUTH)
    assert changed.status_code == 200, changed.text
    assert settled(http, items, {"v1.1.0"})
    rolled = http.post("/admin/routes/skills/rollback", headers=AUTH)
    assert rolled.json()["route"] == {"stable": "v1.0.0", "weights": {"v1.0.0": 100.0}}
    assert settled(http, items, {"v1.0.0"})


def test_a_reload_under_load_drops_no_request_and_mixes_no_answer(routed):
    _, http = routed
    http.post("/admin/routes/skills/rollback", headers=AUTH)
    assert settled(http, student_items(20, seed=73), {"v1.0.0"})
    items = student_items(60, seed=74)
    stop = threading.Event()
    outcomes = []

    def hammer():
        with httpx.Client(base_url=http.base_url, timeout=30) as own:
            while not stop.is_set():
                response = own.post(BATCH, json={"items": items})
                versions = {result["model_version"] for result in response.json().get("results", [])}
                outcomes.append((response.status_code, versions))

    def answered_by(version):
        return sum(versions == {version} for _, versions in outcomes)

    def wait_for(predicate):
        deadline = time.monotonic() + 60
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        running = [pool.submit(hammer) for _ in range(4)]
        try:
            wait_for(lambda: answered_by("v1.0.0") >= 4)  # the load is flowing on the old version
            reloaded = http.post("/admin/models/reload", json={"family": "skills", "version": "v1.1.0"}, headers=AUTH)
            wait_for(lambda: answered_by("v1.1.0") >= 8)  # and goes on through the swap, on both workers
        finally:
            stop.set()
            for future in running:
                future.result()
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["route"] == {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}
    assert outcomes and all(status == 200 for status, _ in outcomes)
    assert all(len(versions) == 1 for _, versions in outcomes), "a batch answered by two versions"
    assert {"v1.0.0"} in [v for _, v in outcomes] and {"v1.1.0"} in [v for _, v in outcomes]
    failed = http.post("/admin/models/reload", json={"family": "skills", "version": "v6.6.6"}, headers=AUTH)
    assert failed.status_code == 409 and "still serving" in failed.json()["error"]
    assert settled(http, items[:10], {"v1.1.0"})
    http.post("/admin/models/reload", json={"family": "skills", "version": "v1.0.0"}, headers=AUTH)


def test_a_students_cached_answers_can_be_dropped(routed):
    _, http = routed
    item = student_items(1, seed=75)[0]
    for _ in range(4):  # both workers answer it at least once
        http.post(INFER, json=item)
    assert http.post(INFER, json=item).json()["cached"] is True
    denied = http.delete(f"/api/v1/cache/students/{item['student_id']}")
    assert denied.status_code == 401
    dropped = http.delete(f"/api/v1/cache/students/{item['student_id']}", headers=AUTH)
    assert dropped.status_code == 200 and dropped.json()["deleted"] >= 1
