"""The skills family: one model per skill (`skill-<skill>` in the store), each an XGBoost booster with its scaler
and its own feature schema. Which skills are served is configuration, not code: `INFERENCE_SKILLS` (models.env
pins the build's list), or, when unset, every skill model in the store at the served version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.errors import ArtifactError, InferenceError
from inference.families.skills.artifacts import load_skill_model, scaled_samples
from inference.families.skills.compiled import ONNX_FILE, Compiled, compile_booster
from inference.families.skills.scorer import FAMILY, SkillsScorer, model_summary  # noqa: F401  # re-exported
from inference.families.skills.scoring import SKILL_MODEL_PREFIX, SkillModel, score_rows, skill_model_name
from inference.logs import LOGGER_NAME
from inference.schemas import ErrorDetail, SkillInferenceFailure, SkillInferenceRequest, SkillInferenceResult
from inference.serving.protocol import Family, LoadContext, Scorer
from inference.settings import LATEST, Settings
from inference.store.files import METADATA_FILE, read_metadata
from inference.store.registry import (
    available_model_versions,
    check_semver,
    models_labelled,
    refuse_existing,
    resolve_model_version,
    save_to_store,
    semver_key,
    stored_model_path,
)
from inference.store.validation import check_probabilities

logger = logging.getLogger(LOGGER_NAME)


class SkillsFamily:
    name = FAMILY

    def model_names(self, settings: Settings, version: str) -> list[str]:
        return [skill_model_name(skill) for skill in served_skills(settings, version)]

    def resolve(self, settings: Settings, version: str) -> str:
        if version != LATEST:
            return version
        if settings.skills:
            return resolve_model_version(skill_model_name(settings.skills[0]), LATEST)
        versions = {version for version in _labelled_versions()}
        if not versions:
            raise ArtifactError("no skill models in the model store; train or import some first")
        return max(versions, key=semver_key)

    def versions(self, settings: Settings) -> list[str]:
        """The versions in the store of the first served skill (a version is all skills at that tag)."""
        if settings.skills:
            return available_model_versions(skill_model_name(settings.skills[0]))
        return sorted(set(_labelled_versions()), key=semver_key)

    def load(self, version: str, context: LoadContext) -> SkillsScorer:
        settings = context.settings
        return SkillsScorer(
            self.load_models(settings, version),
            version=version,
            batching=context.batching,
            max_features=settings.max_features,
        )

    def load_models(self, settings: Settings, version: str) -> dict[str, SkillModel]:
        """Every served skill's model at `version` (per-skill overrides for the pinned version), validated."""
        versions = dict.fromkeys(served_skills(settings, version), version)
        # Per-skill overrides belong to the pinned version (`latest` included, once resolved).
        if settings.skill_versions and version == self.resolve(settings, settings.skills_version):
            unknown = sorted(set(settings.skill_versions) - set(versions))
            if unknown:
                raise ArtifactError(
                    f"INFERENCE_SKILL_VERSIONS names {unknown}, which version {version} does not serve "
                    f"(served: {', '.join(versions)})"
                )
            versions.update(settings.skill_versions)
        models = load_skill_models(versions)
        if not settings.compiled_scoring:
            off = Compiled(None, "xgboost", "compiled scoring is off (INFERENCE_COMPILED_SCORING=false)")
            models = {skill: replace(model, compiled=off) for skill, model in models.items()}
        check_skill_models(models)
        return models

    def import_artifacts(self, root: Path, version: str) -> list[str]:
        """Validate and store every skill artifact (in the store's format) under `root/<skill>/` as `version`."""
        return import_skill_artifacts(root, version=version)

    def item_failure(self, index: int, request: SkillInferenceRequest, error: InferenceError) -> SkillInferenceFailure:
        return SkillInferenceFailure(
            student_id=request.student_id,
            skill=request.skill,
            error=ErrorDetail(code=error.code, message=error.message),
        )


def pinned_skill_models(settings: Settings) -> dict[str, SkillModel]:
    """The skill models the settings pin (what the service serves as stable, and the batch scorer scores with)."""
    family = SkillsFamily()
    return family.load_models(settings, family.resolve(settings, settings.skills_version))


