"""What the edge knows of each route of the service (`inference.http.edge.RouteSpec`): the scoring and writing
routes with their limits, every other route by its template, and the probes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from inference.errors import BatchTooLarge, TooManyFeatures
from inference.families.registry import configured
from inference.http import paths
from inference.http.edge import Count, RouteSpec, RouteTable
from inference.http.oip.models import protocol_models
from inference.schemas import MAX_RATINGS
from inference.settings import Settings

# Answered without being refused for load or timed: Kubernetes' probes, Prometheus, KServe's probes.
PROBES = ("/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready")
# BentoML's own pages beside the API.
BENTOML_PAGES = ("/", "/schema.json", "/docs.json", "/static_content/*", "/assets/*")
OIP_INFER = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def protocol_family(plugins: Sequence[str] = ()) -> Callable[[str], str]:
    """The family of a protocol model from its path (`/v2/models/skill-leadership/infer`), by the adapter that
    claims the name: what its metrics say when a request is refused before the model is looked up."""

    def family_of(path: str) -> str:
        name = path.removeprefix("/v2/models/").split("/", 1)[0]
        return next((model.family for model in protocol_models(tuple(plugins)) if model.claims(name)), "unknown")

    return family_of


def per_request(field: str, noun: str, most: int) -> Count:
    """At most `most` elements of the body's list `field` (1000 items per request)."""
    return Count(depth=2, field=field, noun=noun, per="per request", most=most, error=BatchTooLarge)


def route_table(settings: Settings, *, mounted: Iterable[Any] = ()) -> RouteTable:
    """The routes with their limits from `settings`; `mounted` are the Starlette routes mounted beside BentoML's
    (reads, admin, the protocol), known by their templates."""
    specs = [
        *registered_routes(settings),
        RouteSpec(
            paths.RATINGS_ROUTE,
            "ratings",
            counts=(per_request("ratings", "rating", MAX_RATINGS),),
            writer=True,
            batch=True,
        ),
        *(
            RouteSpec(
                spec.feedback.path,
                "feedback",
                counts=(per_request("items", "item", MAX_RATINGS),),
                writer=True,
                batch=True,
            )
            for spec in configured(settings).values()
            if spec.feedback is not None
        ),
        *(
            RouteSpec(
                path,
                "oip",
                json_only=False,
                endpoint="oip",
                family_of=protocol_family(settings.family_plugins),
                batch=True,
            )
            for path in OIP_INFER
        ),
        *(RouteSpec(path, probe=True) for path in PROBES),
        *(RouteSpec(path) for path in BENTOML_PAGES),
        *(RouteSpec(route.path) for route in mounted if getattr(route, "path", None)),
    ]
    return RouteTable(specs)


def registered_routes(settings: Settings) -> list[RouteSpec]:
    """The JSON routes of the registered families (`FamilySpec.routes`): a single route's body bound to a single
    request's, a batch route's items counted against INFERENCE_MAX_BATCH_ITEMS, a route's `features` mapping
    against INFERENCE_MAX_FEATURES per item."""
    specs = []
    for spec in configured(settings).values():
        for route in spec.routes:
            counts = []
            if route.batch is not None:
                field, noun = route.batch
                counts.append(per_request(field, noun, settings.max_batch_items))
            if route.features is not None:
                depth = 2 + 2 * route.features.count("[]")  # each list on the way adds an array and its objects
                counts.append(
                    Count(depth, route.features, "feature", "per item", settings.max_features, TooManyFeatures)
                )
            single = route.batch is None
            specs.append(
                RouteSpec(
                    route.path,
                    spec.name,
                    settings.max_single_body_bytes if single else None,
                    tuple(counts),
                    endpoint="single" if single else "batch",
                    batch=not single,
                )
            )
    return specs
