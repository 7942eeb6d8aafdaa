"""What the edge middleware (request limits and the uniform error shape) costs per request, in-process, against the
same trivial ASGI app without it: `.venv/bin/python -m loadtests.middleware_bench`."""

from __future__ import annotations

import asyncio
import json
import time

from inference.http.middleware import RequestLimits, UniformErrors


async def app(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def skill_item(index: int) -> dict:
    return {"student_id": f"s-{index}", "skill": "communication", "features": {f"f{j}": j * 1.5 for j in range(12)}}


def receiver(messages: list[dict]):
    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    return receive


def microseconds_per_request(wrapped, body: bytes, requests: int) -> float:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/skills/infer",
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
    edge = UniformErrors(RequestLimits(app, max_body_bytes=16 << 20, max_json_depth=32))
    bodies = [
        ("one skills request", json.dumps(skill_item(1)).encode(), 20_000),
        ("a batch of 1000 items", json.dumps({"items": [skill_item(i) for i in range(1000)]}).encode(), 300),
    ]
    print("| body | bytes | without (µs) | with (µs) | cost (µs) |\n|---|---|---|---|---|")
    for name, body, requests in bodies:
        without = min(microseconds_per_request(app, body, requests) for _ in range(3))
        with_edge = min(microseconds_per_request(edge, body, requests) for _ in range(3))
        print(f"| {name} | {len(body):,} | {without:.1f} | {with_edge:.1f} | {with_edge - without:.1f} |")


if __name__ == "__main__":
    main()
