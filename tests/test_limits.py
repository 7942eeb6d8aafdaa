"""The edge's limits: body size, JSON depth, items per batch, features per item, characters per text, writers'
tokens, requests in flight. Each over-limit request gets a 4xx (or a 503 with Retry-After) naming the limit and is
counted in inference_limit_rejections_total; the structure scan is exact (hypothesis against a parser); requests
within the limits pass through untouched; a caller that goes away cancels its work."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from inference.http.edge import Edge, EdgeLimits
from inference.http.jsonscan import json_depth, json_shape
from inference.http.routes import route_table
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


def widest_reference(value: object, depth: int, at: int = 0) -> int:
    """The most elements of one container whose elements sit at `depth` (0 when there is none)."""
    found = 0
    if isinstance(value, dict | list):
        children = list(value.values()) if isinstance(value, dict) else value
        if at + 1 == depth:
            found = max(len(children), 1)
        for child in children:
            found = max(found, widest_reference(child, depth, at + 1))
    return found


@settings(max_examples=400, deadline=None)
@given(value=json_values, depth=st.integers(1, 4), ascii_only=st.booleans())
def test_the_element_counts_read_from_the_structure_match_a_parser(value, depth, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_shape(body, depths=(depth,)).widest_at(depth) == widest_reference(value, depth)


LIMITS = EdgeLimits(max_body_bytes=1024, max_json_depth=4, max_concurrent_requests=2, retry_after_s=3)


class Recorder:
    """The edge's metrics, kept in lists."""

    def __init__(self):
        self.requests, self.limits, self.flights, self.scores = [], [], [], []

    def request(self, route, method, status, seconds):
        self.requests.append((route, method, status))

    def in_flight(self, route, delta):
        self.flights.append((route, delta))

    def limit(self, family, limit):
        self.limits.append((family, limit))

    def scored(self, family, endpoint, segment, version, outcome, seconds):
        self.scores.append((family, endpoint, outcome))


def edge_around(app, *, limits=LIMITS, writer_tokens=None):
    recorder = Recorder()
    settings = Settings(max_batch_items=3, max_features=2, max_single_body_bytes=1024)
    table = route_table(settings, mounted=[Route("/admin/routes/{family}", lambda request: None)])
    edge = Edge(app, routes=table, limits=limits, writer_tokens=writer_tokens, metrics=lambda: recorder)
    return edge, recorder


