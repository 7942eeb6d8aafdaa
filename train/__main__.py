"""`python -m train skills --version v1.0.0 [--seed N] [--n-students N] [--n-estimators N] ...`"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from train.skills import SkillTrainingParams, train_skills

DEFAULT_OUT = Path("artifacts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Train demo models on generated data.")
    families = parser.add_subparsers(dest="family", required=True)
    skills = families.add_parser("skills", help="7 per-skill StandardScaler + XGBoost classifiers")
    skills.add_argument("--version", required=True, help="semantic version of the models, e.g. v1.0.0")
    skills.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact root (default: artifacts/)")
    defaults = SkillTrainingParams()
    for field in fields(SkillTrainingParams):
        skills.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
            help=f"default: {getattr(defaults, field.name)}",
        )
    args = parser.parse_args(argv)

    params = SkillTrainingParams(**{field.name: getattr(args, field.name) for field in fields(SkillTrainingParams)})
    out_dir = args.out / "skills" / args.version
    if out_dir.exists() and any(out_dir.iterdir()):
        print(f"error: {out_dir} already holds artifacts; choose another --version or remove it", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"training skills {args.version} on {params.n_students} students (seed {params.seed}) ...", flush=True)
    report = train_skills(args.version, params, out_dir)
    for skill, metrics in report["skills"].items():
        print(f"  {skill:<18} AUC {metrics['auc']:.3f}  F1 {metrics['f1']:.3f}  r {metrics['rating_pearson_r']:.3f}")
    print(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s (report: {out_dir / 'report.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
