"""ASGI middleware at the edge of the service: request limits, and one error shape for every 4xx.

`RequestLimits` checks what a request may carry before anything parses it: the body's size and the JSON nesting
depth. A body over `max_body_bytes` is refused with 413 as soon as its declared
length (or, sent in chunks, the bytes received so far) is over the limit, without reading the rest; a JSON
document nested deeper than `max_json_depth` is refused with 400 before the JSON parser sees it. Both answer in the
API's error shape, `{"error": message, "code": code}`, and are counted in `inference_limit_rejections`. The other
limits (items per batch, characters per text) are checked where those values are read, with the same metric.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

from inference.errors import BodyTooLarge, InferenceError, JsonTooDeep, UnsupportedMediaType
from inference.http import paths as routes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FAMILY_BY_ROUTE = {
    routes.SKILLS_INFER_ROUTE: "skills",
    routes.SKILLS_BATCH_ROUTE: "skills",
    routes.CLASSIFY_ROUTE: "intent",
    routes.CLASSIFY_BATCH_ROUTE: "intent",
    routes.ENSEMBLE_ROUTE: "intent",
    routes.TEXTPAIR_ROUTE: "textpair",
    routes.RATINGS_ROUTE: "ratings",
    routes.INTENT_FEEDBACK_ROUTE: "feedback",
    routes.TEXTPAIR_FEEDBACK_ROUTE: "feedback",
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OIP_PREFIX = "/v2/"
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("{"), ord("[")]] = 1
_STEP[[ord("}"), ord("]")]] = -1
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"{}[]')


def json_depth(body: bytes, *, at_most: int) -> int:
    """The nesting depth of a JSON document, exact once it is over `at_most` (below, any value <= at_most).

    Cheap where it matters: a body with no more brackets than `at_most` cannot be deeper, so most single
    requests cost two byte counts; otherwise the depth is a running sum over the brackets outside strings.
    """
    if body.count(b"{") + body.count(b"[") <= at_most:
        return 0
    if b"\\" in body:  # drop escaped backslashes, then escaped quotes: every quote left opens or closes a string
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Only quotes and brackets matter; a bracket is inside a string when an odd number of quotes precede it.
    marks = np.frombuffer(body.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    if marks.size == 0:
        return 0
    outside = (np.cumsum(marks == ord('"'), dtype=np.int32) & 1) == 0
    steps = np.take(_STEP, marks) * outside
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_json_depth: int,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self._count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        family = FAMILY_BY_ROUTE.get(scope["path"], "other")
        # The Open Inference Protocol's binary extension sends tensors after a JSON header: only its size is checked
        # here (inference/http/oip/tensors.py reads the rest).
        tensors = scope["path"].startswith(OIP_PREFIX)
        media_type = _header(scope, b"content-type").split(b";")[0].strip().lower()
        if media_type and media_type != b"application/json" and not tensors:
            # BentoML would pick another decoder by this header (a form parser; a pickle loader, which it refuses
            # on the main server): the API reads JSON only.
            got = media_type.decode("latin-1")
            await self._refuse(
                send, family, UnsupportedMediaType(f"Content-Type: expected application/json, got {got}")
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, family, self._too_large(f"{declared} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, family, self._too_large(f"more than {self.max_body_bytes} bytes"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        depth = 0 if tensors else json_depth(body, at_most=self.max_json_depth)
        if depth > self.max_json_depth:
            error = JsonTooDeep(f"request body: JSON nested at most {self.max_json_depth} levels deep, got {depth}")
            await self._refuse(send, family, error)
            return

        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    def _too_large(self, got: str) -> BodyTooLarge:
        return BodyTooLarge(f"request body: at most {self.max_body_bytes} bytes, got {got}")

    async def _refuse(self, send: Send, family: str, error: InferenceError) -> None:
        if self._count is not None and error.limit:
            self._count(family, error.limit)
        body = json.dumps({"error": error.message, "code": error.code}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if isinstance(error, BodyTooLarge):
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": int(error.status), "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, wanted: bytes) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return b""


def _content_length(scope: Scope) -> int | None:
    try:
        return int(_header(scope, b"content-length"))
    except ValueError:
        return None  # absent (chunked), or malformed, which the server refuses itself


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
    code, message = "invalid_request", error["error"]
    details = error.get("detail")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        code = "invalid_json" if first.get("type") == "json_invalid" else "invalid_request"
        message = f"{_field(first.get('loc') or [])}: {first.get('msg', 'invalid')}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more)"
    return json.dumps({"error": message, "code": code}).encode()


def _field(location: list[object]) -> str:
    """`["items", 3, "features"]` -> `items[3].features`; the whole body when there is no location."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "request body"


def _is_json(start: Message) -> bool:
    return any(name == b"content-type" and value.startswith(b"application/json") for name, value in start["headers"])
