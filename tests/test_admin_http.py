"""Versions, admin API and cache over HTTP, against a real server with two skill versions routed 90/10: route
changes run as operations any worker can report on, and what an admin call names is checked before use."""

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

TOKEN = "test-admin-token-0123456789abcdef"
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


def operation(http, location):
    """An operation's record as a worker reads it from the control store (a new connection: any worker)."""
    answer = http.get(location, headers={**AUTH, "Connection": "close"})
    assert answer.status_code == 200, answer.text
    return answer.json()["operation"]


def outcome(http, answer, timeout=120.0):
    """A route change's answer, or, when it answered 202 (its load outlasted INFERENCE_ADMIN_WAIT_S), its
    operation's outcome once it finished, in the same shape: (status, body)."""
    if answer.status_code != 202:
        return answer.status_code, answer.json()
    location = answer.headers["location"]
    assert wait_until(lambda: operation(http, location)["status"] != "running", timeout=timeout)
    record = operation(http, location)
    if record["error"]:
        return record["error"]["status"], {"error": record["error"]["message"], "code": record["error"]["code"]}
    return 200, {**record["result"], "operation": record}


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
    forced = http.post(INFER, json=items[0], headers={"X-Model-Version": "v1.1.0"}).json()
    assert forced["model_version"] == "v1.1.0"
    # The header's older name is still read (deprecated).
    assert http.post(INFER, json=items[0], headers={"X-Model-Variant": "v1.1.0"}).json()["model_version"] == "v1.1.0"
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
    status, body = outcome(http, reloaded)  # on a busy machine the load may outlast the wait: then 202
    assert status == 200, body
    assert body["route"] == {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}
    assert outcomes and all(status == 200 for status, _ in outcomes)
    assert all(len(versions) == 1 for _, versions in outcomes), "a batch answered by two versions"
    assert {"v1.0.0"} in [v for _, v in outcomes] and {"v1.1.0"} in [v for _, v in outcomes]
    failed = http.post("/admin/models/reload", json={"family": "skills", "version": "v6.6.6"}, headers=AUTH)
    assert failed.status_code == 409 and "still serving" in failed.json()["error"]
    assert settled(http, items[:10], {"v1.1.0"})
    http.post("/admin/models/reload", json={"family": "skills", "version": "v1.0.0"}, headers=AUTH)


def test_a_route_change_is_an_operation_any_worker_reports_on(routed):
    _, http = routed
    changed = http.put("/admin/routes/skills", json={"weights": {"v1.0.0": 100}}, headers=AUTH)
    assert changed.status_code == 200, changed.text  # nothing to load: it ends within the wait
    record = changed.json()["operation"]
    assert changed.headers["location"] == f"/admin/operations/{record['id']}"
    assert record["status"] == "succeeded" and record["result"]["route"] == changed.json()["route"]
    assert changed.headers["etag"] == f'"{changed.json()["revision"]}"'
    for _ in range(4):  # whichever worker reads it
        assert operation(http, changed.headers["location"]) == {**record, "updated_s_ago": pytest.approx(0, abs=60)}

    failed = http.post("/admin/models/reload", json={"family": "skills", "version": "v6.6.6"}, headers=AUTH)
    assert failed.status_code == 409 and failed.json()["code"] == "reload_failed", failed.text
    record = operation(http, failed.headers["location"])
    assert record["status"] == "failed" and record["result"] is None and record["finished_at"]
    assert record["error"]["code"] == "reload_failed" and record["error"]["status"] == 409
    assert "v6.6.6" in record["error"]["message"] and "still serving" in record["error"]["message"]
    assert record["action"] == "skills: reload v6.6.6" and record["started_by"] == "admin"

    malformed = http.get("/admin/operations/admin-state", headers=AUTH)
    assert malformed.status_code == 400 and malformed.json()["code"] == "invalid_request", malformed.text
    unknown = http.get(f"/admin/operations/{'0' * 32}", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_operation"
    assert http.get(f"/admin/operations/{'0' * 32}").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/admin/routes/skills", {"weights": {"../../../tmp/x": 100}}, "weights"),
        ("PUT", "/admin/routes/skills", {"weights": {"v1.0.0": 50, "1.1.0": 50}}, "weights"),
        ("POST", "/admin/models/reload", {"family": "skills", "version": "../v1.1.0"}, "version"),
        ("POST", "/admin/models/reload", {"family": "skills", "version": "v1.1"}, "version"),
    ],
)
def test_a_version_that_is_not_semver_is_refused_before_it_becomes_a_path(routed, method, path, body, field):
    _, http = routed
    before = http.get("/admin/routes", headers=AUTH).json()["revision"]
    refused = http.request(method, path, json=body, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_version", refused.text
    assert refused.json()["error"].startswith(f"{field}: ") and "v1.2.0" in refused.json()["error"]
    assert "location" not in refused.headers  # refused before any operation started
    assert http.get("/admin/routes", headers=AUTH).json()["revision"] == before


def test_a_family_not_served_is_refused_before_the_body_is_read(routed):
    _, http = routed
    for call in (
        http.put("/admin/routes/skills.v2", content=b"not json", headers=AUTH),
        http.post("/admin/routes/cooking/rollback", headers=AUTH),
        http.post("/admin/models/reload", json={"family": "cooking", "version": "v1.0.0"}, headers=AUTH),
    ):
        assert call.status_code == 400 and call.json()["code"] == "unknown_family", call.text


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
