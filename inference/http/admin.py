"""The admin API: read and change the version routes, roll back, hot-reload a version, drop a student's cached
answers. Every call needs `Authorization: Bearer <INFERENCE_ADMIN_TOKEN>`; with no token configured the admin
API answers 403 to everyone."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inference.errors import InferenceError, InvalidRequest

if TYPE_CHECKING:
    # Only for types: this module is imported by the supervising process, which must stay free of model libraries.
    from inference.serving.manager import ModelManager

TOKEN_SETTING = "INFERENCE_ADMIN_TOKEN"


class WeightsRequest(BaseModel):
    weights: dict[str, float] = Field(description='Version to weight, e.g. {"v1.0.0": 90, "v1.1.0": 10}.')


class ReloadRequest(BaseModel):
    family: str
    version: str = Field("latest", description="A version in the store, or `latest` (the highest semver).")


def token_matches(expected: str | None, authorization: str | None) -> bool:
    if not expected or not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), expected.encode())


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


Handler = Callable[[Request, "ModelManager"], Awaitable[Any]]


def admin_routes(token: str | None, manager: Callable[[], ModelManager]) -> list[Route]:
    """The admin routes; `manager` is called per request (the service builds its manager at startup)."""

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            if not token:
                return _error(403, "admin_disabled", f"the admin API is off; set {TOKEN_SETTING} to turn it on")
            if not token_matches(token, request.headers.get("authorization")):
                return _error(401, "unauthorized", "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
            try:
                return JSONResponse(await handler(request, manager()))
            except InferenceError as err:
                return _error(int(err.status), err.code, err.message)
            except ValidationError as err:
                first = err.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or "body"
                return _error(400, "invalid_request", f"{field}: {first['msg']}")

        return endpoint

    async def read_routes(request: Request, models: ModelManager) -> Any:
        return {"routes": models.routes()}

    async def set_weights(request: Request, models: ModelManager) -> Any:
        body = WeightsRequest.model_validate(await _json(request))
        return {"route": await models.set_weights(request.path_params["family"], body.weights)}

    async def rollback(request: Request, models: ModelManager) -> Any:
        return {"route": await models.rollback(request.path_params["family"])}

    async def reload(request: Request, models: ModelManager) -> Any:
        body = ReloadRequest.model_validate(await _json(request))
        return {"route": await models.reload(body.family, body.version)}

    async def forget_student(request: Request, models: ModelManager) -> Any:
        student_id = request.path_params["student_id"]
        return {"student_id": student_id, "deleted": await models.cache.invalidate_student(student_id)}

    return [
        Route("/admin/routes", guarded(read_routes), methods=["GET"]),
        Route("/admin/routes/{family}", guarded(set_weights), methods=["PUT"]),
        Route("/admin/routes/{family}/rollback", guarded(rollback), methods=["POST"]),
        Route("/admin/models/reload", guarded(reload), methods=["POST"]),
        Route("/api/v1/cache/students/{student_id}", guarded(forget_student), methods=["DELETE"]),
    ]


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as err:
        raise InvalidRequest(f"body: not valid JSON ({err})") from err
