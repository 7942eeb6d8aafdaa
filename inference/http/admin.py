"""The admin API: read and change the version routes, roll back, hot-reload a version, read the audit of changes,
drop a student's cached answers. Every call needs `Authorization: Bearer <token>`, one of INFERENCE_ADMIN_TOKEN
(recorded as `admin`) or the named INFERENCE_ADMIN_TOKENS; with none configured the admin API answers 403.

Changes are committed to the control store (every replica follows it) and refused with 409 when another change
came first. `GET /admin/routes` gives the control state's revision (also as its `ETag`); a change sent with
`If-Match: <revision>` is refused with 409 unless the state is still at that revision.

A route change (weights, rollback, reload) may load a model version, which can take longer than a request may
last: it runs as an operation of the worker that took the call, which goes on whatever happens to the request.
The call waits up to INFERENCE_ADMIN_WAIT_S for it and answers as the change did (200, or its error), else 202
with the operation and `Location: /admin/operations/{id}`, where any worker of any replica reads its status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.errors import AdminDisabled, InferenceError, InvalidHeader, InvalidRequest, Unauthorized
from inference.http.errors import error_response, invalid_body
from inference.http.tokens import token_name
from inference.settings import get_settings

if TYPE_CHECKING:
    # Only for types: this module is imported by the supervising process, which must stay free of model libraries.
    from inference.serving.manager import ModelManager

TOKEN_SETTING = "INFERENCE_ADMIN_TOKEN"
TOKENS_SETTING = "INFERENCE_ADMIN_TOKENS"
OPERATION_ROUTE = "/admin/operations/{operation_id}"
MAX_ROUTE_VERSIONS = 16  # versions one route may split traffic between: each is loaded in every worker


class WeightsRequest(BaseModel):
    weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        max_length=MAX_ROUTE_VERSIONS,
        description='Version to weight, e.g. {"v1.0.0": 90, "v1.1.0": 10}; versions like v1.2.0.',
    )


class EnsembleFlagRequest(BaseModel):
    """The intent ensemble's dual-mode flag; the fields given replace the current ones."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="false: classic answers everyone, header callers included.")
    rollout_percentage: float | None = Field(
        None, ge=0, le=100, description="Share of callers (sticky per user_id) the ensemble answers."
    )
    allowed_users: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        None,
        max_length=10_000,
        description="user_ids the ensemble always answers while enabled (beta users), or names of groups of them "
        "(PUT /admin/intent/groups).",
    )
    fallback: Literal["classic"] | None = Field(None, description="What answers when the ensemble cannot: classic.")


GroupName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class GroupsRequest(BaseModel):
    """Named groups of user ids, for the ensemble flag's allowed_users: the groups given replace those of the same
    name; an empty list empties a group."""

    model_config = ConfigDict(extra="forbid")

    groups: dict[GroupName, Annotated[list[UserId], Field(max_length=10_000)]] = Field(
        max_length=100,
        description='e.g. {"beta_testers": ["u-17", "u-42"]}; a group named in allowed_users lets its members in.',
    )


class GroupsChange(BaseModel):
    groups: dict[str, Any] = Field(description="Every group after the change, by name.")
    revision: int | None


class ReloadRequest(BaseModel):
    family: str
    version: str = Field("latest", description="A version in the store, or `latest` (the highest semver).")


class RoutesState(BaseModel):
    """GET /admin/routes: every family's route, the runtime controls, the control state's revision."""

    routes: dict[str, Any] = Field(description="Per family: stable version, weights, versions loaded.")
    controls: dict[str, Any] = Field(description="Per family: its runtime controls (the intent ensemble flag).")
    revision: int | None = Field(description="The control state's revision (also the ETag); null without a store.")
    control: dict[str, Any] = Field(description="The control store: kind, reachable, last revision applied.")


class OperationError(BaseModel):
    code: str = Field(description="The error's code, as the call would have answered it (docs/api.md).")
    status: int = Field(description="The HTTP status the call would have answered with.")
    message: str


