"""The model families this service serves, each behind the protocol of `inference.serving.protocol`.

A family is found by name and imported on first use: `bentoml serve` imports the service in its supervising process
too, which never scores and must not pay for the model libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.serving.protocol import Family
    from inference.settings import Settings

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


def pinned_tags(settings: Settings) -> list[str]:
    """The store tags of every model the settings pin, route or shadow to (the list a Bento must carry)."""
    tags = [f"skill-{skill}:{version}" for skill, version in settings.skill_versions.items()]
    for name in FAMILIES:
        family = get_family(name)
        versions = {settings.version_of(name), *settings.configured_routes().get(name, {})}
        versions.update(version for shadowed, version in settings.shadow.items() if shadowed == name)
        for version in sorted(versions):
            tags += [f"{model}:{version}" for model in family.model_names(settings, version)]
    return sorted(set(tags))
