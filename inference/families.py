"""Loading the model families a server serves, and what it reports about them (models, versions, errors).

A family that fails to load is recorded with the reason, never raised: the server stays up and unready, and
the other families still load, so the logs and /health say everything that is wrong at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from inference.faults import FaultInjector
from inference.intent import IntentClassifier, IntentModels, IntentPolicy
from inference.intent_catalogue import (
    CLASSIC_MODEL,
    ENSEMBLE_MODEL,
    INTENTS,
    VERTICALS,
    VERTICALS_MODEL,
)
from inference.logs import LOGGER_NAME
from inference.metrics import Metrics, NoMetrics
from inference.registry import load_skill_models, load_text_models, skill_model_name
from inference.schemas import FamilyModels, ServedModel
from inference.settings import Settings
from inference.skills import SkillsScorer
from inference.textpair import TextPairScorer
from inference.textpair_catalogue import LABELS, TEXTPAIR_MODEL

logger = logging.getLogger(LOGGER_NAME)

SKILLS_FAMILY, INTENT_FAMILY, TEXTPAIR_FAMILY = "skills", "intent", "textpair"
INTENT_LABELS = {CLASSIC_MODEL: list(INTENTS), ENSEMBLE_MODEL: list(INTENTS), VERTICALS_MODEL: list(VERTICALS)}
TEXTPAIR_LABELS = {TEXTPAIR_MODEL: list(LABELS.values())}


def pinned_tags(settings: Settings) -> list[str]:
    """The store tags of every model the settings pin (the list a Bento must carry)."""
    tags = [f"{skill_model_name(skill)}:{version}" for skill, version in settings.pinned_skill_versions().items()]
    tags += [f"{name}:{settings.intent_version}" for name in INTENT_LABELS]
    tags += [f"{name}:{settings.textpair_version}" for name in TEXTPAIR_LABELS]
    return tags


@dataclass
class Families:
    enabled: list[str]
    skills: SkillsScorer | None = None
    intent: IntentClassifier | None = None
    textpair: TextPairScorer | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def ready(self) -> bool:
        return not self.errors and all(getattr(self, family) is not None for family in self.enabled)

    def served(self) -> list[FamilyModels]:
        """Every enabled family with its loaded models and versions (or the reason it is not loaded)."""
        listing = []
        for family in self.enabled:
            models: list[ServedModel] = []
            if family == SKILLS_FAMILY and self.skills is not None:
                models = [
                    ServedModel(name=skill_model_name(skill), version=model.version)
                    for skill, model in self.skills.models.items()
                ]
            elif family == INTENT_FAMILY and self.intent is not None:
                loaded = self.intent.models
                models = [
                    ServedModel(name=model.name, version=model.version)
                    for model in (loaded.classic, loaded.ensemble, loaded.verticals)
                ]
            elif family == TEXTPAIR_FAMILY and self.textpair is not None:
                models = [ServedModel(name=self.textpair.model.name, version=self.textpair.model.version)]
            loaded_ok = getattr(self, family) is not None
            listing.append(FamilyModels(family=family, loaded=loaded_ok, models=models, error=self.errors.get(family)))
        return listing

    def close(self) -> None:
        for scorer in (self.skills, self.intent, self.textpair):
            if scorer is not None:
                scorer.close()


def load_families(settings: Settings, *, metrics: Metrics | None = None) -> Families:
    families = Families(enabled=list(settings.families))
    faults = FaultInjector(settings.inject_faults)
    if settings.inject_faults:
        logger.warning("fault injection is on: %s", settings.inject_faults)
    for family in families.enabled:
        try:
            if family == SKILLS_FAMILY:
                families.skills = SkillsScorer(
                    load_skill_models(settings.pinned_skill_versions()),
                    max_batch_items=settings.max_batch_items,
                    batcher_max_size=settings.batcher_max_size,
                    batcher_max_wait_ms=settings.batcher_max_wait_ms,
                )
            elif family == INTENT_FAMILY:
                models = load_text_models(INTENT_LABELS, settings.intent_version)
                families.intent = IntentClassifier(
                    IntentModels(models[CLASSIC_MODEL], models[ENSEMBLE_MODEL], models[VERTICALS_MODEL]),
                    IntentPolicy(
                        split=settings.intent_split,
                        salt=settings.routing_salt,
                        ensemble_budget_s=settings.intent_ensemble_budget_ms / 1000,
                        default_intent=settings.default_intent,
                        max_text_chars=settings.max_text_chars,
                        max_batch_items=settings.max_batch_items,
                    ),
                    faults=faults,
                    metrics=metrics or NoMetrics(),
                    batcher_max_size=settings.batcher_max_size,
                )
            elif family == TEXTPAIR_FAMILY:
                model = load_text_models(TEXTPAIR_LABELS, settings.textpair_version)[TEXTPAIR_MODEL]
                families.textpair = TextPairScorer(
                    model,
                    max_text_chars=settings.max_text_chars,
                    faults=faults,
                    batcher_max_size=settings.batcher_max_size,
                )
        except Exception as err:  # a family that cannot load leaves the server unready, with the reason
            families.errors[family] = str(err)
            logger.error("the %s family failed to load, the service stays unready: %s", family, err, exc_info=True)
    return families
