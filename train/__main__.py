"""`python -m train <family> --version v1.0.0 [--seed N] [...]`: demo models trained on generated data.

python -m train skills --version v1.0.0      # 7 StandardScaler + XGBoost classifiers
python -m train intent --version v1.0.0      # classic + ensemble intent classifiers and vertical detectors
python -m train textpair --version v1.0.0    # pair features + logistic regression
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from train.intent import IntentTrainingParams, train_intent
from train.skills import SkillTrainingParams, train_skills
from train.textpair import TextPairTrainingParams, train_textpair

DEFAULT_OUT = Path("artifacts")
FAMILIES: dict[str, tuple[type, Callable[..., dict[str, Any]], str]] = {
    "skills": (SkillTrainingParams, train_skills, "7 per-skill StandardScaler + XGBoost classifiers"),
    "intent": (IntentTrainingParams, train_intent, "classic and ensemble intent classifiers, vertical detectors"),
    "textpair": (TextPairTrainingParams, train_textpair, "30 pair features into a logistic regression"),
}


def summary(family: str, report: dict[str, Any]) -> list[str]:
    if family == "skills":
        return [
            f"  {skill:<18} AUC {m['auc']:.3f}  F1 {m['f1']:.3f}  r {m['rating_pearson_r']:.3f}"
            for skill, m in report["skills"].items()
        ]
    if family == "intent":
        lines = [f"  {name:<18} {metrics}" for name, metrics in report["models"].items()]
        return [*lines, f"  ensemble over classic: {report['ensemble_gain']}"]
    return [f"  {report['model']:<18} {report['metrics']}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="family", required=True)
    for family, (params_type, _, help_text) in FAMILIES.items():
        sub = subparsers.add_parser(family, help=help_text)
        sub.add_argument("--version", required=True, help="semantic version of the models, e.g. v1.0.0")
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
        defaults = params_type()
        for field in fields(params_type):
            default = getattr(defaults, field.name)
            if isinstance(default, bool):
                sub.add_argument(
                    f"--{field.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default
                )
            else:
                sub.add_argument(
                    f"--{field.name.replace('_', '-')}", type=type(default), default=default, help=f"default: {default}"
                )
    args = parser.parse_args(argv)

    params_type, train, _ = FAMILIES[args.family]
    params = params_type(**{field.name: getattr(args, field.name) for field in fields(params_type)})
    out_dir = args.out / args.family / args.version
    if out_dir.exists() and any(out_dir.iterdir()):
        print(f"error: {out_dir} already holds artifacts; choose another --version or remove it", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"training {args.family} {args.version} ({params}) ...", flush=True)
    report = train(args.version, params, out_dir)
    print("\n".join(summary(args.family, report)))
    print(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s (report: {out_dir / 'report.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
