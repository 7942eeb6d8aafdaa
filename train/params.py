"""Training parameters: the options of `python -m train <family>`, some of which only shape the generated demo data
(how many students, queries or pairs) and mean nothing when the data comes from a file."""

from __future__ import annotations

from dataclasses import asdict, field, fields
from typing import Any

GENERATED_ONLY = "generated_data_only"


def generated_only(default: int) -> Any:
    """A parameter of the demo data generator: ignored, and left out of the report, with `--data`."""
    return field(default=default, metadata={GENERATED_ONLY: True})


def is_generated_only(params_type: type, name: str) -> bool:
    return any(item.name == name and item.metadata.get(GENERATED_ONLY) for item in fields(params_type))


def recorded_params(params: Any, *, generated: bool) -> dict[str, Any]:
    """The parameters a report and the models' metadata record: all of them for generated data, else only those
    that shaped the models."""
    recorded = asdict(params)
    if not generated:
        for item in fields(params):
            if item.metadata.get(GENERATED_ONLY):
                recorded.pop(item.name)
    return recorded
