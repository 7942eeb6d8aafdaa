"""This service with its skills scoring routes as `@bentoml.api` methods: BentoML's IO layer parses the request
into the pydantic model, calls the method with a `bentoml.Context` and serialises the answer. Everything else is
the service's own: its class (lifecycle, models, write routes), its configuration, its mounted routes, its edge.

    BENTOML_HOME=... bentoml serve loadtests.peers.bentoml_api:ApiSkills --port 3200

The service served these routes this way until its scoring routes moved to mounted Starlette routes
(inference/http/scoring.py); `loadtests.bench --targets service,bentoml-api` measures both in one run, which is
what that choice rests on (docs/performance.md, "The scoring routes outside BentoML's IO layer").
"""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.applications import Starlette

import service
from inference.errors import InferenceError
from inference.http import paths
from inference.http.errors import error_headers, error_response
from inference.http.scoring import forced_version
from inference.schemas import SkillBatchRequest, SkillBatchResponse, SkillInferenceRequest, SkillInferenceResult
from inference.serving.pipeline import BatchLimit

API_ROUTES = (paths.SKILLS_INFER_ROUTE, paths.SKILLS_BATCH_ROUTE)
# The service's mounted routes but these two, which would otherwise answer first.
MOUNTED = Starlette(routes=[route for route in service.extra_routes.routes if route.path not in API_ROUTES])


class _ApiSkills(service.Inference.inner):  # type: ignore[misc,name-defined]
    @bentoml.api(route=paths.SKILLS_INFER_ROUTE)
    async def skills_infer(self, request: SkillInferenceRequest, /, ctx: bentoml.Context) -> SkillInferenceResult:
        try:
            result, _ = await self.app.serving.answer_one(
                "skills", request, caller_id=request.student_id, forced_version=forced_version(ctx.request)
            )
        except InferenceError as err:
            return _error(err, ctx)  # type: ignore[return-value]
        return result

    @bentoml.api(route=paths.SKILLS_BATCH_ROUTE)
    async def skills_infer_batch(self, request: SkillBatchRequest, /, ctx: bentoml.Context) -> Any:
        from inference.families.skills.requests import items_of

        items = items_of(request)
        try:
            outcome = await self.app.serving.answer_many(
                "skills",
                items,
                caller_ids=[item.student_id for item in items],
                forced_version=forced_version(ctx.request),
                limit=BatchLimit("items", "item", self.app.settings.max_batch_items),
            )
        except InferenceError as err:
            return _error(err, ctx)
        results, succeeded = outcome.in_place()
        return SkillBatchResponse.model_construct(results=results, succeeded=succeeded, failed=len(items) - succeeded)


def _error(error: InferenceError, ctx: bentoml.Context) -> Any:
    """The API's error answer. BentoML sets an `@api` route's status from its context, even when the route
    returns a response of its own."""
    response = error_response(error)
    ctx.response.status_code = response.status_code
    ctx.response.headers.update(error_headers(error))
    return response


ApiSkills = bentoml.asgi_app(MOUNTED, path="/")(
    bentoml.service(name="inference", **service.Inference.config)(_ApiSkills)
)
for middleware, options in service.Inference.middlewares:
    ApiSkills.add_asgi_middleware(middleware, **options)