class OperationRecord(BaseModel):
    """An admin change run as an operation (it may load a model version): running, then succeeded or failed."""

    id: str = Field(description="32 hexadecimal characters; GET /admin/operations/{id} on any replica.")
    action: str = Field(description="What it does, e.g. `skills: reload v1.2.0`.")
    status: Literal["running", "succeeded", "failed"]
    started_by: str = Field(description="The name of the admin token that started it.")
    started_at: str
    updated_at: str = Field(
        description="When its worker last wrote it: every 10 s while it runs, so a running operation not updated "
        "for a minute has lost its worker (stopped mid-change; GET /admin/routes and the audit say what it did)."
    )
    updated_s_ago: float | None = Field(None, description="Seconds since updated_at, when read.")
    finished_at: str | None
    worker: str = Field(description="host/pid of the worker that runs it.")
    result: dict[str, Any] | None = Field(description="Succeeded: the route after the change and its revision.")
    error: OperationError | None = Field(description="Failed: why; nothing was changed.")


class OperationState(BaseModel):
    operation: OperationRecord


class RouteChange(BaseModel):
    route: dict[str, Any] = Field(description="The family's route after the change.")
    revision: int | None
    operation: OperationRecord | None = Field(None, description="The operation that made the change.")


class EnsembleChange(BaseModel):
    ensemble: dict[str, Any] = Field(description="The ensemble flag after the change.")
    revision: int | None


class AuditLog(BaseModel):
    changes: list[dict[str, Any]] = Field(description="The latest changes first: when, who, what, revision.")


class ForgottenStudent(BaseModel):
    student_id: str
    deleted: int = Field(description="Cached answers removed.")


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    try:
        return int(value.strip().strip('"'))
    except ValueError as err:
        raise InvalidHeader(f"If-Match: expected a revision number from GET /admin/routes, got {value!r}") from err


Handler = Callable[[Request, "ModelManager", str], Awaitable[Any]]


