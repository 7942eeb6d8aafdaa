"""The Open Inference Protocol (KServe v2) for the skill models, so that KServe, Triton and MLServer clients and
tools work unchanged.

    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/{version}]            metadata: inputs, outputs, versions
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

Models are the served skill models, named as in the model store (`skill-communication`, ...). One input tensor,
FP32 or FP64, shape [n, n_features], columns in the model's feature order (the metadata lists it; NaN: missing,
imputed with the training median as in the JSON API); outputs `score` and `confidence`, FP64, shape [n]. The
request `id` is echoed. Without a version, the family's stable version answers. Tensors may travel as JSON or
with the binary extension (`Inference-Header-Content-Length`), both ways, as tritonclient sends and asks for them.
Errors are `{"error": message}` with 400 (the request), 404 (no such model or version) or 503 (not loaded).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.errors import InferenceError, InvalidRequest

if TYPE_CHECKING:
    from inference.families.skills.scorer import SkillsScorer
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily

PREFIX = "/v2"
MODEL_PREFIX = "skill-"
HEADER_LENGTH = "inference-header-content-length"
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
OUTPUTS = ("score", "confidence")


class ProtocolError(InferenceError):
    """A request the protocol refuses: 400, or 404 for a model or version this server does not have."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = HTTPStatus(status)
        self.code = "not_found" if status == 404 else "invalid_request"


def oip_routes(serving: Callable[[], Serving]) -> list[Route]:
    """The protocol's routes; `serving` is called per request (the service builds it at startup)."""

    def guarded(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, serving())
            except InferenceError as err:
                return JSONResponse({"error": err.message}, status_code=int(err.status))

        return endpoint

    async def live(request: Request, service: Serving) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request, service: Serving) -> Response:
        is_ready = service.families.ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def metadata(request: Request, service: Serving) -> Response:
        name, skill, version, family = _resolve(request, service)
        model = family.scorers[version].models[skill]
        return JSONResponse(
            {
                "name": name,
                "versions": sorted(family.scorers),
                "platform": "xgboost",
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, len(model.feature_names)]}],
                "outputs": [{"name": output, "datatype": "FP64", "shape": [-1]} for output in OUTPUTS],
                "parameters": {
                    "version": version,
                    "feature_names": list(model.feature_names),
                    # Each column's schema: the value imputed for NaN, and the unit and valid range where known.
                    "features": [
                        {"name": spec.name, "imputation_default": spec.default, **spec.to_metadata()}
                        for spec in model.schema.features
                    ],
                },
            }
        )

    async def model_ready(request: Request, service: Serving) -> Response:
        name, _, version, _ = _resolve(request, service)
        return JSONResponse({"name": name, "version": version, "ready": True})

    async def infer(request: Request, service: Serving) -> Response:
        with service.observer.request("skills", "oip") as observed:
            name, skill, version, family = _resolve(request, service)
            scorer = family.scorers[version]
            observed.version, observed.segment = version, skill
            header, binary = _split(await request.body(), request.headers.get(HEADER_LENGTH))
            values = _input_matrix(header, binary, len(scorer.models[skill].feature_names))
            scores = await _score(scorer, skill, values)
            return _answer(header, name, version, scores)  # inside: an unknown output asked for is counted as such

    base = PREFIX + "/models/{name}"
    versioned = base + "/versions/{version}"
    return [
        Route(PREFIX + "/health/live", guarded(live), methods=["GET"]),
        Route(PREFIX + "/health/ready", guarded(ready), methods=["GET"]),
        *(Route(path, guarded(metadata), methods=["GET"]) for path in (base, versioned)),
        *(Route(path + "/ready", guarded(model_ready), methods=["GET"]) for path in (base, versioned)),
        *(Route(path + "/infer", guarded(infer), methods=["POST"]) for path in (base, versioned)),
    ]


