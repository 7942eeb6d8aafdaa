"""Generate docs/features.md from the catalogue: `python -m inference.docs` (a test fails when it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from inference.catalogue import FEATURES, SKILL_FEATURES, SKILLS

FEATURES_DOC = Path(__file__).resolve().parent.parent / "docs" / "features.md"


def render_features_doc() -> str:
    lines = [
        "# Skills and student features",
        "",
        "Generated from `inference/catalogue.py` by `python -m inference.docs`; do not edit by hand.",
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
    lines += ["", "## Skills", "", "Each skill's model takes its features in this order (the model's column order).", ""]
    for skill in SKILLS:
        lines.append(f"- **{skill}**: " + ", ".join(f"`{name}`" for name in SKILL_FEATURES[skill]))
    return "\n".join(lines) + "\n"


def main() -> int:
    FEATURES_DOC.parent.mkdir(exist_ok=True)
    FEATURES_DOC.write_text(render_features_doc())
    print(f"wrote {FEATURES_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