def admin_routes(
    tokens: Mapping[str, str], manager: Callable[[], ModelManager], *, wait_s: float | None = None
) -> list[Route]:
    """The admin routes; `manager` is called per request (the service builds its manager at startup). A route
    change waits `wait_s` (None: INFERENCE_ADMIN_WAIT_S) for its operation before answering 202."""
    operation_wait_s = get_settings().admin_wait_s if wait_s is None else wait_s

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not tokens:
                return error_response(
                    AdminDisabled(f"the admin API is off; set {TOKEN_SETTING} or {TOKENS_SETTING} to turn it on")
                )
            name = token_name(tokens, request.headers.get("authorization"))
            if name is None:
                return error_response(Unauthorized("a valid bearer token is required"))
            try:
                models = manager()
                body = await handler(request, models, name)
                if isinstance(body, Response):
                    return body
                revision = models.revision()
                headers = {"ETag": f'"{revision}"'} if revision is not None else None
                return JSONResponse(body, headers=headers)
            except InferenceError as err:
                return error_response(err)
            except ValidationError as err:
                return error_response(invalid_body(err))

        return endpoint

    async def read_routes(request: Request, models: ModelManager, actor: str) -> Any:
        return {
            "routes": models.routes(),
            "controls": models.controls(),
            "revision": models.revision(),
            "control": models.control_status(),
        }

    async def set_ensemble(request: Request, models: ModelManager, actor: str) -> Any:
        body = EnsembleFlagRequest.model_validate(await _json(request))
        changes = body.model_dump(exclude_none=True)
        if not changes:
            raise InvalidRequest("body: give at least one of enabled, rollout_percentage, allowed_users, fallback")
        changed = await models.set_control("intent", "ensemble", changes, actor=actor, based_on=_if_match(request))
        return JSONResponse(changed, headers={"ETag": f'"{changed["revision"]}"'})

    async def set_groups(request: Request, models: ModelManager, actor: str) -> Any:
        body = GroupsRequest.model_validate(await _json(request))
        if not body.groups:
            raise InvalidRequest("groups: give at least one group")
        changed = await models.set_control("intent", "groups", body.groups, actor=actor, based_on=_if_match(request))
        return JSONResponse(changed, headers={"ETag": f'"{changed["revision"]}"'})

    async def as_operation(
        models: ModelManager, action: str, actor: str, change: Callable[[], Awaitable[dict[str, Any]]]
    ) -> Response:
        """Run a route change as an operation: its answer when it ends within the wait, else 202."""
        started = await models.operations.start(action, actor=actor, work=change)
        outcome = await started.outcome(operation_wait_s)
        location = {"Location": OPERATION_ROUTE.format(operation_id=started.record["id"])}
        if outcome is None:
            return JSONResponse({"operation": started.record}, status_code=202, headers=location)
        if outcome["error"]:
            failed = outcome["error"]
            return error_response(
                InferenceError.recorded(failed["status"], failed["code"], failed["message"]), location
            )
        result = outcome["result"]
        return JSONResponse({**result, "operation": outcome}, headers={**location, "ETag": f'"{result["revision"]}"'})

    async def set_weights(request: Request, models: ModelManager, actor: str) -> Any:
        family = request.path_params["family"]
        models.check_change(family)
        body = WeightsRequest.model_validate(await _json(request))
        based_on = _if_match(request)
        models.check_change(family, body.weights, field="weights")
        weights = body.weights
        return await as_operation(
            models,
            f"{family}: weights {weights}",
            actor,
            lambda: models.set_weights(family, weights, actor=actor, based_on=based_on),
        )

    async def rollback(request: Request, models: ModelManager, actor: str) -> Any:
        family = request.path_params["family"]
        models.check_change(family)
        based_on = _if_match(request)
        return await as_operation(
            models, f"{family}: rollback", actor, lambda: models.rollback(family, actor=actor, based_on=based_on)
        )

    async def reload(request: Request, models: ModelManager, actor: str) -> Any:
        body = ReloadRequest.model_validate(await _json(request))
        based_on = _if_match(request)
        models.check_change(body.family, [body.version], field="version")
        return await as_operation(
            models,
            f"{body.family}: reload {body.version}",
            actor,
            lambda: models.reload(body.family, body.version, actor=actor, based_on=based_on),
        )

    async def operation(request: Request, models: ModelManager, actor: str) -> Any:
        return {"operation": await models.operation(request.path_params["operation_id"])}

    async def audit(request: Request, models: ModelManager, actor: str) -> Any:
        raw = request.query_params.get("limit", "50")
        # ASCII digits only: str.isdigit() accepts '²', which int() then refuses.
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
            raise InvalidRequest(f"limit: expected a whole number from 1 to 1000, got {raw!r}")
        return {"changes": await asyncio.to_thread(models.audit, int(raw))}

    async def forget_student(request: Request, models: ModelManager, actor: str) -> Any:
        student_id = request.path_params["student_id"]
        return {"student_id": student_id, "deleted": await models.cache.invalidate_student(student_id)}

    return [
        Route("/admin/routes", guarded(read_routes), methods=["GET"]),
        Route("/admin/routes/{family}", guarded(set_weights), methods=["PUT"]),
        Route("/admin/routes/{family}/rollback", guarded(rollback), methods=["POST"]),
        Route("/admin/models/reload", guarded(reload), methods=["POST"]),
        Route(OPERATION_ROUTE, guarded(operation), methods=["GET"]),
        Route("/admin/intent/ensemble", guarded(set_ensemble), methods=["PUT"]),
        Route("/admin/intent/groups", guarded(set_groups), methods=["PUT"]),
        Route("/admin/audit", guarded(audit), methods=["GET"]),
        Route("/api/v1/cache/students/{student_id}", guarded(forget_student), methods=["DELETE"]),
    ]


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as err:
        raise InvalidRequest(f"body: not valid JSON ({err})") from err
