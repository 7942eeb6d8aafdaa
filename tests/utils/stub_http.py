"""A scripted HTTP server for the clients' retry tests: answers the given (status, body) or (status, body, headers)
in turn (the last one repeats), counting calls and noting when each request was read."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

Answer = tuple[int, Any] | tuple[int, Any, Mapping[str, str]]


class ScriptedServer:
    def __init__(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.bodies: list[Any] = []
        self.read_at: list[float] = []  # time.monotonic() when each request had been read
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                script.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                script.read_at.append(time.monotonic())
                status, body, *extra = script.answers[min(script.calls, len(script.answers) - 1)]
                headers: Mapping[str, str] = extra[0] if extra else {}
                script.calls += 1
                payload = json.dumps(body).encode()
                self.send_response_only(status)
                # A scripted Date (a server whose clock is off) replaces the one the handler would send.
                self.send_header("Date", headers.get("Date", self.date_time_string()))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    if name != "Date":
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gaps_s(self) -> list[float]:
        """Seconds between one request read and the next."""
        return [later - earlier for earlier, later in pairwise(self.read_at)]


@contextmanager
def scripted_server(answers: Sequence[Answer]) -> Iterator[ScriptedServer]:
    script = ScriptedServer(answers)
    thread = threading.Thread(target=script.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script
    finally:
        script.server.shutdown()
        script.server.server_close()
