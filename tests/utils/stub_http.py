"""A scripted HTTP server for the clients' retry tests: answers the given (status, body) in turn, counting calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedServer:
    def __init__(self, answers: Sequence[tuple[int, Any]]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.bodies: list[Any] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                script.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                status, body = script.answers[min(script.calls, len(script.answers) - 1)]
                script.calls += 1
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def scripted_server(answers: Sequence[tuple[int, Any]]) -> Iterator[ScriptedServer]:
    script = ScriptedServer(answers)
    thread = threading.Thread(target=script.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script
    finally:
        script.server.shutdown()
        script.server.server_close()
