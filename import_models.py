"""Save skill model artifacts into the BentoML model store as `skill-<skill>:<version>`.

    python import_models.py artifacts/skills/v1.0.0            # version taken from the folder name
    python import_models.py path/to/my-models --version v1.1.0  # a user's own artifacts (format: docs/models.md)
    python import_models.py --demo                              # train + import demo v1.0.0 if the store has none

The store is `$BENTOML_HOME/models` (default ~/bentoml/models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference.catalogue import SKILLS
from inference.errors import InferenceError
from inference.registry import available_versions, check_semver, import_skill_artifacts

DEMO_VERSION = "v1.0.0"
DEMO_ARTIFACTS = Path("artifacts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, help="folder holding one artifact folder per skill")
    parser.add_argument("--version", help="semantic version to store under (default: the folder's name)")
    parser.add_argument("--demo", action="store_true", help="train and import demo models unless the store has some")
    args = parser.parse_args(argv)

    if args.demo:
        return ensure_demo_models()
    if args.path is None:
        parser.error("give a folder of skill artifacts, or --demo")
    version = args.version or args.path.resolve().name
    try:
        check_semver(version)
        tags = import_skill_artifacts(args.path, version=version)
    except (InferenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for tag in tags:
        print(f"imported {tag}")
    return 0


def ensure_demo_models() -> int:
    missing = [skill for skill in SKILLS if not available_versions(skill)]
    if not missing:
        print("model store already holds skill models; nothing to do")
        return 0
    from train.__main__ import main as train_main

    artifacts = DEMO_ARTIFACTS / "skills" / DEMO_VERSION
    if not (artifacts / "report.json").exists():
        status = train_main(["skills", "--version", DEMO_VERSION, "--out", str(DEMO_ARTIFACTS)])
        if status:
            return status
    return main([str(artifacts), "--version", DEMO_VERSION])


if __name__ == "__main__":
    sys.exit(main())
