"""One caller must not hurt the others: a real server (one worker, PostgreSQL as the database, the default limits)
is sent what an attacker would send. Each hostile request gets its 4xx (or a quick 503 with Retry-After) with the
error code; right after each flood a normal request of the same family answers 200, and the queue and in-flight
gauges are back at 0. No timing is judged here: loadtests/hostile.py measures the costs."""

from __future__ import annotations

import json
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from inference.settings import Settings
from loadtests.hostile import binary_rows, near_equal, pairs_body
from tests.utils.prometheus import sample_sum
from tests.utils.requests import RATINGS_AUTH, student_items
from tests.utils.servers import start_server, wait_until

pytestmark = pytest.mark.server

ADMIN_TOKEN = "hostile-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEFAULTS = Settings()


@pytest.fixture(scope="module")
def hostile(trained_versions, text_reports, session_dir, postgres_url):
    env = {
        "INFERENCE_WORKERS": "1",
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "DATABASE_URL": postgres_url,
        "CACHE_URL": "none://",  # every request reaches the models
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
        "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "10000",
    }
    with (
        start_server(session_dir / "logs-hostile", env=env) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        yield server, http


JSON = {"Content-Type": "application/json"}


def post_json(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers=JSON)


def settled(server) -> bool:
    """Nothing queued in any batcher and no request in flight (the /metrics request is a probe, not counted)."""
    page = httpx.get(server.url + "/metrics").text
    return (
        sample_sum(page, "inference_queued_items") == 0 and sample_sum(page, "inference_http_requests_in_flight") == 0
    )


def normal_answers(server, http) -> None:
    """A normal request of every family answers 200 and the worker has settled."""
    assert wait_until(lambda: settled(server), timeout=60), httpx.get(server.url + "/metrics").text[-3000:]
    item = student_items(1, seed=5)[0]
    assert http.post("/api/v1/skills/infer", json=item).status_code == 200
    assert http.post("/api/classify", json={"text": "dentist near me"}).status_code == 200
    assert http.post("/predict", json={"text1": "the cat sat", "text2": "a cat was sitting"}).status_code == 200


def read_answer(connection: socket.socket) -> str:
    """One HTTP answer read off a raw connection: its head, and its body by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
    )
    while len(body) < length:
        body += connection.recv(4096)
    return (head + b"\r\n\r\n" + body).decode()


def refused(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["code"] == code, body
    return body


def test_text_pairs_of_near_equal_long_texts_cost_bounded_work_and_leave_the_family_serving(hostile):
    server, http = hostile
    pair = near_equal(DEFAULTS.max_text_chars, seed=1)
    # The worst single pair is scored (its cost is linear in its length now), not refused.
    assert http.post("/predict", json={"text1": pair[0], "text2": pair[1]}).status_code == 200
    # 1000 such pairs are over the characters a request may carry: refused before any is scored.
    flood = post_json(http, "/v2/models/textpair/infer", pairs_body([pair] * 1000))
    body = refused(flood, 400, "too_many_chars")
    assert "at most 200000 characters of text per request" in body["error"]
    # As many as the request allowance holds are scored: 200 with an answer for each.
    most = DEFAULTS.max_request_chars // (2 * DEFAULTS.max_text_chars)
    full = post_json(http, "/v2/models/textpair/infer", pairs_body([pair] * most))
    assert full.status_code == 200 and full.json()["outputs"][0]["shape"] == [most]
    normal_answers(server, http)


def test_a_flood_of_heavy_requests_is_shed_with_quick_503s_never_504s(hostile):
    server, http = hostile
    most = DEFAULTS.max_request_chars // (2 * DEFAULTS.max_text_chars)
    payload = pairs_body([near_equal(DEFAULTS.max_text_chars, seed=seed) for seed in range(most)])

    def heavy(_: int) -> httpx.Response:
        return httpx.post(server.url + "/v2/models/textpair/infer", content=payload, headers=JSON, timeout=60)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(heavy, range(24)))
    statuses = sorted(response.status_code for response in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses, statuses  # some work was done, the rest refused at once
    shed = next(response for response in answers if response.status_code == 503)
    assert shed.json()["code"] == "overloaded" and int(shed.headers["Retry-After"]) >= 1
    normal_answers(server, http)


def test_oip_tensors_are_checked_against_their_declared_shape_before_any_data_is_read(hostile):
    server, http = hostile
    # 600,000 rows of 7 features as FP32: 16 MiB, over the body limit, refused as it arrives.
    big = binary_rows("skill-communication", 600_000, sent_rows=600_000)
    refused(http.post(big.path, content=big.content, headers=dict(big.headers)), 413, "body_too_large")
    # The same shape declared over a small body: refused from the shape, before the data is looked at.
    small = binary_rows("skill-communication", 600_000, sent_rows=10)
    body = refused(http.post(small.path, content=small.content, headers=dict(small.headers)), 400, "batch_too_large")
    assert "at most 1000 rows per request" in body["error"]
    # A text with a lone surrogate: a 400 naming the problem, not a 500.
    surrogate = http.post(
        "/v2/models/intent-classic/infer",
        content=b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a\\ud800b"]}]}',
        headers={"Content-Type": "application/json"},
    )
    body = refused(surrogate, 400, "invalid_text")
    assert "lone surrogate" in body["error"]
    normal_answers(server, http)


def test_skills_requests_with_too_many_features_or_items_are_refused_before_they_are_parsed(hostile):
    server, http = hostile
    item = student_items(1, seed=9)[0]
    million = {**item, "features": {f"f{index}": 1.0 for index in range(1_000_000)}}
    refused(http.post("/api/v1/skills/infer", json=million), 413, "body_too_large")
    wide = {**item, "features": {**item["features"], **{f"unknown_{index}": 1.0 for index in range(1000)}}}
    body = refused(http.post("/api/v1/skills/infer", json=wide), 400, "too_many_features")
    assert f"at most {DEFAULTS.max_features} features per item" in body["error"]
    # 335,000 items: over the body limit; 20,000 small items within it: refused from the body's structure.
    small = {"student_id": "s", "skill": "communication", "features": {"words_per_response": 3}}
    refused(http.post("/api/v1/skills/infer/batch", json={"items": [small] * 335_000}), 413, "body_too_large")
    body = refused(http.post("/api/v1/skills/infer/batch", json={"items": [small] * 20_000}), 400, "batch_too_large")
    assert "items: at most 1000 items per request, got at least" in body["error"]  # counted in the body's start
    normal_answers(server, http)


def test_writers_routes_check_the_token_before_reading_the_body(hostile):
    server, http = hostile
    parts = urlsplit(server.url)
    for path in ("/api/v1/monitoring/ratings", "/api/v1/monitoring/feedback/intent"):
        # Headers announcing 4 MB, and no body sent: the answer comes anyway, without waiting for it.
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
            connection.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer not-a-token\r\nContent-Length: 4000000\r\n\r\n".encode()
            )
            answer = read_answer(connection)
        assert answer.startswith("HTTP/1.1 401"), answer
        assert '"code":"unauthorized"' in answer.replace(" ", "")
    ratings = [{"student_id": "s-1", "skill": "communication", "rating": 3, "rated_at": "2026-01-01T00:00:00Z"}]
    over = http.post("/api/v1/monitoring/ratings", json={"ratings": ratings * 5000}, headers=RATINGS_AUTH)
    refused(over, 400, "batch_too_large")
    normal_answers(server, http)


def test_a_control_character_in_an_identifier_is_refused_and_later_predictions_are_all_logged(hostile, postgres_url):
    _, http = hostile
    items = student_items(20, seed=31)
    poisoned = {**items[0], "student_id": "evil\x00student"}
    body = refused(http.post("/api/v1/skills/infer", json=poisoned), 400, "invalid_request")
    assert body["error"].startswith("student_id:")
    for item in items:
        assert http.post("/api/v1/skills/infer", json=item).status_code == 200
    engine = create_engine(postgres_url)
    wanted = {item["student_id"] for item in items}

    def logged() -> set[str]:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT student_id FROM predictions")).scalars()
            return wanted & set(rows)

    assert wait_until(lambda: logged() == wanted, timeout=30), sorted(wanted - logged())
    engine.dispose()


def test_unknown_paths_create_no_metric_series(hostile):
    server, http = hostile
    for index in range(200):
        assert http.get(f"/api/nope{index}").status_code == 404
        assert http.post(f"/api/nope{index}", json={}).status_code in (404, 405)
    page = httpx.get(server.url + "/metrics").text
    assert "nope" not in page
    assert sample_sum(page, "inference_http_requests_total", route="unmatched") >= 400


def test_malformed_admin_input_gets_a_400_and_the_service_stays_healthy(hostile):
    server, http = hostile
    for weights in (
        '{"weights": {"v1.0.0": Infinity}}',
        '{"weights": {"v1.0.0": NaN}}',
        '{"weights": {"v1.0.0": 1e999}}',
    ):
        answer = http.put(
            "/admin/routes/skills", content=weights, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
    answer = http.put("/admin/routes/skills", json={"weights": {"../../etc": 100}}, headers=ADMIN)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_version", answer.text
    assert http.get("/admin/audit", params={"limit": "²"}, headers=ADMIN).status_code == 400
    assert http.get("/health").status_code == 200
    assert http.get("/api/v1/models").status_code == 200
    normal_answers(server, http)


def test_binary_tensors_with_lying_lengths_are_refused(hostile):
    server, http = hostile
    header = json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}]}
    ).encode()
    lying = struct.pack("<I", 1_000_000) + b"abcd"  # announces a megabyte, sends four bytes
    answer = http.post(
        "/v2/models/intent-classic/infer",
        content=header + lying,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    refused(answer, 400, "invalid_request")
    normal_answers(server, http)