async def echo_app(scope, receive, send):
    message = await receive()
    seen.append(message.get("body"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


seen: list[bytes] = []


def held_until(release: asyncio.Event):
    """An app that reads the body and answers 200 once `release` is set."""

    async def held_app(scope, receive, send):
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return held_app


async def post_through(edge, path, body, answers=None):
    """One POST through `edge` from a client that waits for its answer; the answer's messages."""
    answers = [] if answers is None else answers
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(60)  # the client waits for its answer

    async def send(message):
        answers.append(message)

    await edge({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
    return answers


def run_edge(body_chunks, *, path="/api/classify", declared=None, headers=(), method="POST", app=echo_app, **options):
    """One request through the edge in front of `app`; (status, body, headers, recorder, unread messages)."""
    seen.clear()
    edge, recorder = edge_around(app, **options)
    scope_headers = [(b"content-type", b"application/json"), *headers]
    if declared is not None:
        scope_headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": scope_headers}
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(body_chunks) - 1}
        for index, chunk in enumerate(body_chunks)
    ]
    received = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        received.append(message)

    asyncio.run(edge(scope, receive, send))
    start = received[0]
    return start["status"], received[1]["body"], dict(start["headers"]), recorder, len(messages)


def test_a_body_within_the_limits_reaches_the_app_whole_even_in_chunks():
    status, body, _, recorder, _ = run_edge([b'{"text": ', b'"a [b] {c}"}'])
    assert (status, body, recorder.limits) == (200, b"ok", [])
    assert seen == [b'{"text": "a [b] {c}"}']
    assert recorder.requests == [("/api/classify", "POST", 200)]
    assert recorder.flights == [("/api/classify", 1), ("/api/classify", -1)]


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read():
    status, body, headers, recorder, unread = run_edge([b"x" * 100] * 20, declared=2000)
    assert status == 413
    assert json.loads(body) == {
        "error": "request body: at most 1024 bytes for this route, got 2000 bytes",
        "code": "body_too_large",
    }
    assert recorder.limits == [("intent", "body_bytes")] and seen == [] and unread == 20
    assert headers[b"connection"] == b"close"


def test_a_chunked_body_is_refused_as_soon_as_it_goes_over_the_limit():
    status, body, _, recorder, unread = run_edge([b"x" * 600] * 10)
    assert status == 413 and json.loads(body)["code"] == "body_too_large"
    assert recorder.limits == [("intent", "body_bytes")] and seen == [] and unread == 8


def test_a_document_nested_too_deep_is_refused_with_its_depth():
    status, body, _, recorder, _ = run_edge([b'{"text": [[[[["x"]]]]]}'])
    assert status == 400
    assert json.loads(body) == {
        "error": "request body: JSON nested at most 4 levels deep, got 6",
        "code": "json_too_deep",
    }
    assert recorder.limits == [("intent", "json_depth")] and seen == []


def test_too_many_items_or_features_are_refused_from_the_bodys_structure_before_it_is_parsed():
    item = {"student_id": "s", "skill": "communication", "features": {"a": 1}}
    status, body, _, recorder, _ = run_edge(
        [json.dumps({"items": [item] * 4}).encode()], path="/api/v1/skills/infer/batch"
    )
    assert status == 400 and json.loads(body) == {
        "error": "items: at most 3 items per request, got 4",
        "code": "batch_too_large",
    }
    wide = {**item, "features": {"a": 1, "b": 2, "c": 3}}
    status, body, _, recorder2, _ = run_edge(
        [json.dumps({"items": [item, wide]}).encode()], path="/api/v1/skills/infer/batch"
    )
    assert status == 400 and json.loads(body) == {
        "error": "items[].features: at most 2 features per item, got 3",
        "code": "too_many_features",
    }
    status, body, _, recorder3, _ = run_edge([json.dumps(wide).encode()], path="/api/v1/skills/infer")
    assert status == 400 and json.loads(body)["code"] == "too_many_features"
    assert seen == []  # none reached the app
    assert recorder.limits + recorder2.limits + recorder3.limits == [
        ("skills", "batch_items"),
        ("skills", "features"),
        ("skills", "features"),
    ]
    # Within the limits, commas and brackets inside strings do not count.
    tricky = {**item, "student_id": "a,b,c,d,e [x] {y}", "features": {"a,b,c,d": 1, "e": 2}}
    status, _, _, _, _ = run_edge([json.dumps({"items": [tricky] * 3}).encode()], path="/api/v1/skills/infer/batch")
    assert status == 200


def test_a_writer_route_checks_the_token_before_reading_the_body():
    tokens = {"ratings": "a-ratings-writer-token-of-24+chars"}
    body = [b'{"ratings": []}']
    status, answer, headers, _, unread = run_edge(
        body, path="/api/v1/monitoring/ratings", writer_tokens=tokens, headers=[(b"authorization", b"Bearer wrong")]
    )
    assert status == 401 and json.loads(answer)["code"] == "unauthorized" and unread == 1 and seen == []
    assert headers[b"www-authenticate"] == b"Bearer"
    status, answer, _, _, unread = run_edge(body, path="/api/v1/monitoring/ratings")
    assert status == 403 and json.loads(answer)["code"] == "ratings_disabled" and unread == 1
    good = [(b"authorization", b"Bearer " + tokens["ratings"].encode())]
    status, _, _, _, _ = run_edge(body, path="/api/v1/monitoring/ratings", writer_tokens=tokens, headers=good)
    assert status == 200 and seen == body


def test_unknown_paths_are_measured_under_one_label_and_templates_under_theirs():
    for path in ("/api/nope1", "/api/nope2", "/admin/routes/skills"):
        _, _, _, recorder, _ = run_edge([], path=path, method="GET", app=echo_app)
        label = recorder.requests[0][0]
        assert label == ("/admin/routes/{family}" if path.startswith("/admin") else "unmatched")


def test_past_the_concurrency_bound_a_request_gets_a_503_with_retry_after_at_once():
    release = asyncio.Event()
    held_app = held_until(release)

    edge, recorder = edge_around(held_app)

    def one(answers):
        return post_through(edge, "/api/classify", b'{"text": "a"}', answers)

    async def scenario():
        held = [[], []]
        tasks = [asyncio.create_task(one(answers)) for answers in held]
        await asyncio.sleep(0.05)
        shed = []
        await asyncio.wait_for(one(shed), 1)  # answered without waiting for the two held ones
        release.set()
        await asyncio.gather(*tasks)
        return held, shed

    held, shed = asyncio.run(scenario())
    assert shed[0]["status"] == 503 and dict(shed[0]["headers"])[b"retry-after"] == b"3"
    assert json.loads(shed[1]["body"])["code"] == "overloaded"
    assert [answers[0]["status"] for answers in held] == [200, 200]
    assert ("other", "concurrent_requests") not in recorder.limits and (
        "intent",
        "concurrent_requests",
    ) in recorder.limits
    assert edge.active == 0


def test_a_client_that_disconnects_cancels_the_work_of_its_request():
    cancelled = []

    async def slow_app(scope, receive, send):
        await receive()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    edge, recorder = edge_around(slow_app)

    async def scenario():
        messages = [{"type": "http.request", "body": b'{"text": "a"}', "more_body": False}]
        gone = asyncio.Event()

        async def receive():
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            raise AssertionError("nobody to answer")

        scope = {"type": "http", "method": "POST", "path": "/api/classify", "headers": []}
        task = asyncio.create_task(edge(scope, receive, send))
        await asyncio.sleep(0.2)  # past the edge's WATCH_AFTER_S: it is listening for the disconnect
        gone.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
    assert cancelled == [True]
    assert recorder.requests == [("/api/classify", "POST", 499)]
    assert recorder.scores == [("intent", "single", "cancelled")]
    assert edge.active == 0


def test_a_request_cancelled_by_the_timeout_is_counted_as_a_504():
    async def slow_app(scope, receive, send):
        await receive()
        await asyncio.sleep(60)

    edge, recorder = edge_around(slow_app)

    async def scenario():
        messages = [{"type": "http.request", "body": b'{"text": "a"}', "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(60)

        async def send(message):
            pass

        scope = {"type": "http", "method": "POST", "path": "/api/classify", "headers": []}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(edge(scope, receive, send), 0.05)  # as BentoML's timeout cancels it

    asyncio.run(scenario())
    assert recorder.requests == [("/api/classify", "POST", 504)]
    assert recorder.scores == [("intent", "single", "server_error")]  # a timeout counts against availability
    assert edge.active == 0


def test_the_limits_have_working_defaults_that_fit_the_largest_allowed_batch():
    defaults = Settings()
    # The largest text batch: every character of the request's allowance escaped as \uXXXX, plus the JSON around.
    largest_text_batch = defaults.max_request_chars * 6 + defaults.max_batch_items * 8 + 64
    assert defaults.max_body_bytes >= largest_text_batch
    # One item with as many features as allowed, each named with 64 characters and a long number.
    largest_item = defaults.max_features * (64 + 30) + 256
    assert defaults.max_single_body_bytes >= largest_item
    assert defaults.max_json_depth >= 4  # {"items": [{"features": {...}}]} is 3 deep


# --- against a real server


@pytest.mark.server
def test_over_limit_requests_get_a_4xx_naming_the_limit_and_are_counted(server):
    url = server.url
    before = {
        limit: metric_total(url, REJECTIONS, limit=limit)
        for limit in ("body_bytes", "json_depth", "batch_items", "text_chars")
    }
    limit = Settings().max_single_body_bytes
    with httpx.Client(base_url=url, timeout=60) as http:
        big = http.post(
            "/api/classify",
            content=b'{"text": "a", "pad": "' + b"x" * limit + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["code"] == "body_too_large", big.text
        assert f"at most {limit} bytes for this route" in big.json()["error"]

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
        for _ in range(64):  # 64 MiB offered; the server stops reading after 64 KiB
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


def test_batches_have_a_bound_of_their_own_which_single_requests_never_wait_behind():
    release = asyncio.Event()
    held_app = held_until(release)

    limits = EdgeLimits(max_body_bytes=1024, max_json_depth=4, max_concurrent_requests=8, max_concurrent_batches=1)
    edge, recorder = edge_around(held_app, limits=limits)

    async def scenario():
        batch, single, second_batch = [], [], []
        held = asyncio.create_task(post_through(edge, "/api/classify/batch", b'{"texts": ["a"]}', batch))
        await asyncio.sleep(0.05)
        refused = post_through(edge, "/api/classify/batch", b'{"texts": ["b"]}', second_batch)
        await asyncio.wait_for(refused, 1)  # refused at once
        single_task = asyncio.create_task(post_through(edge, "/api/classify", b'{"text": "c"}', single))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(held, single_task)
        return batch, single, second_batch

    batch, single, second_batch = asyncio.run(scenario())
    assert second_batch[0]["status"] == 503 and json.loads(second_batch[1]["body"])["code"] == "overloaded"
    assert batch[0]["status"] == 200 and single[0]["status"] == 200  # the single request was taken meanwhile
    assert ("intent", "concurrent_batches") in recorder.limits
    assert edge.active == 0 and edge.active_batches == 0


def test_a_family_whose_queue_is_full_is_refused_before_the_body_is_read():
    from inference.errors import Overloaded

    def backlog(family):
        return Overloaded(f"{family} is full", limit="queue_wait") if family == "textpair" else None

    seen.clear()
    recorder = Recorder()
    table = route_table(Settings())
    edge = Edge(echo_app, routes=table, limits=LIMITS, metrics=lambda: recorder, backlog=backlog)
    answers = []
    messages = [{"type": "http.request", "body": b'{"text1": "a", "text2": "b"}', "more_body": False}]

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        answers.append(message)

    asyncio.run(edge({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send))
    assert answers[0]["status"] == 503 and json.loads(answers[1]["body"])["error"] == "textpair is full"
    assert messages and seen == []  # the body was never read
    assert recorder.limits == [("textpair", "queue_wait")]
    assert recorder.scores == [("textpair", "single", "server_error")]
    # Another family's route goes through.
    assert run_edge([b'{"text": "a"}'], path="/api/classify")[0] == 200


def test_a_worker_whose_event_loop_runs_late_refuses_new_requests_until_it_catches_up():
    limits = EdgeLimits(max_body_bytes=1024, max_json_depth=4, max_concurrent_requests=8, max_loop_lag_s=0.1)
    edge, recorder = edge_around(echo_app, limits=limits)

    async def one():
        return (await post_through(edge, "/api/classify", b'{"text": "a"}'))[0]["status"]

    async def scenario():
        first = await one()  # starts the lag monitor
        time.sleep(0.3)  # the loop is held: the monitor's next tick comes 0.3 s late
        await asyncio.sleep(0.02)
        late = await one()
        await asyncio.sleep(0.2)  # ticks on time again, past the monitor's window
        caught_up = await one()
        return first, late, caught_up

    assert asyncio.run(scenario()) == (200, 503, 200)
    assert ("intent", "event_loop_lag") in recorder.limits
