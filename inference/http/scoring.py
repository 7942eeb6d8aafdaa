"""JSON scoring routes from the family registry: a family whose spec lists `routes` (`JsonRoute`) is served here,
with no route of its own in service.py. Each request takes the serving path every family takes (version choice,
result cache, batcher, observation, shadow), and the edge holds it to the same limits as any scoring route.

    POST <path>    body: the route's pydantic model -> one answer, or {"results", "succeeded", "failed"} for a
                   batch route (a failed item's error in its place)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inference.errors import InferenceError
from inference.families.registry import FamilySpec, JsonRoute, attribute
from inference.http.errors import error_response, invalid_body
from inference.http.openapi import Operation
from inference.http.paths import DEPRECATED_VERSION_HEADER, VERSION_HEADER

if TYPE_CHECKING:
    from inference.app import App


def forced_version(request: Request) -> str | None:
    """The version a request forces: X-Model-Version, else its older name X-Model-Variant (deprecated)."""
    return request.headers.get(VERSION_HEADER) or request.headers.get(DEPRECATED_VERSION_HEADER)


def scoring_operations(specs: Sequence[FamilySpec]) -> list[Operation]:
    """The OpenAPI description of every `JsonRoute` of `specs`."""
    version = ((VERSION_HEADER, "Force a loaded version (the older name X-Model-Variant is still read)."),)
    return [
        Operation(
            "POST",
            route.path,
            route.summary,
            attribute(route.answer),
            body=attribute(route.body),
            headers=version,
            statuses=(413,),
            tag=spec.name,
        )
        for spec in specs
        for route in spec.routes
    ]


def scoring_routes(specs: Sequence[FamilySpec], current: Callable[[], App]) -> list[Route]:
    """A Starlette route for every `JsonRoute` of `specs`."""
    return [
        Route(route.path, _endpoint(spec.name, route, current), methods=["POST"])
        for spec in specs
        for route in spec.routes
    ]


def _endpoint(family: str, route: JsonRoute, current: Callable[[], App]) -> Callable[[Request], Any]:
    body_model: type[BaseModel] | None = None
    to_requests: Callable[[Any], tuple[list[Any], list[str | None]]] | None = None

    async def endpoint(request: Request) -> Response:
        nonlocal body_model, to_requests
        if body_model is None or to_requests is None:  # imported on first use, in a worker
            body_model, to_requests = attribute(route.body), attribute(route.requests)
        app = current()
        try:
            try:
                body = body_model.model_validate_json(await request.body())
            except ValidationError as err:
                raise invalid_body(err) from err
            requests, callers = to_requests(body)
            if route.batch is None:
                answer, outcome = await app.serving.answer_one(
                    family, requests[0], caller_id=callers[0], forced_version=forced_version(request)
                )
                content = answer.model_dump(mode="json")
            else:
                from inference.serving.pipeline import BatchLimit

                field, noun = route.batch
                outcome = await app.serving.answer_many(
                    family,
                    requests,
                    caller_ids=callers,
                    forced_version=forced_version(request),
                    limit=BatchLimit(field, noun, app.settings.max_batch_items),
                )
                results, succeeded = outcome.in_place()
                content = {
                    "results": [result.model_dump(mode="json") for result in results],
                    "succeeded": succeeded,
                    "failed": len(results) - succeeded,
                }
        except InferenceError as err:
            return error_response(err)
        shadow = app.shadows.get(family)
        compare = shadow.task(outcome) if shadow is not None else None
        background = BackgroundTask(compare) if compare is not None else None
        return Response(orjson.dumps(content), media_type="application/json", background=background)

    endpoint.__doc__ = route.summary
    return endpoint
