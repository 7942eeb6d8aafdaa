"""One OpenAPI document for every route, served at `GET /docs.json` (Swagger UI at `/` reads it).

Every route of the API is mounted through Starlette and described here from the pydantic models it reads and
answers with: the reads, admin and Open Inference Protocol routes in one table below, the families' scoring and
feedback routes from their registrations (inference/http/scoring.py, writes.py); BentoML describes only its own
probes. Every operation lists the statuses it can answer in the API's error shape:
400/413/415 where a body is read, 401/403 where a token is needed, 503 while a family or the database is not
ready, 504 when the request timeout passes; and 202 where the route starts an admin operation it may not wait for.
A test checks that the table and the mounted routes match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from inference import schemas
from inference.http import admin, paths
from inference.http.oip import schemas as oip

OPENAPI_VERSION = "3.1.0"  # the pydantic models' schemas are JSON Schema 2020-12, as OpenAPI 3.1 uses
REF = "#/components/schemas/{model}"
ERROR = "ErrorBody"
PROTOCOL_ERROR = "ProtocolErrorBody"
STATUS_TEXT = {
    400: "The request is invalid; the message names the field.",
    401: "A valid bearer token is required.",
    403: "The route is switched off: no token is configured for it.",
    404: "No such model, version, family or admin operation.",
    409: "Another change came first (If-Match), or the new version did not load: nothing changed.",
    413: "The body is larger than the route takes (INFERENCE_MAX_BODY_BYTES; a single item: "
    "INFERENCE_MAX_SINGLE_BODY_BYTES).",
    415: "The body is not JSON (Content-Type).",
    500: "An unexpected server error.",
    503: "The worker is at capacity (`overloaded`), a family is not loaded yet, or the database or control store "
    "cannot be reached; retry after the Retry-After header's seconds.",
    504: "No answer within INFERENCE_REQUEST_TIMEOUT_S.",
}
ALWAYS = (500, 503, 504)
WITH_BODY = (400, 413, 415)


class ErrorBody(BaseModel):
    """The API's error: `code` is stable (docs/api.md lists them); the message names the field."""

    error: str
    code: str | None = None


