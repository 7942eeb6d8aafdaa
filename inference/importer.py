"""Import models into the BentoML model store, versioned: a team's own models (pickles, joblib pipelines, XGBoost
JSON), or the artifacts `python -m train` writes. Formats, flags and checks: docs/models.md.

    python import_models.py artifacts/skills/v1.0.0                       # version from the folder's name
    python import_models.py my-skills --version v1.1.0 --trust-pickles --imputation means
    python import_models.py my-intent --family intent --version v2.0.0 --trust-pickles --verticals travel,food
    python import_models.py my-pairs --family textpair --version v2.0.0 --trust-pickles --positive-label same
    python import_models.py --demo                                        # train + import demo v1.0.0 of each family missing
    python import_models.py --demo --check                                # exit 1 when the store lacks one

Installed from the package (docs/install.md), the same command is `inference-import`.

Skills become `skill-<folder name>:<version>`, intent `intent-classic`, `intent-ensemble` and `intent-verticals`,
the text pair `textpair`. Every model of the folder is converted and checked before anything is written, and a
version already in the store is never overwritten. The store is `$BENTOML_HOME/models` (default ~/bentoml/models).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from inference.errors import InferenceError
from inference.families.intent.importers import is_intent_folder
from inference.families.intent.variants import INTENT_MODELS
from inference.families.registry import attribute, configured
from inference.families.skills.importers import MEANS, source_folders
from inference.families.skills.scoring import skill_model_name
from inference.families.textpair.importers import is_textpair_folder
from inference.families.textpair.scorer import TEXTPAIR_MODEL
from inference.progress import current, on_terminal, progress_for
from inference.store.importing import ImportOptions
from inference.store.registry import available_model_versions, check_semver

DEMO_VERSION = "v1.0.0"
DEMO_FAMILIES = ("skills", "intent", "textpair")  # the families `--demo` trains (python -m train)
DEMO_ARTIFACTS = Path("artifacts")


def importers() -> dict[str, str]:
    """Each registered family's importer ("module:attribute"), by family: the built-in ones and the plug-ins of
    INFERENCE_FAMILY_PLUGINS."""
    return {name: spec.importer for name, spec in configured().items() if spec.importer}


def recognise_family(root: Path) -> str:
    """The family of a folder: intent by its variant folders, the text pair by `textpair/`, skills by skill model
    folders (or one); a folder holding just a model file could be any, and needs --family."""
    if is_intent_folder(root):
        return "intent"
    if is_textpair_folder(root):
        return "textpair"
    if root.is_dir() and source_folders(root, telling=True):
        return "skills"
    raise ValueError(
        f"{root}: cannot tell the family: expected classic/ and ensemble/ (intent), textpair/ (text pair) or skill "
        "folders holding a scaler, a pipeline or an XGBoost model.json (skills); or pass --family (a pickled model "
        "alone, without a scaler, is imported with --family skills)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, help="the folder of the models to import")
    parser.add_argument("--family", choices=list(importers()), help="default: recognised from the folder")
    parser.add_argument("--version", help="semantic version to store under, e.g. v1.2.0 (default: the folder's name)")
    parser.add_argument(
        "--trust-pickles", action="store_true", help="open pickle and joblib files: they run code when opened"
    )
    parser.add_argument("--samples", type=Path, help="CSV of sample inputs to check the conversion on")
    parser.add_argument("--features", type=Path, help="skills: a features file for every skill folder imported")
    parser.add_argument(
        "--imputation", help=f"skills: '{MEANS}' (the scaler's training means) or a JSON file {{feature: default}}"
    )
    parser.add_argument("--verticals", help="intent: the vertical detector's column names, comma-separated")
    parser.add_argument("--positive-label", help="text pair: the label that means the same meaning")
    parser.add_argument("--demo", action="store_true", help="train and import demo models of each family missing")
    parser.add_argument(
        "--check", action="store_true", help="with --demo: change nothing; exit 1 when the store lacks a demo family"
    )
    args = parser.parse_args(argv)

    if args.check and not args.demo:
        parser.error("--check goes with --demo")
    if args.demo:
        return check_demo_models() if args.check else ensure_demo_models()
    if args.path is None:
        parser.error("give a folder of models, or --demo")
    options = ImportOptions(
        trust_pickles=args.trust_pickles,
        samples=args.samples,
        features=args.features,
        imputation=None if args.imputation is None else MEANS if args.imputation == MEANS else Path(args.imputation),
        verticals=None if args.verticals is None else tuple(name.strip() for name in args.verticals.split(",")),
        positive_label=args.positive_label,
    )
    version = args.version or args.path.resolve().name
    try:
        check_semver(version)
        family = args.family or recognise_family(args.path)
        # The flags that concern one family only, from each family's registration.
        owners = {flag: name for name, spec in configured().items() for flag in spec.import_flags}
        misplaced = [flag for flag, owner in owners.items() if getattr(args, flag) is not None and owner != family]
        if misplaced:
            flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in misplaced)
            raise ValueError(f"{flags}: not a flag of the {family} family")
        load: Callable[..., list[str]] = attribute(importers()[family])
        progress = progress_for(
            description=f"importing {family} {version}",
            total=None,  # how many models a folder holds is the family's to say
            unit="models saved",
            interval_s=0,  # a line per model converted, and per model saved
            bar=on_terminal(),
            emit=lambda line: print(f"importing {family} {version}: {line}", file=sys.stderr, flush=True),
        )
        with progress, current(progress):  # the store's steps advance it (inference.progress.advance_current)
            tags = load(args.path, version=version, options=options)
    except (InferenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for tag in tags:
        print(f"imported {tag}")
    return 0


def demo_model_names(family: str) -> list[str]:
    from train.data.catalogue import SKILLS

    return {
        "skills": [skill_model_name(skill) for skill in SKILLS],
        "intent": list(INTENT_MODELS),
        "textpair": [TEXTPAIR_MODEL],
    }[family]


def holds_demo_models(family: str) -> bool:
    return all(DEMO_VERSION in available_model_versions(name) for name in demo_model_names(family))


def check_demo_models() -> int:
    """0 when the store holds the demo models of every family, 1 when it lacks some (`make serve` then installs the
    training packages and trains them)."""
    missing = [family for family in DEMO_FAMILIES if not holds_demo_models(family)]
    for family in missing:
        print(f"model store lacks {family} {DEMO_VERSION}")
    return 1 if missing else 0


def ensure_demo_models() -> int:
    """Train and import the demo models (DEMO_VERSION, the version models.env pins) of each family the store lacks.
    Artifacts left by an earlier `python -m train` are imported as they are; ones that no longer import (written
    by an older version of this project) are trained again."""
    from train.__main__ import main as train_main

    for family in DEMO_FAMILIES:
        if holds_demo_models(family):
            print(f"model store already holds {family} {DEMO_VERSION}; nothing to do")
            continue
        artifacts = DEMO_ARTIFACTS / family / DEMO_VERSION
        if (artifacts / "report.json").exists():
            if import_demo(artifacts, family) == 0:
                continue
            print(f"{artifacts} could not be imported; training it again", file=sys.stderr)
            shutil.rmtree(artifacts)
        status = train_main([family, "--version", DEMO_VERSION, "--out", str(DEMO_ARTIFACTS)]) or import_demo(
            artifacts, family
        )
        if status:
            return status
    return 0


def import_demo(artifacts: Path, family: str) -> int:
    # The demo text models are joblib pickles that `python -m train` wrote here.
    return main([str(artifacts), "--version", DEMO_VERSION, "--family", family, "--trust-pickles"])