def _resolve(request: Request, service: Serving) -> tuple[str, str, str, VersionedFamily[SkillsScorer]]:
    """The model's name, its skill, the version asked for (else the stable one) and the skills family, which has
    that version loaded, serving that skill."""
    name = request.path_params["name"]
    family = service.family("skills")  # ModelsNotReady: 503
    version = request.path_params.get("version") or family.route.stable
    skill = name.removeprefix(MODEL_PREFIX)
    served = family.scorers[family.route.stable].skills
    if not name.startswith(MODEL_PREFIX) or skill not in served:
        known = ", ".join(MODEL_PREFIX + skill for skill in served)
        raise ProtocolError(404, f"unknown model {name!r}; this server serves {known}")
    if version not in family.scorers or skill not in family.scorers[version].skills:
        raise ProtocolError(404, f"model {name} has no version {version!r} loaded; loaded: {sorted(family.scorers)}")
    return name, skill, version, family


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary tensor data after it (the binary extension), or the JSON alone."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(400, f"Inference-Header-Content-Length: not a number: {header_length!r}") from None
        if not 0 < size <= len(body):
            raise ProtocolError(400, f"Inference-Header-Content-Length: {size} is outside the body's {len(body)} bytes")
    try:
        header = json.loads(body[:size])
    except (ValueError, RecursionError) as err:
        raise ProtocolError(400, f"request body: not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise ProtocolError(400, "request body: expected a JSON object with `inputs`")
    return header, body[size:]


def _input_matrix(header: dict[str, Any], binary: bytes, n_features: int) -> np.ndarray:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(400, "inputs: expected exactly one tensor of shape [n, n_features]")
    tensor = inputs[0]
    name = tensor.get("name", "inputs[0]")
    datatype = tensor.get("datatype")
    if datatype not in DTYPES:
        raise ProtocolError(400, f"{name}: datatype must be FP32 or FP64, got {datatype!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise ProtocolError(400, f"{name}: shape must be [n, {n_features}], got {shape!r}")
    if shape[1] != n_features:
        raise ProtocolError(400, f"{name}: this model takes {n_features} features per row, got shape {shape}")
    if shape[0] == 0:
        raise ProtocolError(400, f"{name}: at least one row is needed")
    count = shape[0] * shape[1]
    binary_size = (tensor.get("parameters") or {}).get("binary_data_size")
    if binary_size is not None:
        if binary_size != len(binary) or binary_size != count * DTYPES[datatype].itemsize:
            raise ProtocolError(
                400, f"{name}: binary_data_size {binary_size} does not match shape {shape} of {datatype}"
            )
        flat = np.frombuffer(binary, dtype=DTYPES[datatype]).astype(np.float64)
    else:
        try:
            flat = np.asarray(tensor.get("data"), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ProtocolError(400, f"{name}: data must be numbers (null for a missing value)") from None
        if flat.size != count:
            raise ProtocolError(400, f"{name}: {flat.size} values for shape {shape} ({count} expected)")
    return flat.reshape(shape[0], shape[1])


async def _score(scorer: SkillsScorer, skill: str, values: np.ndarray) -> list[Any]:
    try:
        return await scorer.score_matrix(skill, values)
    except InvalidRequest as err:
        raise ProtocolError(400, err.message) from None


def _answer(header: dict[str, Any], name: str, version: str, scores: list[Any]) -> Response:
    requested = header.get("outputs")
    binary_all = bool((header.get("parameters") or {}).get("binary_data_output"))
    wanted: list[tuple[str, bool]] = []
    if requested:
        for output in requested:
            output_name = output.get("name") if isinstance(output, dict) else None
            if output_name not in OUTPUTS:
                raise ProtocolError(
                    400, f"outputs: unknown output {output_name!r}; this model has {', '.join(OUTPUTS)}"
                )
            wanted.append((output_name, bool((output.get("parameters") or {}).get("binary_data", binary_all))))
    else:
        wanted = [(output, binary_all) for output in OUTPUTS]
    answer: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": []}
    if "id" in header:
        answer["id"] = header["id"]
    tail = []
    for output_name, binary in wanted:
        data = np.array([getattr(score, output_name) for score in scores], dtype="<f8")
        tensor: dict[str, Any] = {"name": output_name, "datatype": "FP64", "shape": [len(scores)]}
        if binary:
            tensor["parameters"] = {"binary_data_size": data.nbytes}
            tail.append(data.tobytes())
        else:
            tensor["data"] = data.tolist()
        answer["outputs"].append(tensor)
    if not tail:
        return JSONResponse(answer)
    head = json.dumps(answer).encode()
    return Response(
        head + b"".join(tail),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
