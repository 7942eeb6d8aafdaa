"""The soak's users send as the shipped clients do (loadtests/soak_users.py): a 503 with Retry-After is waited out
and sent again, counted under its own name, and only a request still unanswered after the retries is a failure."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.utils.servers import PROJECT_ROOT

RETRIES = 3  # loadtests/soak_users.py's, as inference.client's default
# Locust patches the standard library with gevent when imported, which the test process must not have: the user
# runs in a process of its own and prints its stats.
USER = """
import json, sys
from locust.env import Environment
from loadtests.soak import RETRIED
from loadtests.soak_users import RETRIES, SoakUser

SoakUser.host = sys.argv[1]
environment = Environment(user_classes=[SoakUser], host=sys.argv[1])
environment.create_local_runner()
user = SoakUser(environment)
user.on_start()
user.post("/api/classify", {"text": "hello"}, "classify")
first, again = environment.stats.get("classify", "POST"), environment.stats.get("classify" + RETRIED, "POST")
print(json.dumps({"retries": RETRIES, "first": [first.num_requests, first.num_failures],
                  "again": [again.num_requests, again.num_failures]}))
"""


@pytest.fixture
def shedding_server() -> Iterator[tuple[str, list[int]]]:
    """Answers 503 with Retry-After: 0 while `sheds[0]` > 0 (counting down), then 200; `sheds[1]` counts requests."""
    sheds = [0, 0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            sheds[1] += 1
            if sheds[0] > 0:
                sheds[0] -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
            else:
                self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sheds
    server.shutdown()


def post_once(url: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", USER, url], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_shed_request_is_sent_again_and_counted_apart_not_as_a_failure(shedding_server):
    url, sheds = shedding_server
    sheds[0] = 2
    stats = post_once(url)
    assert sheds[1] == 3
    assert stats["first"] == [1, 0] and stats["again"] == [2, 0]


def test_a_request_shed_past_the_retries_is_a_failure(shedding_server):
    url, sheds = shedding_server
    sheds[0] = RETRIES + 5
    stats = post_once(url)
    assert stats["retries"] == RETRIES and sheds[1] == RETRIES + 1
    assert stats["first"] == [1, 0] and stats["again"] == [RETRIES, 1]
