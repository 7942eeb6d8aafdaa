"""The API's error answer, written once: `{"error": message, "code": code}` with the error's status and the
headers it calls for (Retry-After for an overload or an outage, WWW-Authenticate for a missing token). Every
route, the edge and the uniform-error middleware answer through here; the Open Inference Protocol's answers have
the same shape."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from pydantic import ValidationError
from starlette.responses import JSONResponse

from inference.errors import InferenceError, InvalidJson, InvalidRequest, Overloaded, Unauthorized


def error_headers(error: InferenceError) -> dict[str, str]:
    """The headers an error's answer carries: when to retry an overload or an outage, how to authenticate."""
    if isinstance(error, Overloaded):
        return {"Retry-After": str(error.retry_after_s)}
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if int(error.status) == 503:
        return {"Retry-After": "1"}
    return {}


def error_bytes(error: InferenceError) -> bytes:
    """The body of an error's answer."""
    return json.dumps(error.body()).encode()


def error_response(error: InferenceError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error's answer; `headers` beside the error's own (an operation's Location)."""
    return JSONResponse(
        error.body(), status_code=int(error.status), headers={**error_headers(error), **(headers or {})} or None
    )


def field_path(location: Sequence[object]) -> str:
    """`["items", 3, "features"]` -> `items[3].features`; the whole body when there is no location."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "request body"


def validation_error(details: Sequence[Mapping[str, object]]) -> InvalidRequest:
    """A body pydantic refused (its error details), named by its first bad field: `items[3].text: Field
    required (and 2 more)`; `invalid_json` when the body is not JSON at all."""
    first = details[0] if details else {}
    location = first.get("loc")
    message = f"{field_path(location if isinstance(location, list | tuple) else [])}: {first.get('msg', 'invalid')}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return InvalidJson(message) if first.get("type") == "json_invalid" else InvalidRequest(message)


def invalid_body(err: ValidationError) -> InvalidRequest:
    """A body a route's pydantic model refused."""
    return validation_error(err.errors())
