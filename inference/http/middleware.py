"""One error shape for every 4xx: `UniformErrors` turns BentoML's own 4xx bodies into the API's
`{"error": message, "code": code}`. The edge (`inference.http.edge`) answers in that shape itself."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from inference.errors import InvalidRequest
from inference.http.errors import error_bytes, validation_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OIP_PREFIX = "/v2/"


class UniformErrors:
    """Every JSON 4xx in the API's shape, `{"error": message, "code": code}`.

    BentoML answers a request its pydantic model refuses with `{"error": "1 validation error for ...", "detail":
    [...]}`, and its other 4xx as a one-element list; this turns both into the API's shape, the message naming the
    field (`items[3].features: Input should be a valid dictionary`). Other answers pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OIP_PREFIX):  # the protocol has its own shape
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        parts: list[bytes] = []

        async def send_uniform(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500 and _is_json(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = uniform_error(b"".join(parts))
            headers = [(name, value) for name, value in held.get("headers", ()) if name != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_uniform)


def uniform_error(body: bytes) -> bytes:
    """A 4xx body in the API's shape; a body already in it, or not understood, is returned as it is."""
    try:
        error = json.loads(body)
    except ValueError:
        return body
    if isinstance(error, list) and len(error) == 1 and isinstance(error[0], dict):
        error = error[0]
    if not isinstance(error, dict) or not isinstance(error.get("error"), str) or "code" in error:
        return body
    details = error.get("detail")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return error_bytes(validation_error(details))
    return error_bytes(InvalidRequest(error["error"]))


def _is_json(start: Message) -> bool:
    return any(name == b"content-type" and value.startswith(b"application/json") for name, value in start["headers"])
