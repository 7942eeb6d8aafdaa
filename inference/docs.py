"""Generate docs/features.md (from the catalogues) and docs/configuration.md (from the settings object):
`python -m inference.docs`. A test fails when either is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from inference.catalogue import FEATURES, SKILL_FEATURES, SKILLS
from inference.intent_catalogue import INTENTS, VERTICALS
from inference.pair_features import PAIR_FEATURES
from inference.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
FEATURES_DOC = DOCS / "features.md"
CONFIGURATION_DOC = DOCS / "configuration.md"


def render_features_doc() -> str:
    lines = [
        "# Features and labels of the model families",
        "",
        "Generated from `inference/catalogue.py`, `inference/intent_catalogue.py` and `inference/pair_features.py`",
        "by `python -m inference.docs`; do not edit by hand.",
        "",
        "# Skills family: student features",
        "",
        "A request's `features` object maps these names to numbers. Values must be finite and inside the valid",
        "range; a feature a skill's model uses but the request leaves out is imputed with the training median",
        "(and listed in `imputed_features`); names a skill's model does not use are ignored (`ignored_features`).",
        "",
        "## Features",
        "",
        "| feature | kind | unit | valid range | description |",
        "|---|---|---|---|---|",
    ]
    for feature in FEATURES.values():
        lines.append(
            f"| `{feature.name}` | {feature.kind} | {feature.unit} | {feature.minimum:g} to {feature.maximum:g} "
            f"| {feature.description} |"
        )
    lines += [
        "",
        "## Skills",
        "",
        "Each skill's model takes its features in this order (the model's column order).",
        "",
    ]
    for skill in SKILLS:
        lines.append(f"- **{skill}**: " + ", ".join(f"`{name}`" for name in SKILL_FEATURES[skill]))
    lines += [
        "",
        "# Intent family: labels",
        "",
        "`POST /api/classify` answers one of these intents, and the verticals whose detector scores the query over",
        "its threshold (thresholds are chosen per vertical on validation data when the models are trained).",
        "",
        "| intent | meaning |",
        "|---|---|",
        *(f"| `{intent}` | {meaning} |" for intent, meaning in INTENTS.items()),
        "",
        "| vertical | covers |",
        "|---|---|",
        *(f"| `{vertical}` | {covers} |" for vertical, covers in VERTICALS.items()),
        "",
        "# Text-pair family: the 30 pair features",
        "",
        "`POST /predict` computes these from `text1` and `text2` (lower-cased words, character n-grams), scales them",
        "and feeds them to a logistic regression. In this order:",
        "",
        "| # | feature | what it measures |",
        "|---|---|---|",
        *(f"| {number} | `{name}` | {meaning} |" for number, (name, meaning) in enumerate(PAIR_FEATURES.items(), 1)),
    ]
    return "\n".join(lines) + "\n"


def render_configuration_doc() -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    lines = [
        "# Configuration",
        "",
        "Generated from `inference/settings.py` by `python -m inference.docs`; do not edit by hand.",
        "",
        "Every setting is an environment variable. The model versions a build serves are pinned in `models.env`",
        "(shipped inside the Bento); a variable set in the environment wins over that file.",
        "",
        "| variable | default | description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = extra.get("doc_default") or repr(field.get_default(call_default_factory=True))
        aliases = getattr(field.validation_alias, "choices", None)
        variable = " or ".join(f"`{alias}`" for alias in aliases) if aliases else f"`{prefix}{name.upper()}`"
        lines.append(f"| {variable} | `{default}` | {field.description or ''} |")
    lines += [
        "",
        "BentoML's own variables apply too, notably `BENTOML_HOME` (the model store, default `~/bentoml`) and",
        "`BENTOML_DO_NOT_TRACK=true` (set by the Makefile and the Bento).",
        "",
    ]
    return "\n".join(lines)


GENERATED = {FEATURES_DOC: render_features_doc, CONFIGURATION_DOC: render_configuration_doc}


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    for path, render in GENERATED.items():
        path.write_text(render())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
