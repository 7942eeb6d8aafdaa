"""The model families this service serves, each behind the protocol of `inference.families.base`.

A family is found by name and imported on first use: `bentoml serve` imports the service in its supervising process
too, which never scores and must not pay for the model libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.families.base import Family

# name -> "module:class" of its `Family`
FAMILIES: dict[str, str] = {
    "skills": "inference.families.skills.family:SkillsFamily",
    "intent": "inference.families.intent.family:IntentFamily",
    "textpair": "inference.families.textpair.family:TextPairFamily",
}
_loaded: dict[str, Family] = {}


def get_family(name: str) -> Family:
    """The family called `name`; `KeyError` naming the known ones otherwise."""
    if name not in _loaded:
        if name not in FAMILIES:
            raise KeyError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}")
        module, _, attribute = FAMILIES[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), attribute)()
    return _loaded[name]
