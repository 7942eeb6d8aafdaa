"""A mounted JSON route's two ends: the body read into the route's pydantic model (parsed and validated once, from
the bytes), and the answer written as bytes by pydantic in one step, with the headers BentoML puts on its own
routes' answers."""

from __future__ import annotations

from typing import TypeVar

from bentoml._internal.context import trace_context  # internal: where BentoML itself reads the request id
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from inference.errors import InferenceError
from inference.http.errors import error_response, invalid_body

SERVER_HEADER = "BentoML Service/inference"
Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: Request, model: type[Body]) -> Body:
    """The body as `model`; `InvalidRequest` naming the first bad field (the edge has bounded its size already)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as err:
        raise invalid_body(err) from err


def answer(content: BaseModel, *, background: BackgroundTask | None = None) -> Response:
    body = type(content).__pydantic_serializer__.to_json(content)
    return with_server_headers(Response(body, media_type="application/json", background=background))


def failed(error: InferenceError) -> Response:
    return with_server_headers(error_response(error))


def with_server_headers(response: Response) -> Response:
    """Server, and X-BentoML-Request-ID when the request is traced (the scoring routes are not, unless
    INFERENCE_TRACE_SCORING is on): as BentoML's `@api` routes answer."""
    response.headers["Server"] = SERVER_HEADER
    if trace_context.request_id is not None:
        response.headers["X-BentoML-Request-ID"] = format(trace_context.request_id, "016x")
    return response
