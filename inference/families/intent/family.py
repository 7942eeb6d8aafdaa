"""The intent family: `intent-classic` and `intent-ensemble` (the two variants, any scikit-learn estimators from raw
text with `predict_proba`, sharing one set of intent labels) and, optionally, `intent-verticals` (multi-label
detectors, one probability column per vertical), versioned together. The intents and verticals are the labels
the models' metadata declares.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

from inference.errors import ArtifactError, InferenceError
from inference.families.intent.apart import EnsembleService
from inference.families.intent.scorer import FAMILY, IntentModels, IntentPolicy, IntentQuery, IntentScorer
from inference.families.intent.variants import CLASSIC_MODEL, ENSEMBLE_MODEL, VERTICALS_MODEL
from inference.families.text_compiled import SharedVectorizers, with_fast_path
from inference.logs import LOGGER_NAME
from inference.schemas import ErrorDetail, IntentFailure, IntentResult
from inference.serving.protocol import Family, LoadContext, Scorer
from inference.settings import Settings
from inference.store.registry import available_model_versions, resolve_model_version
from inference.store.text_artifacts import (
    TextModel,
    check_text_model,
    import_text_artifacts,
    load_stored_text_model,
    load_text_artifact,
)

logger = logging.getLogger(LOGGER_NAME)

NEUTRAL_TEXTS = ["cheap flights to paris", "what is compound interest"]


class IntentFamily:
    name = FAMILY

    def model_names(self, settings: Settings, version: str) -> list[str]:
        # An ensemble running apart is its own service's: this server neither loads nor pulls it.
        names = [CLASSIC_MODEL] + ([ENSEMBLE_MODEL] if settings.ensemble_service == "local" else [])
        # The detectors are optional: a version in the store says whether it has them; one not (yet) in this
        # store is taken to have them, as the trainers write them.
        in_store = version in available_model_versions(CLASSIC_MODEL)
        if has_verticals(version) or not in_store:
            names.append(VERTICALS_MODEL)
        return names

    def resolve(self, settings: Settings, version: str) -> str:
        return resolve_model_version(CLASSIC_MODEL, version)

    def versions(self, settings: Settings) -> list[str]:
        return available_model_versions(CLASSIC_MODEL)

    def load(self, version: str, context: LoadContext) -> IntentScorer:
        settings = context.settings
        # The ensemble's own service, when it runs apart (service.py passes its client); else its model is loaded
        # here. A server started without that client (a tool, a test in process) loads it here too.
        remote = cast("EnsembleService | None", context.remotes.get(ENSEMBLE_MODEL))
        classic = load_stored_text_model(CLASSIC_MODEL, version)
        ensemble = load_stored_text_model(ENSEMBLE_MODEL, version) if remote is None else None
        verticals = load_stored_text_model(VERTICALS_MODEL, version) if has_verticals(version) else None
        check_intent_models(classic, ensemble, verticals, default_intent=settings.default_intent)
        for model in (classic, ensemble, verticals):
            if model is not None:
                check_text_model(model, NEUTRAL_TEXTS)
                logger.info("loaded %s:%s", model.name, model.version)
        if remote is not None:
            logger.info("intent %s: the ensemble runs as its own service (%s)", version, settings.ensemble_service)
        # The models of a version answer the same texts: a vectorizer they share featurises a query once.
        shared = SharedVectorizers()
        classic = with_fast_path(classic, NEUTRAL_TEXTS, shared)
        ensemble = None if ensemble is None else with_fast_path(ensemble, NEUTRAL_TEXTS, shared)
        verticals = None if verticals is None else with_fast_path(verticals, NEUTRAL_TEXTS, shared)
        logger.info("intent %s: %d distinct vectorizers across its models", version, len(shared))
        return IntentScorer(
            IntentModels(classic, ensemble, verticals),
            IntentPolicy(
                split=settings.intent_split,
                salt=settings.routing_salt,
                ensemble_budget_s=settings.intent_ensemble_budget_ms / 1000,
                default_intent=settings.default_intent,
                max_text_chars=settings.max_text_chars,
                max_request_chars=settings.max_request_chars,
            ),
            faults=context.faults,
            metrics=context.metrics,
            batching=context.batching,
            remote=remote,
        )

    def import_artifacts(self, root: Path, version: str) -> list[str]:
        """Validate and store `root/intent-classic/`, `root/intent-ensemble/` and, when there, `root/intent-verticals/`
        (artifacts in the store's format) as `version`."""
        names = [CLASSIC_MODEL, ENSEMBLE_MODEL] + ([VERTICALS_MODEL] if (root / VERTICALS_MODEL).is_dir() else [])
        classic, ensemble = (load_text_artifact(root / name, name=name, version=version) for name in names[:2])
        check_intent_models(classic, ensemble, None, default_intent=None)
        return import_text_artifacts(root, family=FAMILY, names=names, version=version, neutral_inputs=NEUTRAL_TEXTS)

    def item_failure(self, index: int, request: IntentQuery, error: InferenceError) -> IntentFailure:
        return IntentFailure(index=index, error=ErrorDetail(code=error.code, message=error.message))


def has_verticals(version: str) -> bool:
    return version in available_model_versions(VERTICALS_MODEL)


def check_intent_models(
    classic: TextModel, ensemble: TextModel | None, verticals: TextModel | None, *, default_intent: str | None
) -> None:
    """Both variants answer the same intents, and the default intent (answered when no model can) is one of them.
    (An ensemble running apart is held to classic's intents answer by answer.)"""
    if ensemble is not None and sorted(classic.labels) != sorted(ensemble.labels):
        raise ArtifactError(
            f"intent {classic.version}: classic's intents {sorted(classic.labels)} differ from the ensemble's "
            f"{sorted(ensemble.labels)}; both variants must answer the same intents"
        )
    if default_intent is not None and default_intent not in classic.labels:
        raise ArtifactError(
            f"INFERENCE_DEFAULT_INTENT {default_intent!r} is not an intent of version {classic.version} "
            f"({', '.join(classic.labels)}); set it to one of them"
        )
    if verticals is not None and verticals.version != classic.version:
        raise ArtifactError(f"{VERTICALS_MODEL}:{verticals.version} is not of version {classic.version}")


if TYPE_CHECKING:  # the type checker holds the family and its scorer to the serving layer's protocol

    def _conforms(family: IntentFamily, scorer: IntentScorer) -> tuple[Family, Scorer[IntentQuery, IntentResult]]:
        return family, scorer
