"""The model families a server serves: loading (every version a route names, each validated), what the server
reports about them, and swapping in a new route or version while requests are in flight. Generic: each family's
own loading sits behind `inference.serving.protocol.Family`.

A family that fails to load is recorded with the reason, never raised: the server stays up and unready, and the
other families still load, so the logs and /health say everything that is wrong at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.faults import FaultInjector
from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.schemas import FamilyModels, RouteInfo, ServedModel
from inference.serving.batching import BatcherOptions
from inference.serving.protocol import Family, LoadContext, Scorer
from inference.serving.versions import TrafficSplit, VersionedFamily
from inference.settings import LATEST, Settings
from inference.store.registry import pull_from_source

logger = logging.getLogger(LOGGER_NAME)

LOAD_FAULT_PREFIX = "load:"  # an INFERENCE_INJECT_FAULTS key `load:<family>:<version>` acts on that version's load


FamilyLookup = Callable[[str], Family]  # a family's name -> its `Family` (the composition root passes the registry's)


class FamilyLoader:
    """Loads one version of a family, validated (its schema, its labels, the smoke test on stored samples)."""

    def __init__(
        self,
        settings: Settings,
        lookup: FamilyLookup,
        *,
        metrics: Metrics | None = None,
        remotes: Mapping[str, object] | None = None,
    ) -> None:
        """`remotes`: clients of the parts of families that run as services of their own (`LoadContext.remotes`)."""
        self.settings = settings
        self.remotes = dict(remotes or {})
        self.family = lookup
        self.metrics = metrics or NoMetrics()
        self.faults = FaultInjector(settings.inject_faults)

    def resolve(self, family: str, version: str) -> str:
        if version != LATEST:
            self.pull(family, version)
        return self.family(family).resolve(self.settings, version)

    def pull(self, family: str, version: str) -> None:
        """The family's models at `version` into the local store from INFERENCE_MODEL_SOURCE, when it lacks them
        (a version not baked into the image); nothing without a source."""
        pulled = pull_from_source(self.model_names(family, version), version, self.settings.model_source)
        if pulled:
            logger.info("%s %s: pulled %s from %s", family, version, ", ".join(pulled), self.settings.model_source)

    def versions(self, family: str) -> list[str]:
        """The versions of `family` in the model store, oldest first."""
        return self.family(family).versions(self.settings)

    def model_names(self, family: str, version: str) -> list[str]:
        return self.family(family).model_names(self.settings, version)

    def load(self, family: str, version: str) -> Scorer[Any, Any]:
        # Drills and tests: INFERENCE_INJECT_FAULTS='{"load:skills:v1.1.0": "delay_ms=5000"}' makes that version
        # slow to load (or, with "fail", fail to), without touching how it scores.
        self.faults.before_call(f"{LOAD_FAULT_PREFIX}{family}:{version}")

        def on_batch(size: int) -> None:
            self.metrics.batch(family, version, size)

        def on_queued(change: int) -> None:
            self.metrics.queued(family, change)

        settings = self.settings
        batching = BatcherOptions(
            max_batch_size=settings.batcher_max_size,
            max_wait_ms=settings.batcher_max_wait_ms,
            max_queue_wait_s=settings.max_queue_wait_ms / 1000,
            retry_after_s=settings.retry_after_s,
            on_dispatch=on_batch,
            on_queued=on_queued,
        )
        context = LoadContext(
            settings=settings, metrics=self.metrics, faults=self.faults, batching=batching, remotes=self.remotes
        )
        return self.family(family).load(version, context)

    def initial_route(self, family: str) -> TrafficSplit:
        stable = self.resolve(family, self.settings.version_of(family))
        weights = self.settings.configured_routes().get(family) or {stable: 100.0}
        return TrafficSplit(stable=stable, weights=weights)

    def build(self, family: str, route: TrafficSplit, loaded: Mapping[str, Any] | None = None) -> VersionedFamily[Any]:
        """The family under `route`: the versions of `loaded` it names, and the others loaded now."""
        scorers = {version: scorer for version, scorer in (loaded or {}).items() if version in route.versions()}
        for version in sorted(route.versions() - set(scorers)):
            self.pull(family, version)
            scorers[version] = self.load(family, version)
            logger.info("%s %s loaded and validated", family, version)
        self.report_route(family, route)
        return VersionedFamily(family=family, scorers=scorers, route=route, salt=self.settings.routing_salt)

    def report_route(self, family: str, route: TrafficSplit, dropped: Sequence[str] = ()) -> None:
        """Export each version's share of traffic and role, and zero for versions no longer routed."""
        total = sum(weight for weight in route.weights.values() if weight > 0)
        for version in sorted(route.versions()):
            share = max(route.weights.get(version, 0.0), 0.0) / total
            role = "stable" if version == route.stable else "canary"
            self.metrics.gauge("inference_route_weight", share, family=family, model_version=version, role=role)
        for version in dropped:
            for role in ("stable", "canary"):
                self.metrics.gauge("inference_route_weight", 0.0, family=family, model_version=version, role=role)


@dataclass
class Families:
    enabled: list[str]
    kinds: dict[str, Family] = field(default_factory=dict)  # each enabled family's `Family`
    versions: dict[str, VersionedFamily[Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def ready(self) -> bool:
        return not self.errors and all(family in self.versions for family in self.enabled)

    def get(self, family: str) -> VersionedFamily[Any] | None:
        return self.versions.get(family)

    def served(self) -> list[FamilyModels]:
        """Every enabled family with its loaded models and versions, its route, or why it is not loaded."""
        listing = []
        for family in self.enabled:
            versioned = self.versions.get(family)
            models: list[ServedModel] = []
            if versioned is not None:
                for version, scorer in sorted(versioned.scorers.items()):
                    models += [ServedModel(name=name, version=version) for name in scorer.model_names()]
            listing.append(
                FamilyModels(
                    family=family,
                    loaded=versioned is not None,
                    models=models,
                    route=(
                        RouteInfo(stable=versioned.route.stable, weights=dict(versioned.route.weights))
                        if versioned is not None
                        else None
                    ),
                    error=self.errors.get(family),
                )
            )
        return listing

    def close(self) -> None:
        for versioned in self.versions.values():
            for scorer in versioned.scorers.values():
                scorer.close()


def load_families(settings: Settings, loader: FamilyLoader) -> Families:
    families = Families(enabled=held_families(settings, loader))
    if settings.inject_faults:
        logger.warning("fault injection is on: %s", settings.inject_faults)
    for family in families.enabled:
        try:
            families.kinds[family] = loader.family(family)
            families.versions[family] = loader.build(family, loader.initial_route(family))
        except Exception as err:  # a family that cannot load leaves the server unready, with the reason
            families.errors[family] = str(err)
            logger.error("the %s family failed to load, the service stays unready: %s", family, err, exc_info=True)
    return families


def held_families(settings: Settings, loader: FamilyLoader) -> list[str]:
    """The families to serve: INFERENCE_FAMILIES; serving what the store holds (INFERENCE_MODELS_FILE=none) with no
    INFERENCE_FAMILIES set, those of them the store holds models of."""
    if not settings.serves_store or "families" in settings.model_fields_set:
        return list(settings.families)
    held = []
    for family in settings.families:
        try:
            versions = loader.versions(family)
        except Exception as err:  # a family whose models cannot be listed is not served, and said so
            logger.warning("serving what the store holds: cannot list the %s models (%s)", family, err)
            continue
        if versions:
            held.append(family)
        else:
            logger.info("serving what the store holds: no %s models in it, %s not served", family, family)
    return held or list(settings.families)
