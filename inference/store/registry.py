"""The BentoML model store as the artifact registry: save an artifact directory as `name:version`, list versions,
resolve `latest`, find a stored model's files, import a version from the shared model source (only files its
`SHA256SUMS` vouches for). Knows no family: the families name their models."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, NotFound

from inference.errors import ArtifactError, ModelVersionExists
from inference.progress import advance_current
from inference.settings import LATEST
from inference.store.files import write_metadata

logger = logging.getLogger("inference")

SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9a-z]+(\.[0-9a-z]+)*)?$")
SOURCE_MANIFEST = "SHA256SUMS"  # in the model source: `sha256sum *.bentomodel > SHA256SUMS`
MAX_SOURCE_FILE_BYTES = 4 * 1024**3  # a model export larger than this is refused before it is read
MAX_MANIFEST_BYTES = 1024**2
_MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")  # sha256sum's text (two spaces) and binary (" *") modes
_COPY_CHUNK = 1024**2


class UntrustedArtifact(ArtifactError):
    """A model export in the model source that its SHA256SUMS does not vouch for (no manifest, not listed, another
    digest) or that is too large: refused, and nothing of the version is imported."""


def check_semver(version: str) -> str:
    if not SEMVER.fullmatch(version):  # fullmatch: `$` alone lets a trailing newline through
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
    advance_current(1, extra=f"saved {stored.tag}")
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
    volume every replica mounts) of `bentoml models export` files, `<name>-<version>.bentomodel`, with their
    digests in `SHA256SUMS`. Returns the tags imported. `ArtifactError` naming the file when one is in neither
    place; `UntrustedArtifact` naming the file and the reason when the manifest does not vouch for one (then
    nothing is imported: importing unpickles what the file holds). No source: nothing is imported."""
    missing = [name for name in names if version not in available_model_versions(name)]
    if not missing or not source:
        return []
    try:
        check_semver(version)  # before the version becomes part of a path
    except ValueError as err:
        raise ArtifactError(f"model source: {err}") from err
    folder = Path(source)
    paths = {name: folder / f"{name}-{version}.bentomodel" for name in missing}
    for name, path in paths.items():
        if not path.is_file():
            raise ArtifactError(f"model {name}:{version} is neither in the model store nor at {path}")
    digests = read_source_manifest(folder)
    imported = []
    # Each file is copied while it is hashed and the copy is imported: a file replaced in the source after its
    # check is never the one imported.
    with tempfile.TemporaryDirectory(prefix="inference-pull-") as scratch:
        copies = {name: _verified_copy(path, digests, Path(scratch)) for name, path in paths.items()}
        for name, copy in copies.items():
            try:
                bentoml.models.import_model(str(copy))
            except BentoMLException:
                if version not in available_model_versions(name):  # another worker imported it meanwhile: fine
                    raise
            imported.append(f"{name}:{version}")
    return imported


def read_source_manifest(folder: Path) -> dict[str, str]:
    """File name to sha256 (lowercase hex) from the model source's `SHA256SUMS`, as `sha256sum` writes it."""
    manifest = folder / SOURCE_MANIFEST
    refusal = f"refusing to import from the model source {folder}"
    try:
        with manifest.open("rb") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as err:
        raise UntrustedArtifact(
            f"{manifest}: no manifest, {refusal}; write it with `cd {folder} && sha256sum *.bentomodel > "
            f"{SOURCE_MANIFEST}`"
        ) from err
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UntrustedArtifact(f"{manifest}: larger than {MAX_MANIFEST_BYTES} bytes, {refusal}")
    digests = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        match = _MANIFEST_LINE.match(line.strip("\r"))
        if match:  # by file name: `sha256sum ./*.bentomodel` or absolute paths name the same files
            digests[Path(match.group(2)).name] = match.group(1).lower()
    return digests


def _verified_copy(path: Path, digests: Mapping[str, str], scratch: Path) -> Path:
    """A copy of `path` in `scratch` whose sha256 is the one the manifest lists for it; `UntrustedArtifact` when
    it is not listed, too large, or another digest."""
    expected = digests.get(path.name)
    if expected is None:
        raise UntrustedArtifact(f"{path}: not listed in {path.parent / SOURCE_MANIFEST}, refusing to import it")
    size = path.stat().st_size
    if size > MAX_SOURCE_FILE_BYTES:
        raise UntrustedArtifact(f"{path}: {size} bytes, more than the {MAX_SOURCE_FILE_BYTES} a model export may have")
    copy = scratch / path.name
    digest, copied = hashlib.sha256(), 0
    with path.open("rb") as source, copy.open("wb") as target:
        while chunk := source.read(_COPY_CHUNK):
            copied += len(chunk)
            if copied > MAX_SOURCE_FILE_BYTES:  # grown since its size was read
                raise UntrustedArtifact(f"{path}: more than the {MAX_SOURCE_FILE_BYTES} bytes a model export may have")
            digest.update(chunk)
            target.write(chunk)
    if digest.hexdigest() != expected:
        raise UntrustedArtifact(
            f"{path}: its sha256 is {digest.hexdigest()}, not {expected} as {path.parent / SOURCE_MANIFEST} lists; "
            "refusing to import it"
        )
    return copy


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
