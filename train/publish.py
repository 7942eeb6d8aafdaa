"""Copy the evaluation reports of the pinned model versions into docs/reports/ (Markdown and PNG plots):

    python -m train.publish                       # from artifacts/<family>/<pinned version>/
    python -m train.publish --artifacts /tmp/out  # from another artifact root

docs/models.md links these copies, so the documentation shows the versions a build serves.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from inference.families import FAMILIES
from inference.settings import MODEL_PINS_FILE, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORTS = PROJECT_ROOT / "docs" / "reports"
COPIED = ("report.md", "*.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=PROJECT_ROOT / "artifacts")
    args = parser.parse_args(argv)
    settings = Settings(_env_file=MODEL_PINS_FILE)  # type: ignore[call-arg]
    for family in FAMILIES:
        version = settings.version_of(family)
        source = args.artifacts / family / version
        if not (source / "report.md").is_file():
            print(f"error: {source / 'report.md'} is missing; train {family} {version} first", file=sys.stderr)
            return 2
        target = REPORTS / family
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for pattern in COPIED:
            for path in sorted(source.glob(pattern)):
                shutil.copy(path, target / path.name)
        print(f"{family} {version}: {source} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
