"""What the edge (limits, load bound, route metrics, disconnect watch; inference/http/edge.py) and the uniform error
shape cost per request, in-process, against the same trivial ASGI app without them:
`.venv/bin/python -m loadtests.middleware_bench`."""

from __future__ import annotations

import asyncio
import json
import time

from inference.http.edge import Edge, EdgeLimits
from inference.http.middleware import UniformErrors
from inference.http.routes import route_table
from inference.monitoring.metrics import HttpMetrics
from inference.settings import Settings


async def app(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def skill_item(index: int) -> dict:
    return {"student_id": f"s-{index}", "skill": "communication", "features": {f"f{j}": j * 1.5 for j in range(12)}}


def receiver(messages: list[dict]):
    async def receive() -> dict:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # as a server does: the next message is the disconnect, which never comes here
        return {"type": "http.disconnect"}

    return receive


def microseconds_per_request(wrapped, body: bytes, requests: int, path: str) -> float:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }

    async def send(message) -> None:
        pass

    async def run() -> None:
        for _ in range(requests):
            messages = [{"type": "http.request", "body": body, "more_body": False}]
            await wrapped(scope, receiver(messages), send)

    started = time.perf_counter()
    asyncio.run(run())
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    settings = Settings()
    limits = EdgeLimits(
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        max_concurrent_requests=settings.max_concurrent_requests,
    )
    edge = Edge(UniformErrors(app), routes=route_table(settings), limits=limits, metrics=HttpMetrics)
    bodies = [
        ("one skills request", "/api/v1/skills/infer", json.dumps(skill_item(1)).encode(), 20_000),
        (
            "a batch of 1000 items",
            "/api/v1/skills/infer/batch",
            json.dumps({"items": [skill_item(i) for i in range(1000)]}).encode(),
            300,
        ),
    ]
    print("| body | bytes | without (µs) | with (µs) | cost (µs) |\n|---|---|---|---|---|")
    for name, path, body, requests in bodies:
        without = min(microseconds_per_request(app, body, requests, path) for _ in range(3))
        with_edge = min(microseconds_per_request(edge, body, requests, path) for _ in range(3))
        print(f"| {name} | {len(body):,} | {without:.1f} | {with_edge:.1f} | {with_edge - without:.1f} |")


if __name__ == "__main__":
    main()