@dataclass(frozen=True)
class Operation:
    """One route: what it answers (a model, or a media type with no schema), the body it
    reads, its parameters and the statuses it adds to the common ones."""

    method: str
    path: str
    summary: str
    answer: type[BaseModel] | str
    body: type[BaseModel] | None = None
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    statuses: tuple[int, ...] = ()
    accepted: type[BaseModel] | None = None  # the 202 answer of a route whose work may outlast the call
    tag: str = "Service APIs"
    protocol: bool = False  # the Open Inference Protocol: errors in its {"error"} shape, binary bodies too
    operation_id: str | None = None  # else from the method and path

    def path_parameters(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


ADMIN = "Admin"
OIP = "Open Inference Protocol"
TOKEN = (401, 403)
IF_MATCH = (("If-Match", "The revision the change is based on (GET /admin/routes); 409 when it moved on."),)
ACCEPTED_TEXT = (
    "The change runs on as an operation (it loads a model version); follow it at the Location header, "
    "GET /admin/operations/{id}."
)
MODEL = "/v2/models/{name}"
VERSIONED = MODEL + "/versions/{version}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", paths.SKILLS_MODELS_ROUTE, "The skill models of the stable version.", schemas.SkillModelsResponse),
    Operation("GET", paths.MODELS_ROUTE, "Every family served: models, versions, route.", schemas.ModelsResponse),
    Operation("GET", paths.MODEL_INFO_ROUTE, "The text-pair model: version, features, metrics.", schemas.TextPairModelInfo),
    Operation("GET", paths.HEALTH_ROUTE, "Status (503 while a family is not loaded) and the models; the reasons with detail=true and an admin token.", schemas.HealthResponse, query=(("detail", {"type": "boolean", "default": False}, "With an admin bearer token: why a family or the control store failed."),)),
    Operation("GET", paths.DRIFT_ROUTE, "PSI and KS of live inputs against each skill model's reference.", schemas.DriftResponse),
    Operation("GET", paths.CORRELATION_ROUTE, "Scores against teacher ratings, per skill and version.", schemas.CorrelationResponse),
    Operation("GET", paths.ACCURACY_ROUTE, "Live accuracy and satisfaction on labelled feedback; the ensemble's go/no-go rule and matrix.", schemas.AccuracyResponse),
    Operation("GET", paths.DASHBOARD_ROUTE, "The monitoring dashboard.", "text/html"),
    Operation("GET", "/admin/routes", "Every family's route, the controls, the revision (ETag).", admin.RoutesState, statuses=TOKEN, tag=ADMIN),
    Operation("PUT", "/admin/routes/{family}", "Set a family's version weights, loading the versions not loaded yet.", admin.RouteChange, body=admin.WeightsRequest, headers=IF_MATCH, statuses=(*TOKEN, 409), accepted=admin.OperationState, tag=ADMIN),
    Operation("POST", "/admin/routes/{family}/rollback", "All of a family's traffic back to its stable version.", admin.RouteChange, headers=IF_MATCH, statuses=(*TOKEN, 400, 409), accepted=admin.OperationState, tag=ADMIN),
    Operation("POST", "/admin/models/reload", "Load and validate a version (or latest) and make it stable with all traffic.", admin.RouteChange, body=admin.ReloadRequest, headers=IF_MATCH, statuses=(*TOKEN, 409), accepted=admin.OperationState, tag=ADMIN),
    Operation("GET", admin.OPERATION_ROUTE, "An admin operation's status, from any replica: running, succeeded or failed.", admin.OperationState, statuses=(*TOKEN, 400, 404), tag=ADMIN),
    Operation("PUT", "/admin/intent/ensemble", "The intent ensemble's flag.", admin.EnsembleChange, body=admin.EnsembleFlagRequest, headers=IF_MATCH, statuses=(*TOKEN, 409), tag=ADMIN),
    Operation("PUT", "/admin/intent/groups", "Named groups of user ids for the ensemble flag's allowed_users.", admin.GroupsChange, body=admin.GroupsRequest, headers=IF_MATCH, statuses=(*TOKEN, 409), tag=ADMIN),
    Operation("GET", "/admin/audit", "The latest admin changes.", admin.AuditLog, query=(("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "How many changes."),), statuses=(*TOKEN, 400), tag=ADMIN),
    Operation("DELETE", "/api/v1/cache/students/{student_id}", "Drop a student's cached answers.", admin.ForgottenStudent, statuses=TOKEN, tag=ADMIN),
    Operation("GET", "/v2", "Server metadata: name, version, extensions.", oip.ServerMetadata, tag=OIP, protocol=True),
    Operation("GET", "/v2/health/live", "Whether the server is alive.", oip.ServerLive, tag=OIP, protocol=True),
    Operation("GET", "/v2/health/ready", "Whether every family is loaded (503 while not).", oip.ServerReady, tag=OIP, protocol=True),
    *(
        operation
        for path in (MODEL, VERSIONED)
        for operation in (
            Operation("GET", path, "A model's metadata: versions, inputs, outputs.", oip.ModelMetadata, statuses=(404,), tag=OIP, protocol=True),
            Operation("GET", path + "/ready", "Whether the model can answer.", oip.ModelReady, statuses=(404,), tag=OIP, protocol=True),
            Operation("POST", path + "/infer", "Score input tensors (JSON, or with binary data after the JSON).", oip.InferResponse, body=oip.InferRequest, statuses=(404,), tag=OIP, protocol=True),
        )
    ),
)  # fmt: skip


@dataclass
class Document:
    """Builds the document once per process: BentoML's part, then this table's, with one set of components."""

    models: set[type[BaseModel]] = field(default_factory=lambda: {ErrorBody, oip.ProtocolErrorBody})

    def build(
        self, bentoml_document: dict[str, Any], *, title: str, version: str, extra: tuple[Operation, ...] = ()
    ) -> dict[str, Any]:
        document = dict(bentoml_document)
        document.update(
            openapi=OPENAPI_VERSION,
            info={
                "title": title,
                "version": version,
                "description": 'Skills, intent and text-pair classifiers. Errors: `{"error": message, "code": '
                'code}` (docs/api.md); the Open Inference Protocol\'s: `{"error": message, "code": code}` (docs/oip.md).',
            },
        )
        document["paths"] = {path: dict(item) for path, item in document["paths"].items()}
        for path, item in document["paths"].items():
            for operation in item.values():
                self._complete_bentoml_operation(path, operation)
        for operation in (*OPERATIONS, *extra):
            document["paths"].setdefault(operation.path, {})[operation.method.lower()] = self._operation(operation)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("InvalidArgument", "NotFound", "InternalServerError"):  # replaced by ErrorBody
            components.pop(name, None)
        components.update(_schemas(self.models))
        return document

    def _complete_bentoml_operation(self, path: str, operation: dict[str, Any]) -> None:
        """A BentoML operation with the statuses the service answers, in its error shape."""
        responses = operation.setdefault("responses", {})
        ok = responses.get(200) or responses.get("200")
        kept = {"200": ok} if ok is not None else {}
        statuses = (*ALWAYS, *(WITH_BODY if "requestBody" in operation else ()))
        kept.update(self._errors(statuses, protocol=False))
        operation["responses"] = kept

    def _operation(self, operation: Operation) -> dict[str, Any]:
        self.models.update(model for model in (operation.answer, operation.body) if isinstance(model, type))
        if isinstance(operation.answer, str):
            ok = {"description": "OK", "content": {operation.answer: {"schema": {"type": "string"}}}}
        else:
            content: dict[str, Any] = {
                "application/json": {"schema": {"$ref": REF.format(model=operation.answer.__name__)}}
            }
            if operation.protocol and operation.method == "POST":
                content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
            ok = {"description": "OK", "content": content}
        statuses = (*ALWAYS, *operation.statuses, *(WITH_BODY if operation.body is not None else ()))
        described: dict[str, Any] = {
            "tags": [operation.tag],
            "summary": operation.summary,
            "operationId": operation.operation_id or _operation_id(operation),
            "parameters": [
                *(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in operation.path_parameters()
                ),
                *(
                    {"name": name, "in": "query", "required": False, "schema": schema, "description": what}
                    for name, schema, what in operation.query
                ),
                *(
                    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": what}
                    for name, what in operation.headers
                ),
            ],
            "responses": {"200": ok, **self._errors(statuses, protocol=operation.protocol)},
        }
        if operation.accepted is not None:
            self.models.add(operation.accepted)
            described["responses"]["202"] = {
                "description": ACCEPTED_TEXT,
                "headers": {"Location": {"description": "The operation's status route.", "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": REF.format(model=operation.accepted.__name__)}}},
            }
        if operation.body is not None:
            # Only JSON, as KServe's own description of the protocol: a body with binary tensors is JSON followed
            # by bytes (Inference-Header-Content-Length), which no media type of OpenAPI describes.
            body = {"application/json": {"schema": {"$ref": REF.format(model=operation.body.__name__)}}}
            described["requestBody"] = {"required": True, "content": body}
        return described

    def _errors(self, statuses: Iterable[int], *, protocol: bool) -> dict[str, Any]:
        schema = PROTOCOL_ERROR if protocol else ERROR
        errors = {}
        for status in sorted(set(statuses)):
            # The edge's limits and BentoML's timeout answer in the API's shape on every route.
            shape = ERROR if status in (413, 415, 504) else schema
            errors[str(status)] = {
                "description": STATUS_TEXT[status],
                "content": {"application/json": {"schema": {"$ref": REF.format(model=shape)}}},
            }
        return errors


def _operation_id(operation: Operation) -> str:
    words = [part.strip("{}") for part in operation.path.strip("/").split("/") if part]
    return "_".join([operation.method.lower(), *words]).replace("-", "_").replace(".", "_") or "root"


def _schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    ordered = sorted(models, key=lambda model: model.__name__)
    _, top = models_json_schema([(model, "serialization") for model in ordered], ref_template=REF)
    return dict(top.get("$defs", {}))


def full_document(
    bentoml_document: dict[str, Any], *, title: str, version: str, extra: Iterable[Operation] = ()
) -> dict[str, Any]:
    """BentoML's document of the `@api` routes, completed with every other route (`extra`: the registered
    families' JSON routes) and the error statuses."""
    return Document().build(bentoml_document, title=title, version=version, extra=tuple(extra))
