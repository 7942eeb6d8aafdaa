"""The model families a server serves: loading (every version a route names, each validated), what the server
reports about them, and swapping in a new route or version while requests are in flight.

A family that fails to load is recorded with the reason, never raised: the server stays up and unready, and the
other families still load, so the logs and /health say everything that is wrong at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.catalogue import SKILLS
from inference.faults import FaultInjector
from inference.intent import IntentClassifier, IntentModels, IntentPolicy
from inference.intent_catalogue import CLASSIC_MODEL, ENSEMBLE_MODEL, INTENTS, VERTICALS, VERTICALS_MODEL
from inference.logs import LOGGER_NAME
from inference.metrics import Metrics, NoMetrics
from inference.registry import (
    load_skill_models,
    load_text_models,
    resolve_model_version,
    resolve_version,
    skill_model_name,
)
from inference.schemas import FamilyModels, ServedModel
from inference.settings import Settings
from inference.skills import SkillsScorer
from inference.textpair import TextPairScorer
from inference.textpair_catalogue import LABELS, TEXTPAIR_MODEL
from inference.validation import check_skill_models, check_text_model
from inference.versions import Route, VersionedFamily

logger = logging.getLogger(LOGGER_NAME)

SKILLS_FAMILY, INTENT_FAMILY, TEXTPAIR_FAMILY = "skills", "intent", "textpair"
FAMILIES = (SKILLS_FAMILY, INTENT_FAMILY, TEXTPAIR_FAMILY)
INTENT_LABELS = {CLASSIC_MODEL: list(INTENTS), ENSEMBLE_MODEL: list(INTENTS), VERTICALS_MODEL: list(VERTICALS)}
TEXTPAIR_LABELS = {TEXTPAIR_MODEL: list(LABELS.values())}


def pinned_version(settings: Settings, family: str) -> str:
    return {
        SKILLS_FAMILY: settings.skills_version,
        INTENT_FAMILY: settings.intent_version,
        TEXTPAIR_FAMILY: settings.textpair_version,
    }[family]


def store_models(family: str) -> list[str]:
    """The model store names that make up one version of a family."""
    if family == SKILLS_FAMILY:
        return [skill_model_name(skill) for skill in SKILLS]
    return list(INTENT_LABELS if family == INTENT_FAMILY else TEXTPAIR_LABELS)


def pinned_tags(settings: Settings) -> list[str]:
    """The store tags of every model the settings pin, route or shadow to (the list a Bento must carry)."""
    tags = [f"{skill_model_name(skill)}:{version}" for skill, version in settings.pinned_skill_versions().items()]
    for family in FAMILIES:
        versions = {pinned_version(settings, family), *settings.configured_routes().get(family, {})}
        versions.update(version for shadowed, version in settings.shadow.items() if shadowed == family)
        for version in sorted(versions):
            tags += [f"{name}:{version}" for name in store_models(family)]
    return sorted(set(tags))


class FamilyLoader:
    """Loads one version of a family, validated (features, labels, the smoke test on stored samples)."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or NoMetrics()
        self.faults = FaultInjector(settings.inject_faults)

    def resolve(self, family: str, version: str) -> str:
        if family == SKILLS_FAMILY:
            return resolve_version(SKILLS[0], version)
        return resolve_model_version(store_models(family)[0], version)

    def load(self, family: str, version: str) -> Any:
        settings = self.settings

        def on_batch(size: int) -> None:
            self.metrics.batch(family, version, size)

        if family == SKILLS_FAMILY:
            versions = dict.fromkeys(SKILLS, version)
            # Per-skill overrides belong to the pinned version (`latest` included, once resolved).
            if version == self.resolve(SKILLS_FAMILY, settings.skills_version):
                versions.update(settings.skill_versions)
            models = load_skill_models(versions)
            check_skill_models(models)
            return SkillsScorer(
                models,
                max_batch_items=settings.max_batch_items,
                batcher_max_size=settings.batcher_max_size,
                batcher_max_wait_ms=settings.batcher_max_wait_ms,
                on_batch=on_batch,
            )
        if family == INTENT_FAMILY:
            loaded = load_text_models(INTENT_LABELS, version)
            for model in loaded.values():
                check_text_model(model)
            return IntentClassifier(
                IntentModels(loaded[CLASSIC_MODEL], loaded[ENSEMBLE_MODEL], loaded[VERTICALS_MODEL]),
                IntentPolicy(
                    split=settings.intent_split,
                    salt=settings.routing_salt,
                    ensemble_budget_s=settings.intent_ensemble_budget_ms / 1000,
                    default_intent=settings.default_intent,
                    max_text_chars=settings.max_text_chars,
                    max_batch_items=settings.max_batch_items,
                ),
                faults=self.faults,
                metrics=self.metrics,
                batcher_max_size=settings.batcher_max_size,
                batcher_max_wait_ms=settings.batcher_max_wait_ms,
                on_batch=on_batch,
            )
        if family == TEXTPAIR_FAMILY:
            model = load_text_models(TEXTPAIR_LABELS, version)[TEXTPAIR_MODEL]
            check_text_model(model, fallback_inputs=[["a cat sat", "a cat was sitting"]])
            return TextPairScorer(
                model,
                max_text_chars=settings.max_text_chars,
                faults=self.faults,
                batcher_max_size=settings.batcher_max_size,
                batcher_max_wait_ms=settings.batcher_max_wait_ms,
                on_batch=on_batch,
            )
        raise ValueError(f"unknown family {family!r}")

    def initial_route(self, family: str) -> Route:
        stable = self.resolve(family, pinned_version(self.settings, family))
        weights = self.settings.configured_routes().get(family) or {stable: 100.0}
        return Route(stable=stable, weights=weights)

    def build(self, family: str, route: Route, loaded: Mapping[str, Any] | None = None) -> VersionedFamily[Any]:
        """The family under `route`: the versions of `loaded` it names, and the others loaded now."""
        scorers = {version: scorer for version, scorer in (loaded or {}).items() if version in route.versions()}
        for version in sorted(route.versions() - set(scorers)):
            scorers[version] = self.load(family, version)
            logger.info("%s %s loaded and validated", family, version)
        self.report_route(family, route)
        return VersionedFamily(family=family, scorers=scorers, route=route, salt=self.settings.routing_salt)

    def report_route(self, family: str, route: Route, dropped: Sequence[str] = ()) -> None:
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
                for version in sorted(versioned.scorers):
                    models += [ServedModel(name=name, version=version) for name in store_models(family)]
            listing.append(
                FamilyModels(
                    family=family,
                    loaded=versioned is not None,
                    models=models,
                    route=versioned.route.to_dict() if versioned is not None else None,
                    error=self.errors.get(family),
                )
            )
        return listing

    def close(self) -> None:
        for versioned in self.versions.values():
            for scorer in versioned.scorers.values():
                scorer.close()


def load_families(settings: Settings, loader: FamilyLoader) -> Families:
    families = Families(enabled=list(settings.families))
    if settings.inject_faults:
        logger.warning("fault injection is on: %s", settings.inject_faults)
    for family in families.enabled:
        try:
            families.versions[family] = loader.build(family, loader.initial_route(family))
        except Exception as err:  # a family that cannot load leaves the server unready, with the reason
            families.errors[family] = str(err)
            logger.error("the %s family failed to load, the service stays unready: %s", family, err, exc_info=True)
    return families
