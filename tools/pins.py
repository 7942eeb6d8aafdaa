"""The model versions a build serves live in one file, models.env; bentofile.yaml's model list is written from it.

    python -m tools.pins                 # write bentofile.yaml's `models:` from models.env
    python -m tools.pins --check         # exit 1 when bentofile.yaml's list is not models.env's (CI, make bento)
    python -m tools.pins --from-store    # first pin what the model store holds into models.env, then write the list

`--from-store` pins each family's newest version in the store and, for skills, every skill model at that version
(INFERENCE_SKILLS), and serves the families the store holds (INFERENCE_FAMILIES): after importing a team's models, one command makes the next `make bento` carry them. Only the
pins are rewritten; models.env's comments and other lines stay.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_ENV = PROJECT_ROOT / "models.env"
BENTOFILE = PROJECT_ROOT / "bentofile.yaml"
# bentofile.yaml's model list: from `models:` to the next top-level key.
MODELS_BLOCK = re.compile(r"^models:\n(?:(?:[ \t]+.*|)\n)*?(?=^\S)", re.MULTILINE)
HEADER = "  # Exact versions, never `latest`: written from models.env by `python -m tools.pins` (do not edit).\n"


def pinned(models_env: Path = MODELS_ENV) -> list[str]:
    from inference.families.registry import pinned_tags
    from inference.settings import Settings

    # Every model of each pinned version, wherever it runs: the ensemble's own service serves from the same Bento.
    return pinned_tags(Settings(_env_file=models_env, ensemble_service="local"))


def models_block(tags: Sequence[str]) -> str:
    return "models:\n" + HEADER + "".join(f'  - "{tag}"\n' for tag in tags)


def written(bentofile: str, tags: Sequence[str]) -> str:
    if not MODELS_BLOCK.search(bentofile):
        raise ValueError("bentofile.yaml has no top-level `models:` list followed by another key")
    return MODELS_BLOCK.sub(lambda _: models_block(tags), bentofile, count=1)


def store_pins() -> dict[str, str]:
    """models.env's pins for what the store holds: each family's newest version; the skills at theirs."""
    import json

    from inference.families.registry import configured, get_family
    from inference.settings import LATEST, Settings

    settings = Settings(_env_file=None)  # no pins: `latest` everywhere, every skill in the store
    pins: dict[str, str] = {}
    held = []
    for name in configured(settings):
        family = get_family(name)
        if f"{name}_version" not in Settings.model_fields or not family.versions(settings):
            continue  # a plug-in family is pinned by INFERENCE_VERSIONS, by hand
        version = family.resolve(settings, LATEST)
        held.append(name)
        pins[f"INFERENCE_{name.upper()}_VERSION"] = version
        if name == "skills":
            names = family.model_names(settings, version)
            pins["INFERENCE_SKILLS"] = json.dumps([model.removeprefix("skill-") for model in names])
    if held:
        pins["INFERENCE_FAMILIES"] = json.dumps(held)  # the families the store holds, and only those
    return pins


def rewrite_pins(text: str, pins: dict[str, str]) -> str:
    """`text` (models.env) with each pinned variable's line set, added at the end when absent."""
    lines = text.splitlines()
    for variable, value in pins.items():
        line = f"{variable}={value}"
        index = next((i for i, old in enumerate(lines) if old.startswith(f"{variable}=")), None)
        if index is None:
            lines.append(line)
        else:
            lines[index] = line
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when bentofile.yaml's list differs from models.env")
    mode.add_argument("--from-store", action="store_true", help="pin what the model store holds into models.env first")
    parser.add_argument("--models-env", type=Path, default=MODELS_ENV, help=argparse.SUPPRESS)
    parser.add_argument("--bentofile", type=Path, default=BENTOFILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.from_store:
        pins = store_pins()
        if not pins:
            print("pins: the model store holds no models; models.env unchanged", file=sys.stderr)
            return 1
        args.models_env.write_text(rewrite_pins(args.models_env.read_text(), pins))
        for variable, value in pins.items():
            print(f"models.env: {variable}={value}")
    tags = pinned(args.models_env)
    current = args.bentofile.read_text()
    wanted = written(current, tags)
    if args.check:
        if wanted != current:
            print("bentofile.yaml's models differ from models.env's pins: run `python -m tools.pins`", file=sys.stderr)
            return 1
        print(f"bentofile.yaml pins the {len(tags)} tags of models.env")
        return 0
    if wanted != current:
        args.bentofile.write_text(wanted)
    print(f"bentofile.yaml: {len(tags)} model tags from models.env")
    return 0


if __name__ == "__main__":
    sys.exit(main())
