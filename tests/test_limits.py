"""Request limits: body size, JSON depth, items per batch and characters per text. Each over-limit request gets a
4xx naming the limit and is counted in inference_limit_rejections_total; the depth check is exact (hypothesis
against a reference) and requests within the limits pass through untouched."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.http.middleware import RequestLimits, json_depth
from inference.settings import Settings
from tests.utils.prometheus import metric_total

REJECTIONS = "inference_limit_rejections_total"


def reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(item) for item in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet='ab[]{}"\\ \n'),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(alphabet='k[]{}"\\'), children, max_size=4)
    ),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, at_most=st.integers(0, 6), ascii_only=st.booleans())
def test_the_depth_check_is_exact_once_over_the_limit_whatever_the_strings_hold(value, at_most, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    expected = reference_depth(value)
    found = json_depth(body, at_most=at_most)
    if expected > at_most:
        assert found == expected
    else:
        assert found <= at_most


def run_middleware(body_chunks: list[bytes], *, declared: int | None = None, max_body_bytes=1024, max_json_depth=4):
    """One POST through RequestLimits in front of an app that echoes the body it read; (status, body, counts)."""
    counted: list[tuple[str, str]] = []
    seen: list[bytes] = []

    async def app(scope, receive, send):
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limits = RequestLimits(
        app,
        max_body_bytes=max_body_bytes,
        max_json_depth=max_json_depth,
        count=lambda family, limit: counted.append((family, limit)),
    )
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": "http", "method": "POST", "path": "/api/classify", "headers": headers}
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(body_chunks) - 1}
        for index, chunk in enumerate(body_chunks)
    ]
    received: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        received.append(message)

    asyncio.run(limits(scope, receive, send))
    status = received[0]["status"]
    return status, received[1]["body"], counted, seen, len(messages)


def test_a_body_within_the_limits_reaches_the_app_whole_even_in_chunks():
    status, body, counted, seen, _ = run_middleware([b'{"text": ', b'"a [b] {c}"}'], max_json_depth=1)
    assert (status, body, counted) == (200, b"ok", [])
    assert seen == [b'{"text": "a [b] {c}"}']


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read():
    status, body, counted, seen, unread = run_middleware([b"x" * 100] * 20, declared=2000)
    assert status == 413
    assert json.loads(body) == {"error": "request body: at most 1024 bytes, got 2000 bytes", "code": "body_too_large"}
    assert counted == [("intent", "body_bytes")] and seen == [] and unread == 20


def test_a_chunked_body_is_refused_as_soon_as_it_goes_over_the_limit():
    status, body, counted, seen, unread = run_middleware([b"x" * 600] * 10)
    assert status == 413 and json.loads(body)["code"] == "body_too_large"
    assert counted == [("intent", "body_bytes")] and seen == [] and unread == 8


def test_a_document_nested_too_deep_is_refused_with_its_depth():
    status, body, counted, seen, _ = run_middleware([b'{"text": [[[[["x"]]]]]}'])
    assert status == 400
    assert json.loads(body) == {
        "error": "request body: JSON nested at most 4 levels deep, got 6",
        "code": "json_too_deep",
    }
    assert counted == [("intent", "json_depth")] and seen == []


def test_the_limits_have_working_defaults_that_fit_the_largest_allowed_batch():
    defaults = Settings()
    largest_text_batch = defaults.max_batch_items * (defaults.max_text_chars * 4 + 4) + 64  # UTF-8, 4 bytes a char
    assert defaults.max_body_bytes >= largest_text_batch
    assert defaults.max_json_depth >= 4  # {"items": [{"features": {...}}]} is 3 deep


# --- against a real server


@pytest.mark.server
def test_over_limit_requests_get_a_4xx_naming_the_limit_and_are_counted(server):
    url = server.url
    before = {
        limit: metric_total(url, REJECTIONS, limit=limit)
        for limit in ("body_bytes", "json_depth", "batch_items", "text_chars")
    }
    limit = Settings().max_body_bytes
    with httpx.Client(base_url=url, timeout=60) as http:
        big = http.post(
            "/api/classify",
            content=b'{"text": "a", "pad": "' + b"x" * limit + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["code"] == "body_too_large", big.text
        assert f"at most {limit} bytes" in big.json()["error"]

        deep = http.post("/api/classify", content=b'{"text": "a", "user_id": ' + b"[" * 40 + b"]" * 40 + b"}")
        assert deep.status_code == 400 and deep.json() == {
            "error": "request body: JSON nested at most 32 levels deep, got 41",
            "code": "json_too_deep",
        }

        items = [{"student_id": "s", "skill": "communication", "features": {"words_per_response": 3}}] * 1001
        batch = http.post("/api/v1/skills/infer/batch", json={"items": items})
        assert batch.status_code == 400 and batch.json()["code"] == "batch_too_large"
        assert "at most 1000 items per request, got 1001" in batch.json()["error"]

        long_text = http.post("/api/classify", json={"text": "a" * 2001})
        assert long_text.status_code == 400 and "at most 2000 characters, got 2001" in long_text.json()["error"]

        fine = http.post("/api/classify", json={"text": "dentist [near] {me}"})
        assert fine.status_code == 200, fine.text

    after = {limit: metric_total(url, REJECTIONS, limit=limit) for limit in before}
    assert {limit: after[limit] - before[limit] for limit in before} == {
        "body_bytes": 1,
        "json_depth": 1,
        "batch_items": 1,
        "text_chars": 1,
    }


@pytest.mark.server
def test_a_chunked_upload_over_the_limit_is_cut_short_with_a_413(server):
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    chunk = b"x" * (1024 * 1024)
    sent = 0

    def body():
        nonlocal sent
        yield b'{"text": "a", "pad": "'
        for _ in range(64):  # 64 MiB offered; the server stops reading after 16
            sent += 1
            yield chunk

    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server answers and closes mid-upload
        connection.request(
            "POST", "/api/classify", body=body(), headers={"Content-Type": "application/json"}, encode_chunked=True
        )
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["code"] == "body_too_large"
    connection.close()
    assert sent < 64  # the rest of the upload was refused, not read


def test_the_middleware_benchmark_runs_and_reports_both_bodies(capsys):
    from loadtests.middleware_bench import main

    main()
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| one") or line.startswith("| a batch")
    ]
    # Both timings are real; their difference (a few µs for the small body) is a figure to read, and noise can
    # make it negative on a busy machine, so it is printed, not judged.
    assert len(rows) == 2 and all(float(row.split("|")[3]) > 0 and float(row.split("|")[4]) > 0 for row in rows)
