"""The JSON files of an artifact directory: `metadata.json` and its siblings, read with errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.errors import ArtifactError

METADATA_FILE = "metadata.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: file is missing") from err
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path}: not readable JSON ({err})") from err


def write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_metadata(directory: Path) -> dict[str, Any]:
    metadata = read_json(directory / METADATA_FILE)
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{directory / METADATA_FILE}: expected a JSON object")
    return metadata


def write_metadata(directory: Path, metadata: Mapping[str, Any]) -> None:
    write_json(directory / METADATA_FILE, dict(metadata))
