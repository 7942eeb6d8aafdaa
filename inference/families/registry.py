"""The registry of model families: one `FamilySpec` per family, the only place that names a family's parts.

A spec names its `Family` class, its latency objectives and cache objective, its Open Inference Protocol adapter,
its importer and its JSON routes. The
service, the model loader, the protocol, the alert rules and `import_models.py` read the specs; nothing else
lists the families. Parts are named as "module:attribute" and imported on first use: `bentoml serve` reads the
registry in its supervising process, which must not pay for the model libraries.

The built-in families' specs are listed in BUILT_IN. A team's own family is a package of its own with a spec
module, registered by naming the spec in INFERENCE_FAMILY_PLUGINS (e.g. `["my_team.toxicity.spec:SPEC"]`):
docs/architecture.md, "Adding a family".
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from inference.monitoring.objectives import LatencyObjective

if TYPE_CHECKING:
    from inference.serving.protocol import Family
    from inference.settings import Settings

BUILT_IN = (
    "inference.families.skills.spec:SPEC",
    "inference.families.intent.spec:SPEC",
    "inference.families.textpair.spec:SPEC",
)


@dataclass(frozen=True)
class JsonRoute:
    """A JSON scoring route served from the registry (inference/http/scoring.py): the body's pydantic model, and
    the function that turns a body and the request's headers into the family's requests and their callers' ids
    (for sticky versions). `batch` names the body's list field and its noun ("items", "item") for a route that
    answers many; `features` names a mapping field whose keys count against INFERENCE_MAX_FEATURES, per item
    ("features", or "items[].features" in a batch), checked at the edge before the body is parsed."""

    path: str
    body: str  # "module:attribute" of the pydantic model of the body
    requests: str  # "module:attribute" of (body, headers) -> (requests, caller ids)
    answer: str  # "module:attribute" of the pydantic model of the answer (the OpenAPI document's)
    summary: str = ""
    batch: tuple[str, str] | None = None
    features: str | None = None
    name: str | None = None  # the OpenAPI operation's name (operationId "inference_<name>"); else from the path


@dataclass(frozen=True)
class FeedbackRoute:
    """The route callers send labelled items to (their true answers), for live accuracy
    (inference/http/writes.py): each loaded version answers them through the family's `LabelledFeedback`. The
    body's model has the items in `items`; `texts` gives an item's texts, counted against the request's
    characters before any is scored."""

    path: str
    body: str  # "module:attribute" of the pydantic model of the body
    texts: str  # "module:attribute" of (item) -> its texts
    name: str | None = None  # the OpenAPI operation's name, as JsonRoute's
    summary: str = ""


@dataclass(frozen=True)
class FamilySpec:
    """One family's registration."""

    name: str
    family: str  # "module:attribute" of its `Family` class
    default_version: str = "latest"  # served when INFERENCE_MODEL_VERSIONS names none (a Bento pins an exact one)
    objectives: tuple[LatencyObjective, ...] = ()
    cache_hit_ratio: float | None = None  # the cache objective, when the family has one
    protocol: str | None = None  # "module:attribute" of its Open Inference Protocol adapter
    importer: str | None = None  # "module:attribute" of (folder, version, ...) -> tags saved, for import_models.py
    import_flags: tuple[str, ...] = ()  # the import_models.py options (ImportOptions fields) of this family only
    models_route: str | None = None  # GET: the stable version's models, when its scorer `DescribesModels`
    trainer: str | None = None  # "module:attribute" of its `train.trainer.Trainer`, for `python -m train`
    routes: tuple[JsonRoute, ...] = field(default_factory=tuple)
    feedback: FeedbackRoute | None = None


def attribute(reference: str) -> Any:
    """The object a "module:attribute" reference names."""
    module, _, name = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{reference}: cannot import it ({type(err).__name__}: {err})") from err


@lru_cache(maxsize=8)
def _specs(plugins: tuple[str, ...]) -> dict[str, FamilySpec]:
    found: dict[str, FamilySpec] = {}
    for reference in (*BUILT_IN, *plugins):
        spec = attribute(reference)
        if not isinstance(spec, FamilySpec):
            raise ValueError(f"{reference}: expected a FamilySpec, got {type(spec).__name__}")
        if spec.name in found:
            raise ValueError(f"{reference}: a family named {spec.name!r} is registered already")
        found[spec.name] = spec
    return found


def specs(plugins: Iterable[str] = ()) -> dict[str, FamilySpec]:
    """Every registered family's spec by name: the built-in ones, then the plug-ins named."""
    return _specs(tuple(plugins))


def configured(settings: Settings | None = None) -> dict[str, FamilySpec]:
    """The specs of the families the settings register (INFERENCE_FAMILY_PLUGINS beside the built-in ones)."""
    if settings is None:
        from inference.settings import get_settings

        settings = get_settings()
    return specs(settings.family_plugins)


_loaded: dict[str, Family] = {}


def get_family(name: str, registered: dict[str, FamilySpec] | None = None) -> Family:
    """The `Family` called `name`; `KeyError` naming the known ones otherwise."""
    registered = registered if registered is not None else configured()
    if name not in _loaded:
        if name not in registered:
            raise KeyError(f"unknown family {name!r}; expected one of {', '.join(registered)}")
        _loaded[name] = attribute(registered[name].family)()
    return _loaded[name]


def pinned_tags(settings: Settings) -> list[str]:
    """The store tags of every model the settings pin, route or shadow to, for the families served (the list a
    Bento must carry)."""
    registered = configured(settings)
    tags = [f"skill-{skill}:{version}" for skill, version in settings.skill_versions.items()]
    for name in (name for name in registered if name in settings.families):
        family = get_family(name, registered)
        versions = {settings.version_of(name), *settings.configured_routes().get(name, {})}
        versions.update(version for shadowed, version in settings.shadow.items() if shadowed == name)
        for version in sorted(versions):
            tags += [f"{model}:{version}" for model in family.model_names(settings, version)]
    return sorted(set(tags))


def latency_objectives() -> list[LatencyObjective]:
    """Every registered family's latency objectives (the built-in families and INFERENCE_FAMILY_PLUGINS')."""
    return [objective for spec in configured().values() for objective in spec.objectives]


def cache_hit_ratios() -> dict[str, float]:
    """The cache hit ratio objective of each registered family that has one."""
    return {name: spec.cache_hit_ratio for name, spec in configured().items() if spec.cache_hit_ratio is not None}


def latency_ms(family: str, endpoint: str, segment: str | None = None) -> float:
    """The P95 objective of an endpoint, in milliseconds."""
    for objective in latency_objectives():
        if (objective.family, objective.endpoint, objective.segment) == (family, endpoint, segment):
            return objective.p95_ms
    raise KeyError(f"no latency objective for {family} {endpoint} {segment or ''}".rstrip())
