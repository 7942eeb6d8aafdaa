"""The BentoML model store as the artifact registry: save an artifact directory as `name:version`, list versions,
resolve `latest`, find a stored model's files. Knows no family: the families name their models."""

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
from bentoml.exceptions import BentoMLException, NotFound

from inference.errors import ArtifactError, ModelVersionExists
from inference.settings import LATEST
from inference.store.files import write_metadata

logger = logging.getLogger("inference")

SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9a-z]+(\.[0-9a-z]+)*)?$")


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


def save_to_store(
    name: str,
    version: str,
    source: Path,
    metadata: Mapping[str, Any],
    labels: Mapping[str, str],
    extra_files: Mapping[str, bytes] | None = None,
) -> str:
    """Copy an artifact directory into the store as `name:version`, with import-time metadata added and
    `extra_files` (file name: content, made by the import) written beside it."""
    metadata = {
        **metadata,
        "semver": version,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
    }
    with bentoml.models.create(f"{name}:{version}", labels=dict(labels), metadata=metadata) as stored:
        shutil.copytree(source, stored.path, dirs_exist_ok=True)
        for file_name, content in (extra_files or {}).items():
            (Path(stored.path) / file_name).write_bytes(content)
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


def pull_from_source(names: Sequence[str], version: str, source: str | None) -> list[str]:
    """Import into the local model store the models of `names` at `version` it lacks, from `source`: a folder (a
    volume every replica mounts) of `bentoml models export` files, `<name>-<version>.bentomodel`. Returns the tags
    imported; `ArtifactError` naming the file when one is in neither place. No source: nothing is imported."""
    missing = [name for name in names if version not in available_model_versions(name)]
    if not missing or not source:
        return []
    imported = []
    for name in missing:
        path = Path(source) / f"{name}-{version}.bentomodel"
        if not path.is_file():
            raise ArtifactError(f"model {name}:{version} is neither in the model store nor at {path}")
        try:
            bentoml.models.import_model(str(path))
        except BentoMLException:
            if version not in available_model_versions(name):  # another worker imported it meanwhile: fine
                raise
        imported.append(f"{name}:{version}")
    return imported


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


def models_labelled(family: str, version: str) -> list[str]:
    """Names of the models in the store at `version` that carry the label `family` (set when they were imported)."""
    found = []
    for model in bentoml.models.list():
        if str(model.tag.version) == version and model.info.labels.get("family") == family:
            found.append(str(model.tag.name))
    return sorted(found)


def library_versions() -> dict[str, str]:
    """The versions of the libraries a model was trained or imported with (read from the installed distributions:
    importing scikit-learn or XGBoost here would cost a serving process time and memory)."""
    return {
        "bentoml": bentoml.__version__,
        "numpy": _distribution_version("numpy"),
        "scikit-learn": _distribution_version("scikit-learn"),
        "xgboost": _distribution_version("xgboost", "xgboost-cpu"),
    }


def _distribution_version(*names: str) -> str:
    for name in names:
        try:
            return package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return "unknown"
