"""The text-pair family: one model, `textpair`, any scikit-learn estimator that takes (text1, text2) pairs and has
`predict_proba` over two labels, one of which means "the same" (its `positive_label`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import ArtifactError, InferenceError
from inference.families.text_compiled import with_fast_path
from inference.families.textpair.scorer import FAMILY, TEXTPAIR_MODEL, TextPairScorer, positive_label
from inference.logs import LOGGER_NAME
from inference.schemas import ErrorDetail, TextPairFailure, TextPairRequest, TextPairResult
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

NEUTRAL_PAIRS = [["a cat sat", "a cat was sitting"], ["cheap flights", "stock prices fell"]]


class TextPairFamily:
    name = FAMILY

    def model_names(self, settings: Settings, version: str) -> list[str]:
        return [TEXTPAIR_MODEL]

    def resolve(self, settings: Settings, version: str) -> str:
        return resolve_model_version(TEXTPAIR_MODEL, version)

    def versions(self, settings: Settings) -> list[str]:
        return available_model_versions(TEXTPAIR_MODEL)

    def load(self, version: str, context: LoadContext) -> TextPairScorer:
        settings = context.settings
        model = load_stored_text_model(TEXTPAIR_MODEL, version)
        check_pair_labels(model)
        check_text_model(model, NEUTRAL_PAIRS)
        logger.info("loaded %s:%s", model.name, model.version)
        model = with_fast_path(model, NEUTRAL_PAIRS)
        return TextPairScorer(
            model,
            max_text_chars=settings.max_text_chars,
            max_request_chars=settings.max_request_chars,
            faults=context.faults,
            batching=context.batching,
        )

    def import_artifacts(self, root: Path, version: str) -> list[str]:
        """Validate and store `root/textpair/` (an artifact in the store's format) as `version`."""
        model = load_text_artifact(root / TEXTPAIR_MODEL, name=TEXTPAIR_MODEL, version=version)
        check_pair_labels(model)
        return import_text_artifacts(
            root, family=FAMILY, names=[TEXTPAIR_MODEL], version=version, neutral_inputs=NEUTRAL_PAIRS
        )

    def item_failure(self, index: int, request: TextPairRequest, error: InferenceError) -> TextPairFailure:
        return TextPairFailure(index=index, error=ErrorDetail(code=error.code, message=error.message))


def check_pair_labels(model: TextModel) -> None:
    """Two labels, one of them known to mean "the same"."""
    if len(model.labels) != 2:
        raise ArtifactError(f"{model.name}:{model.version}: a text-pair model has two labels, not {list(model.labels)}")
    try:
        positive = positive_label(model)
    except ValueError as err:
        raise ArtifactError(f"{err}: set positive_label in its metadata (import with --positive-label)") from err
    if positive not in model.labels:
        raise ArtifactError(
            f"{model.name}:{model.version}: positive_label {positive!r} is not one of its labels {list(model.labels)}"
        )


if TYPE_CHECKING:  # the type checker holds the family and its scorer to the serving layer's protocol

    def _conforms(
        family: TextPairFamily, scorer: TextPairScorer
    ) -> tuple[Family, Scorer[TextPairRequest, TextPairResult]]:
        return family, scorer
