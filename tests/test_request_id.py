"""The request id: the caller's X-Request-ID when it is acceptable, else a new one; returned on every answer, the
edge's own refusals and the 4xx of the routes and of Starlette included; and carried by every log line of the
request in the JSON format (INFERENCE_LOG_FORMAT=json), the access log's among them. In process: the edge and the
uniform errors around a small Starlette app, as service.py stacks them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from bentoml._internal.server.http.access import AccessLogMiddleware  # internal: BentoML's access log
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inference.http.edge import REQUEST_ID_HEADER, Edge, EdgeLimits, request_id_of
from inference.http.middleware import UniformErrors
from inference.http.routes import route_table
from inference.logs import LOGGER_NAME, REQUEST_ID, JsonFormatter, RequestIdFilter, configure_logging
from inference.settings import Settings

SCORING_ROUTE = "/api/v1/skills/infer"
MADE_ID = re.compile(r"[0-9a-f]{32}")
SINGLE_BODY_BYTES = 1024

logger = logging.getLogger(LOGGER_NAME)


async def score(request: Request) -> JSONResponse:
    await request.body()
    logger.info("scored one student")
    return JSONResponse({"score": 0.5})


async def refuse(request: Request) -> JSONResponse:
    # BentoML's shape for a body its pydantic model refuses, which UniformErrors rewrites.
    return JSONResponse([{"error": "student_id: Field required"}], status_code=400)


def service_stack(app: Starlette) -> Edge:
    settings = Settings(max_single_body_bytes=SINGLE_BODY_BYTES)
    limits = EdgeLimits(max_body_bytes=1 << 20, max_json_depth=8, max_concurrent_requests=8)
    return Edge(UniformErrors(app), routes=route_table(settings), limits=limits)


class Client:
    """Requests to an ASGI app in process, one event loop per request."""

    def __init__(self, app: object) -> None:
        self.app = app

    def request(self, method: str, path: str, **options: object) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
                return await client.request(method, path, **options)

        return asyncio.run(call())

    def post(self, path: str, **options: object) -> httpx.Response:
        return self.request("POST", path, **options)

    def get(self, path: str, **options: object) -> httpx.Response:
        return self.request("GET", path, **options)


@pytest.fixture
def client() -> Client:
    app = Starlette(
        routes=[
            Route(SCORING_ROUTE, score, methods=["POST"]),
            Route("/api/v1/skills/refused", refuse, methods=["POST"]),
        ]
    )
    return Client(service_stack(app))


def test_a_valid_request_id_is_echoed(client):
    answer = client.post(SCORING_ROUTE, json={}, headers={REQUEST_ID_HEADER: "checkout-7f3a 42"})
    assert answer.status_code == 200
    assert answer.headers[REQUEST_ID_HEADER] == "checkout-7f3a 42"


def test_a_request_without_an_id_gets_a_new_one_each_time(client):
    first = client.post(SCORING_ROUTE, json={}).headers[REQUEST_ID_HEADER]
    second = client.post(SCORING_ROUTE, json={}).headers[REQUEST_ID_HEADER]
    assert MADE_ID.fullmatch(first) and MADE_ID.fullmatch(second) and first != second


def test_an_overlong_request_id_is_replaced_and_not_echoed(client):
    given = "a" * 129
    answer = client.post(SCORING_ROUTE, json={}, headers={REQUEST_ID_HEADER: given})
    assert MADE_ID.fullmatch(answer.headers[REQUEST_ID_HEADER])


@pytest.mark.parametrize("given", [b"", b"line\nbreak", b"tab\there", b"caf\xc3\xa9", b"\x7f", b"x" * 129])
def test_an_id_that_is_not_printable_ascii_of_at_most_128_characters_is_replaced(given):
    scope = {"headers": [(b"x-request-id", given)]}
    assert MADE_ID.fullmatch(request_id_of(scope))


def test_an_id_of_128_printable_characters_is_kept():
    given = "".join(chr(code) for code in range(0x20, 0x7F)) + "z" * 33
    assert len(given) == 128
    assert request_id_of({"headers": [(b"x-request-id", given.encode())]}) == given


def test_the_edges_own_refusal_carries_the_request_id(client):
    answer = client.post(
        SCORING_ROUTE,
        content=b"[" + b" " * SINGLE_BODY_BYTES + b"]",
        headers={"content-type": "application/json", REQUEST_ID_HEADER: "too-big-1"},
    )
    assert answer.status_code == 413
    assert answer.headers[REQUEST_ID_HEADER] == "too-big-1"


def test_a_404_and_a_rewritten_4xx_carry_the_request_id(client):
    missing = client.get("/nowhere", headers={REQUEST_ID_HEADER: "lost-1"})
    assert missing.status_code == 404 and missing.headers[REQUEST_ID_HEADER] == "lost-1"
    refused = client.post("/api/v1/skills/refused", json={}, headers={REQUEST_ID_HEADER: "bad-body-1"})
    assert refused.status_code == 400 and refused.json()["error"] == "student_id: Field required"
    assert refused.headers[REQUEST_ID_HEADER] == "bad-body-1"
    assert refused.headers.get_list(REQUEST_ID_HEADER) == ["bad-body-1"]  # once, not once per middleware


def test_the_id_is_set_only_while_the_request_is_answered(client):
    client.post(SCORING_ROUTE, json={}, headers={REQUEST_ID_HEADER: "done-1"})
    assert REQUEST_ID.get() is None


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def worker_log(monkeypatch, caplog) -> Iterator[io.StringIO]:
    """The worker's logging as BentoML leaves it (one handler, on the root logger and on BentoML's), written to a
    string; the loggers' levels as they were afterwards, and pytest's capturing handler as it was (pytest keeps it
    for every test: configured for JSON here, every later test's caplog would read JSON)."""
    captured = caplog.handler
    kept_formatter, kept_filters = captured.formatter, list(captured.filters)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    monkeypatch.setattr(logging.getLogger("bentoml"), "handlers", [handler])
    monkeypatch.setattr(logging.getLogger("bentoml"), "propagate", False)
    levels = {name: logging.getLogger(name).level for name in (LOGGER_NAME, "bentoml.access")}
    logging.getLogger("bentoml.access").setLevel(logging.INFO)
    yield stream
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    captured.setFormatter(kept_formatter)
    captured.filters[:] = kept_filters


def test_in_the_json_format_a_log_line_of_the_request_carries_its_id(worker_log):
    configure_logging("INFO", "json")
    # BentoML's access log sits outside the edge: its line is written while the edge sends the answer.
    app = Starlette(routes=[Route(SCORING_ROUTE, score, methods=["POST"])])
    Client(AccessLogMiddleware(service_stack(app))).post(
        SCORING_ROUTE, json={}, headers={REQUEST_ID_HEADER: "trace-me-1"}
    )
    logger.warning("between requests")

    scored, access, between = json_lines(worker_log)
    assert scored == {
        "time": scored["time"],
        "level": "INFO",
        "logger": "inference",
        "message": "scored one student",
        "request_id": "trace-me-1",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", scored["time"])
    assert access["logger"] == "bentoml.access" and access["request_id"] == "trace-me-1"
    assert "status=200" in access["message"]
    assert "request_id" not in between and between["message"] == "between requests"


def test_a_json_line_carries_the_traceback_of_an_exception(monkeypatch):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    failing = logging.getLogger("tests.request_id.failing")
    monkeypatch.setattr(failing, "handlers", [handler])
    monkeypatch.setattr(failing, "propagate", False)
    try:
        raise ValueError("bad row")
    except ValueError:
        failing.exception("scoring failed")
    (line,) = json_lines(stream)
    assert line["message"] == "scoring failed" and "ValueError: bad row" in line["exception"]
