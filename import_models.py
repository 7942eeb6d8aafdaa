"""Save trained model artifacts into the BentoML model store, versioned.

    python import_models.py artifacts/skills/v1.0.0             # version taken from the folder name
    python import_models.py artifacts/intent/v1.0.0             # the family is recognised from the sub-folders
    python import_models.py path/to/my-models --version v1.1.0  # a user's own artifacts (format: docs/models.md)
    python import_models.py --demo                              # train + import demo v1.0.0 of each family missing

Skills become `skill-<skill>:<version>`, intent `intent-classic`, `intent-ensemble` and `intent-verticals`,
the text pair `textpair`. The store is `$BENTOML_HOME/models` (default ~/bentoml/models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference.catalogue import SKILLS
from inference.errors import InferenceError
from inference.families import INTENT_FAMILY, INTENT_LABELS, SKILLS_FAMILY, TEXTPAIR_FAMILY, TEXTPAIR_LABELS
from inference.registry import (
    available_model_versions,
    available_versions,
    check_semver,
    import_skill_artifacts,
    import_text_artifacts,
)

DEMO_VERSION = "v1.0.0"
DEMO_ARTIFACTS = Path("artifacts")
FAMILY_FOLDERS = {
    SKILLS_FAMILY: list(SKILLS),
    INTENT_FAMILY: list(INTENT_LABELS),
    TEXTPAIR_FAMILY: list(TEXTPAIR_LABELS),
}


def recognise_family(root: Path) -> str:
    for family, folders in FAMILY_FOLDERS.items():
        if all((root / folder).is_dir() for folder in folders):
            return family
    expected = "; ".join(f"{family}: {', '.join(folders)}" for family, folders in FAMILY_FOLDERS.items())
    raise ValueError(f"{root}: no family's artifact folders found; expected one of these sets: {expected}")


def import_family(root: Path, family: str, version: str) -> list[str]:
    if family == SKILLS_FAMILY:
        return import_skill_artifacts(root, version=version)
    labels = INTENT_LABELS if family == INTENT_FAMILY else TEXTPAIR_LABELS
    return import_text_artifacts(root, family=family, labels=labels, version=version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, help="folder holding one artifact folder per model")
    parser.add_argument("--version", help="semantic version to store under (default: the folder's name)")
    parser.add_argument("--family", choices=list(FAMILY_FOLDERS), help="default: recognised from the sub-folders")
    parser.add_argument("--demo", action="store_true", help="train and import demo models of each family missing")
    args = parser.parse_args(argv)

    if args.demo:
        return ensure_demo_models()
    if args.path is None:
        parser.error("give a folder of artifacts, or --demo")
    version = args.version or args.path.resolve().name
    try:
        check_semver(version)
        family = args.family or recognise_family(args.path)
        tags = import_family(args.path, family, version)
    except (InferenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for tag in tags:
        print(f"imported {tag}")
    return 0


def has_models(family: str) -> bool:
    if family == SKILLS_FAMILY:
        return all(available_versions(skill) for skill in SKILLS)
    return all(available_model_versions(name) for name in FAMILY_FOLDERS[family])


def ensure_demo_models() -> int:
    from train.__main__ import main as train_main

    for family in FAMILY_FOLDERS:
        if has_models(family):
            print(f"model store already holds {family} models; nothing to do")
            continue
        artifacts = DEMO_ARTIFACTS / family / DEMO_VERSION
        if not (artifacts / "report.json").exists():
            status = train_main([family, "--version", DEMO_VERSION, "--out", str(DEMO_ARTIFACTS)])
            if status:
                return status
        status = main([str(artifacts), "--version", DEMO_VERSION, "--family", family])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
