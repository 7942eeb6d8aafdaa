"""`python -m train <family> --version v1.0.0 [--data FILE] [...]`: models trained on a team's data, or demo models
on generated data.

python -m train skills --version v1.1.0 --data ratings.parquet   # student_id, skill, features, rating or label
python -m train intent --version v1.1.0 --data queries.csv       # text, intent, optionally verticals (a;b)
python -m train textpair --version v1.1.0 --data pairs.csv       # text1, text2, label (two values)
python -m train skills --version v1.0.0                          # demo: generated students
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from train.datasets import DEFAULT_RATING_THRESHOLD, DataError, read_pair_table, read_query_table, read_skill_table
from train.intent import IntentTrainingParams, train_intent
from train.params import is_generated_only, recorded_params
from train.skills import SkillTrainingParams, train_skills
from train.textpair import TextPairTrainingParams, train_textpair

DEFAULT_OUT = Path("artifacts")


@dataclass(frozen=True)
class Trainer:
    params_type: type
    train: Callable[..., dict[str, Any]]  # (version, params, out_dir, data or None) -> report
    read_data: Callable[[argparse.Namespace], Any]  # the parsed options -> the family's table from --data
    description: str
    data_columns: str


def read_skills(args: argparse.Namespace) -> Any:
    threshold = DEFAULT_RATING_THRESHOLD if args.rating_threshold is None else args.rating_threshold
    return read_skill_table(args.data, rating_threshold=threshold, features_file=args.features)


def read_queries(args: argparse.Namespace) -> Any:
    return read_query_table(args.data)


def read_pairs(args: argparse.Namespace) -> Any:
    return read_pair_table(args.data, positive_label=args.positive_label)


FAMILIES: dict[str, Trainer] = {
    "skills": Trainer(
        SkillTrainingParams,
        train_skills,
        read_skills,
        "per-skill StandardScaler + XGBoost classifiers",
        "student_id, skill, numeric feature columns, and rating (1-5) or label (0/1)",
    ),
    "intent": Trainer(
        IntentTrainingParams,
        train_intent,
        read_queries,
        "classic and ensemble intent classifiers, vertical detectors",
        "text, intent, and optionally verticals (names separated by ';')",
    ),
    "textpair": Trainer(
        TextPairTrainingParams,
        train_textpair,
        read_pairs,
        "30 pair features into a logistic regression",
        "text1, text2, label (two values)",
    ),
}
# Options that only mean something with --data: family -> option names.
DATA_ONLY = {"skills": ("rating_threshold", "features"), "textpair": ("positive_label",)}


def summary(family: str, report: dict[str, Any]) -> list[str]:
    if family == "skills":
        return [
            f"  {skill:<18} AUC {m['auc']:.3f}  F1 {m['f1']:.3f}"
            + (f"  r {m['rating_pearson_r']:.3f}" if "rating_pearson_r" in m else "")
            for skill, m in report["skills"].items()
        ]
    if family == "intent":
        lines = [f"  {name:<18} {metrics}" for name, metrics in report["models"].items()]
        return [*lines, f"  ensemble over classic: {report['ensemble_gain']}"]
    return [f"  {report['model']:<18} {report['metrics']}"]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="family", required=True)
    for family, trainer in FAMILIES.items():
        sub = subparsers.add_parser(family, help=trainer.description, description=trainer.description)
        sub.add_argument("--version", required=True, help="semantic version of the models, e.g. v1.0.0")
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
        sub.add_argument(
            "--data",
            type=Path,
            help=f"train on this CSV or Parquet file ({trainer.data_columns}); default: generated demo data",
        )
        if family == "skills":
            sub.add_argument(
                "--rating-threshold",
                type=float,
                help=f"with --data: label 1 is a rating at or above this (default: {DEFAULT_RATING_THRESHOLD:g}); "
                "ignored when the file has a label column",
            )
            sub.add_argument(
                "--features",
                type=Path,
                help='with --data: JSON of the features per skill, {"skill": ["feature", ...]} (an entry may be '
                '{"name", "unit", "minimum", "maximum", "description"}); default: every feature column with a value '
                "among the skill's rows",
            )
        if family == "textpair":
            sub.add_argument(
                "--positive-label",
                help="with --data: the label that means the same meaning (default: the one reading "
                "1/true/yes/same/paraphrase)",
            )
        defaults = trainer.params_type()
        for field in fields(trainer.params_type):
            default = getattr(defaults, field.name)
            option = f"--{field.name.replace('_', '-')}"
            note = " (generated data only)" if is_generated_only(trainer.params_type, field.name) else ""
            if isinstance(default, bool):
                sub.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=note or None)
            else:
                sub.add_argument(option, type=type(default), default=default, help=f"default: {default}{note}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    trainer = FAMILIES[args.family]
    if args.data is None:
        given = [name for name in DATA_ONLY.get(args.family, ()) if getattr(args, name) is not None]
        if given:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            print(f"error: {options} apply to --data only", file=sys.stderr)
            return 2
    params = trainer.params_type(**{field.name: getattr(args, field.name) for field in fields(trainer.params_type)})
    out_dir = args.out / args.family / args.version
    if out_dir.exists() and any(out_dir.iterdir()):
        print(f"error: {out_dir} already holds artifacts; choose another --version or remove it", file=sys.stderr)
        return 2
    started = time.perf_counter()
    source = args.data or "generated data"
    shown = ", ".join(f"{name}={value}" for name, value in recorded_params(params, generated=not args.data).items())
    print(f"training {args.family} {args.version} on {source} ({shown}) ...", flush=True)
    # Trained into a scratch folder beside it, then renamed: a run that fails half-way leaves no half a version.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{args.version}-", dir=out_dir.parent))
    try:
        data = trainer.read_data(args) if args.data else None
        report = trainer.train(args.version, params, scratch, data)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if not (scratch / "report.json").is_file():
            shutil.rmtree(scratch, ignore_errors=True)
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    scratch.chmod(0o755)  # mkdtemp's folder is private
    scratch.rename(out_dir)
    print("\n".join(summary(args.family, report)))
    print(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s (report: {out_dir / 'report.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