def served_skills(settings: Settings, version: str) -> list[str]:
    """The skills served at `version`: INFERENCE_SKILLS, or every skill model in the store at that version."""
    if settings.skills:
        return list(settings.skills)
    found = [name.removeprefix(SKILL_MODEL_PREFIX) for name in models_labelled(FAMILY, version)]
    if not found:
        raise ArtifactError(
            f"no skill model is in the model store at version {version}; import some, or list the skills to serve "
            "in INFERENCE_SKILLS"
        )
    return found


def load_skill_models(versions: Mapping[str, str]) -> dict[str, SkillModel]:
    """Each skill's model at its version from the store (`latest` resolved per skill); `ArtifactError` names the
    tag that is missing or broken."""
    models = {}
    for skill, requested in versions.items():
        name = skill_model_name(skill)
        version = resolve_model_version(name, requested)
        path = stored_model_path(name, version)
        model = load_skill_model(path, version=version, metadata=read_metadata(path))
        if model.skill != skill:
            raise ArtifactError(f"{name}:{version}: its metadata says it is the model of skill {model.skill!r}")
        models[skill] = model
        compiled = model.compiled
        if compiled is not None and compiled.booster is None and (path / ONNX_FILE).is_file():
            logger.warning("%s:%s scores with XGBoost: %s", name, version, compiled.reason)
        logger.info("loaded %s:%s (scoring: %s)", name, version, compiled.path if compiled else "xgboost")
    return models


def check_skill_models(models: Mapping[str, SkillModel]) -> None:
    """The smoke test of every skill model: the held-out samples stored with it score as they did when it was
    trained or imported; a model without samples must score its imputation defaults finitely."""
    for model in models.values():
        samples = model.metadata.get("samples") or {}
        rows = np.array(samples.get("inputs") or [model.imputation_defaults], dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(model.feature_names):
            raise ArtifactError(
                f"{model.store_name}:{model.version}: samples.inputs must be rows of {len(model.feature_names)} values"
            )
        scores = score_rows(model, rows).score
        check_probabilities(scores, where=f"{model.store_name}:{model.version}", expected=samples.get("scores"))


def skill_folders(root: Path) -> list[Path]:
    """The skill artifact folders under `root`: each sub-folder holding a metadata.json, by name."""
    return sorted(path.parent for path in root.glob(f"*/{METADATA_FILE}"))


def import_skill_artifacts(root: Path, *, version: str) -> list[str]:
    """Validate every skill artifact under `root/<skill>/` and save each as `skill-<skill>:<version>`.

    Everything is validated (the format, and the smoke test on the samples stored with each) before anything is
    saved, and an existing version is never overwritten, so a failed import leaves the store as it was.
    """
    check_semver(version)
    folders = skill_folders(root)
    if not folders:
        raise ArtifactError(f"{root}: no skill artifact folders (sub-folders holding {METADATA_FILE})")
    models = {folder: load_skill_model(folder, version=version) for folder in folders}
    for folder, model in models.items():
        if model.skill != folder.name:
            raise ArtifactError(f"{folder / METADATA_FILE}: skill {model.skill!r} is not its folder's name")
    check_skill_models({model.skill: model for model in models.values()})
    refuse_existing([model.store_name for model in models.values()], version)
    compiled = {folder: compile_for_store(model) for folder, model in models.items()}
    return [
        save_to_store(
            model.store_name,
            version,
            folder,
            model.metadata,
            {"family": FAMILY, "skill": model.skill},
            compiled[folder],
        )
        for folder, model in models.items()
    ]


def compile_for_store(model: SkillModel) -> dict[str, bytes]:
    """The model's ONNX form to store beside it, when the converter supports it and it equals the booster."""
    rows = scaled_samples(model.metadata, model.imputation_defaults, model.mean, model.scale)
    model_bytes, reason = compile_booster(model.booster, rows)
    if model_bytes is None:
        logger.warning("%s: stored without a compiled form, it will score with XGBoost: %s", model.store_name, reason)
        return {}
    return {ONNX_FILE: model_bytes}


def _labelled_versions() -> list[str]:
    import bentoml

    return [
        str(model.tag.version)
        for model in bentoml.models.list()
        if model.info.labels.get("family") == FAMILY and str(model.tag.name).startswith(SKILL_MODEL_PREFIX)
    ]


if TYPE_CHECKING:  # the type checker holds the family and its scorer to the serving layer's protocol

    def _conforms(
        family: SkillsFamily, scorer: SkillsScorer
    ) -> tuple[Family, Scorer[SkillInferenceRequest, SkillInferenceResult]]:
        return family, scorer
