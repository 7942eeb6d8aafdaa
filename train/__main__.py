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
from dataclasses import fields
from pathlib import Path

from inference.families.registry import attribute, configured
from inference.progress import on_terminal, progress_for
from train.datasets import DataError
from train.params import is_generated_only, recorded_params
from train.trainer import Trainer

DEFAULT_OUT = Path("artifacts")


def trainers() -> dict[str, Trainer]:
    """Each registered family's trainer (`FamilySpec.trainer`), by family: the built-in ones and the plug-ins of
    INFERENCE_FAMILY_PLUGINS."""
    return {name: attribute(spec.trainer) for name, spec in configured().items() if spec.trainer}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="family", required=True)
    for family, trainer in trainers().items():
        sub = subparsers.add_parser(family, help=trainer.description, description=trainer.description)
        sub.add_argument("--version", required=True, help="semantic version of the models, e.g. v1.0.0")
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
        sub.add_argument(
            "--data",
            type=Path,
            help=f"train on this CSV or Parquet file ({trainer.data_columns}); default: generated demo data",
        )
        trainer.add_options(sub)
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
    trainer = trainers()[args.family]
    if args.data is None:
        given = [name for name in trainer.data_only if getattr(args, name) is not None]
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
        with progress_for(
            description=f"training {args.family} {args.version}",
            total=None,
            unit="models",
            interval_s=0,  # a line per model: a few, each seconds or minutes long
            bar=on_terminal(),
            emit=lambda line: print(f"trained {line}", file=sys.stderr, flush=True),
        ) as progress:
            report = trainer.train(args.version, params, scratch, data, progress=progress)
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
    print("\n".join(trainer.summary(report)))
    print(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s (report: {out_dir / 'report.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
