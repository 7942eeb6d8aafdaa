"""The JSON scoring routes, from the family registry: every `JsonRoute` of a family's spec is served here, as a
Starlette route mounted in the BentoML service (not an `@bentoml.api` method: docs/performance.md, "The scoring
routes outside BentoML's IO layer"). Each request takes the serving path every family takes (version choice,
result cache, batcher, observation, shadow), and the edge holds it to its route's limits before the body is read.
The body is parsed and validated once, by pydantic from the bytes; the answer's bytes are written by pydantic.

    POST <path>    body: the route's pydantic model -> one answer, or {"results", "succeeded", "failed"} for a
                   batch route (a failed item's error in its place)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inference.errors import InferenceError
from inference.families.registry import FamilySpec, JsonRoute, attribute
from inference.http.answers import answer, failed, read_body
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
            operation_id=f"inference_{route.name}" if route.name else None,
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
    answer_model: type[BaseModel] | None = None
    to_requests: Callable[[Any, Mapping[str, str]], tuple[list[Any], list[str | None]]] | None = None

    async def endpoint(request: Request) -> Response:
        nonlocal body_model, answer_model, to_requests
        if body_model is None or answer_model is None or to_requests is None:  # imported on first use, in a worker
            body_model, answer_model = attribute(route.body), attribute(route.answer)
            to_requests = attribute(route.requests)
        app = current()
        try:
            requests, callers = to_requests(await read_body(request, body_model), request.headers)
            if route.batch is None:
                result, outcome = await app.serving.answer_one(
                    family, requests[0], caller_id=callers[0], forced_version=forced_version(request)
                )
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
                result = answer_model.model_construct(
                    results=results, succeeded=succeeded, failed=len(results) - succeeded
                )
        except InferenceError as err:
            return failed(err)
        shadow = app.shadows.get(family)
        compare = shadow.task(outcome) if shadow is not None else None
        return answer(result, background=BackgroundTask(compare) if compare is not None else None)

    endpoint.__doc__ = route.summary
    return endpoint
