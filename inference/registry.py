"""The BentoML model store as the artifact registry: import artifacts, list versions, load pinned models."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import xgboost as xgb
from bentoml.exceptions import NotFound

from inference.artifacts import load_skill_model, read_metadata, write_metadata
from inference.catalogue import SKILLS
from inference.errors import ArtifactError, ModelVersionExists
from inference.scoring import SkillModel
from inference.settings import LATEST
from inference.text_artifacts import TextModel, load_text_artifact

logger = logging.getLogger("inference")

SKILLS_FAMILY = "skills"
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9a-z]+(\.[0-9a-z]+)*)?$")


def skill_model_name(skill: str) -> str:
    return f"skill-{skill}"


def check_semver(version: str) -> str:
    if not SEMVER.match(version):
        raise ValueError(f"version {version!r} is not a semantic version like v1.2.0 (lowercase, leading 'v')")
    return version


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key: release after its pre-releases; non-semver versions sort first."""
    match = SEMVER.match(version)
    if not match:
        return (-1, -1, -1, -1, version)
    major, minor, patch, pre = match.group(1), match.group(2), match.group(3), match.group(4)
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


def save_to_store(name: str, version: str, source: Path, metadata: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """Copy an artifact directory into the store as `name:version`, with import-time metadata added."""
    metadata = {
        **metadata,
        "semver": version,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
    }
    with bentoml.models.create(f"{name}:{version}", labels=dict(labels), metadata=metadata) as stored:
        shutil.copytree(source, stored.path, dirs_exist_ok=True)
        # The store's copy of metadata.json carries the import-time additions too.
        write_metadata(Path(stored.path), metadata)
    return str(stored.tag)


def refuse_existing(names: Sequence[str], version: str) -> None:
    existing = [f"{name}:{version}" for name in names if version in available_model_versions(name)]
    if existing:
        raise ModelVersionExists(f"refusing to overwrite {', '.join(existing)}; import under a new version")


def available_model_versions(name: str) -> list[str]:
    """Versions of a model in the store, oldest semver first."""
    try:
        stored = bentoml.models.list(name)
    except NotFound:
        return []
    return sorted((str(model.tag.version) for model in stored), key=semver_key)


def resolve_model_version(name: str, requested: str) -> str:
    """A pinned version as it is, or `latest` as the highest semver in the store."""
    if requested != LATEST:
        return requested
    versions = available_model_versions(name)
    if not versions:
        raise ArtifactError(f"no model {name} in the model store; train and import one first")
    return versions[-1]


def stored_model_path(name: str, version: str) -> Path:
    tag = f"{name}:{version}"
    try:
        return Path(bentoml.models.get(tag).path)
    except NotFound as err:
        raise ArtifactError(f"model {tag} is not in the model store ({err})") from err


def import_skill_artifacts(root: Path, *, version: str) -> list[str]:
    """Validate the 7 artifacts under `root/<skill>/` and save them as `skill-<skill>:<version>`.

    Everything is validated before anything is saved, and an existing version is never overwritten, so a
    failed import leaves the store as it was.
    """
    check_semver(version)
    models = {skill: load_skill_model(root / skill, version=version) for skill in SKILLS}
    refuse_existing([skill_model_name(skill) for skill in SKILLS], version)
    return [
        save_to_store(
            skill_model_name(skill), version, root / skill, model.metadata, {"family": SKILLS_FAMILY, "skill": skill}
        )
        for skill, model in models.items()
    ]


def available_versions(skill: str) -> list[str]:
    """Versions of a skill's model in the store, oldest semver first."""
    return available_model_versions(skill_model_name(skill))


def resolve_version(skill: str, requested: str) -> str:
    return resolve_model_version(skill_model_name(skill), requested)


def load_skill_models(versions: Mapping[str, str]) -> dict[str, SkillModel]:
    """Load each skill's model at its pinned version from the store; raises `ArtifactError` naming the tag."""
    models = {}
    for skill in SKILLS:
        version = resolve_version(skill, versions[skill])
        path = stored_model_path(skill_model_name(skill), version)
        models[skill] = load_skill_model(path, version=version, metadata=read_metadata(path))
        logger.info("loaded %s:%s", skill_model_name(skill), version)
    return models


def import_text_artifacts(root: Path, *, family: str, labels: Mapping[str, Sequence[str]], version: str) -> list[str]:
    """Validate the text artifacts `root/<name>/` (one per entry of `labels`: model name to its class labels)
    and save them as `<name>:<version>`; all or nothing, never overwriting."""
    check_semver(version)
    models = {name: load_text_artifact(root / name, name=name, version=version, labels=labels[name]) for name in labels}
    refuse_existing(list(labels), version)
    return [
        save_to_store(name, version, root / name, model.metadata, {"family": family}) for name, model in models.items()
    ]


def load_text_models(labels: Mapping[str, Sequence[str]], version: str) -> dict[str, TextModel]:
    """Load text models (name to class labels) at one version (or `latest`, resolved per model)."""
    models = {}
    for name, expected in labels.items():
        resolved = resolve_model_version(name, version)
        path = stored_model_path(name, resolved)
        models[name] = load_text_artifact(path, name=name, version=resolved, labels=expected)
        logger.info("loaded %s:%s", name, resolved)
    return models


def library_versions() -> dict[str, str]:
    return {
        "bentoml": bentoml.__version__,
        "numpy": np.__version__,
        # Read from the installed distribution: importing scikit-learn here would cost a serving process ~50 MiB.
        "scikit-learn": package_metadata.version("scikit-learn"),
        "xgboost": xgb.__version__,
    }


def model_summary(skill: str, model: SkillModel) -> dict[str, Any]:
    metadata = model.metadata
    return {
        "skill": skill,
        "served_version": model.version,
        "available_versions": available_versions(skill),
        "trained_at": metadata.get("trained_at"),
        "training_data_hash": metadata.get("training_data_hash"),
        "metrics": metadata.get("metrics", {}),
        "feature_names": list(model.feature_names),
    }
