"""What the edge knows of each route of the service (`inference.http.edge.RouteSpec`): the scoring and writing
routes with their limits, every other route by its template, and the probes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inference.errors import BatchTooLarge, TooManyFeatures
from inference.http import paths
from inference.http.edge import Count, RouteSpec, RouteTable
from inference.schemas import MAX_RATINGS
from inference.settings import Settings

# Answered without being refused for load or timed: Kubernetes' probes, Prometheus, KServe's probes.
PROBES = ("/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready")
# BentoML's own pages beside the API.
BENTOML_PAGES = ("/", "/schema.json", "/docs.json", "/static_content/*", "/assets/*")
OIP_INFER = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def protocol_family(path: str) -> str:
    """The family of a protocol model from its path (`/v2/models/skill-leadership/infer`): what its metrics say
    when a request is refused before the model is looked up."""
    name = path.removeprefix("/v2/models/").split("/", 1)[0]
    if name.startswith("skill-"):
        return "skills"
    if name.startswith("intent-"):
        return "intent"
    return "textpair" if name == "textpair" else "unknown"


def route_table(settings: Settings, *, mounted: Iterable[Any] = ()) -> RouteTable:
    """The routes with their limits from `settings`; `mounted` are the Starlette routes mounted beside BentoML's
    (reads, admin, the protocol), known by their templates."""
    single = settings.max_single_body_bytes
    items = settings.max_batch_items

    def per_request(field: str, noun: str, most: int) -> Count:
        return Count(depth=2, field=field, noun=noun, per="per request", most=most, error=BatchTooLarge)

    def features(depth: int, field: str) -> Count:
        return Count(depth, field, "feature", "per item", settings.max_features, TooManyFeatures)

    specs = [
        RouteSpec(paths.SKILLS_INFER_ROUTE, "skills", single, (features(2, "features"),), endpoint="single"),
        RouteSpec(
            paths.SKILLS_BATCH_ROUTE,
            "skills",
            counts=(per_request("items", "item", items), features(4, "items[].features")),
            endpoint="batch",
            batch=True,
        ),
        RouteSpec(paths.CLASSIFY_ROUTE, "intent", single, endpoint="single"),
        RouteSpec(paths.ENSEMBLE_ROUTE, "intent", single, endpoint="single"),
        RouteSpec(
            paths.CLASSIFY_BATCH_ROUTE,
            "intent",
            counts=(per_request("texts", "text", items),),
            endpoint="batch",
            batch=True,
        ),
        RouteSpec(paths.TEXTPAIR_ROUTE, "textpair", single, endpoint="single"),
        RouteSpec(
            paths.RATINGS_ROUTE,
            "ratings",
            counts=(per_request("ratings", "rating", MAX_RATINGS),),
            writer=True,
            batch=True,
        ),
        *(
            RouteSpec(path, "feedback", counts=(per_request("items", "item", MAX_RATINGS),), writer=True, batch=True)
            for path in (paths.INTENT_FEEDBACK_ROUTE, paths.TEXTPAIR_FEEDBACK_ROUTE)
        ),
        *(
            RouteSpec(path, "oip", json_only=False, endpoint="oip", family_of=protocol_family, batch=True)
            for path in OIP_INFER
        ),
        *(RouteSpec(path, probe=True) for path in PROBES),
        *(RouteSpec(path) for path in BENTOML_PAGES),
        *(RouteSpec(route.path) for route in mounted if getattr(route, "path", None)),
    ]
    return RouteTable(specs)
