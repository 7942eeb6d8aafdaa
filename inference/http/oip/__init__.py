"""The Open Inference Protocol (KServe v2), so that KServe, Triton and MLServer clients and tools work unchanged.

    GET  /v2                                                server metadata: name, version, extensions
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/{version}]            metadata: inputs, outputs, versions
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

Each family's adapter (`FamilySpec.protocol`, `families/<name>/protocol.py`, an
`inference.serving.tensors.ProtocolModel`) names its models and turns tensors into its requests and back (skills
as FP32/FP64 feature rows, intent and text pair as BYTES texts); the wire format, JSON or binary both ways, is in
`inference.http.oip.tensors`. The request
`id` is echoed. Without a version, the family's stable version answers. Errors are `{"error": message, "code":
code}` with 400 (the request; a tensor larger than the limits allow is refused from its declared shape, before its
data is read), 404 (no such model or version) or 503 (not loaded, or overloaded: with Retry-After).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.errors import InferenceError
from inference.http.errors import error_response
from inference.http.oip.models import protocol_models
from inference.http.oip.tensors import (
    HEADER_LENGTH,
    ProtocolError,
    TensorLimits,
    decode_inputs,
    encode_answer,
    split_body,
)

if TYPE_CHECKING:
    from inference.app import App
    from inference.serving.tensors import ProtocolModel
    from inference.serving.versions import VersionedFamily

PREFIX = "/v2"
SERVER_NAME = "inference"
# What this server implements beyond the core protocol, as Triton names it: tensors as binary data after the JSON.
EXTENSIONS = ["binary_tensor_data"]


def server_version() -> str:
    """The service's version: the Bento's when it runs from one (`bentoml build --version`), else the installed
    package's."""
    from bentoml import server_context

    if server_context.bento_version != "not available":
        return server_context.bento_version
    try:
        return package_metadata.version(SERVER_NAME)
    except package_metadata.PackageNotFoundError:
        return "unknown"


def oip_routes(current: Callable[[], App]) -> list[Route]:
    """The protocol's routes; `current` gives the worker's app (built at startup, after these routes)."""

    def guarded(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request, current())
                return response
            except InferenceError as err:
                return error_response(err)

        endpoint.__doc__ = handler.__doc__
        return endpoint

    async def server_metadata(request: Request, app: App) -> Response:
        """The server's name, version and protocol extensions."""
        return JSONResponse({"name": SERVER_NAME, "version": server_version(), "extensions": EXTENSIONS})

    async def live(request: Request, app: App) -> Response:
        """Whether the server is alive."""
        return JSONResponse({"live": True})

    async def ready(request: Request, app: App) -> Response:
        """Whether every family is loaded (503 while one is not)."""
        is_ready = app.serving.families.ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def metadata(request: Request, app: App) -> Response:
        """A model's metadata: the versions loaded, its input and output tensors, its parameters."""
        name, version, model, family = _resolve(request, app)
        return JSONResponse({"name": name, "versions": sorted(family.scorers), **model.metadata(name, version, family)})

    async def model_ready(request: Request, app: App) -> Response:
        """Whether the model (at the version, else the stable one) can answer."""
        name, version, _, _ = _resolve(request, app)
        return JSONResponse({"name": name, "version": version, "ready": True})

    async def infer(request: Request, app: App) -> Response:
        """Score the input tensors with the model (at the version, else the stable one)."""
        family_name = next(
            (
                m.family
                for m in protocol_models(tuple(app.settings.family_plugins))
                if m.claims(request.path_params["name"])
            ),
            "unknown",
        )
        with app.serving.observer.request(family_name, "oip") as observed:
            name, version, model, _ = _resolve(request, app)
            observed.version, observed.segment = version, model.segment(name)
            header, binary = split_body(await request.body(), request.headers.get(HEADER_LENGTH))
            settings = app.settings
            limits = TensorLimits(
                rows=settings.max_batch_items, elements=settings.max_batch_items * settings.max_features
            )
            inputs = decode_inputs(header, binary, limits)
            outputs = await model.infer(name, version, inputs, app.serving, most=app.settings.max_batch_items)
            return encode_answer(header, name, version, outputs, model.outputs)

    base = PREFIX + "/models/{name}"
    versioned = base + "/versions/{version}"
    return [
        Route(PREFIX, guarded(server_metadata), methods=["GET"]),
        Route(PREFIX + "/health/live", guarded(live), methods=["GET"]),
        Route(PREFIX + "/health/ready", guarded(ready), methods=["GET"]),
        *(Route(path, guarded(metadata), methods=["GET"]) for path in (base, versioned)),
        *(Route(path + "/ready", guarded(model_ready), methods=["GET"]) for path in (base, versioned)),
        *(Route(path + "/infer", guarded(infer), methods=["POST"]) for path in (base, versioned)),
    ]


def _resolve(request: Request, app: App) -> tuple[str, str, ProtocolModel, VersionedFamily[Any]]:
    """The model's name, the version asked for (else the stable one), its adapter and its family, which has that
    version loaded and serves that model. A family not loaded yet answers 503."""
    name = request.path_params["name"]
    served = [
        model
        for model in protocol_models(tuple(app.settings.family_plugins))
        if model.family in app.serving.families.enabled
    ]
    model = next((model for model in served if model.claims(name)), None)
    family = app.serving.family(model.family) if model is not None else None
    if model is None or family is None or name not in model.names(family, family.route.stable):
        known = [known for each in served for known in _names(each, app)]
        raise ProtocolError(404, f"unknown model {name!r}; this server serves {', '.join(known)}")
    version = request.path_params.get("version") or family.route.stable
    if version not in family.scorers or name not in model.names(family, version):
        raise ProtocolError(404, f"model {name} has no version {version!r} loaded; loaded: {sorted(family.scorers)}")
    return name, version, model, family


def _names(model: ProtocolModel, app: App) -> list[str]:
    family = app.serving.family(model.family)
    return model.names(family, family.route.stable)
