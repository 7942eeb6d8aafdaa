"""Known vulnerabilities in the locked dependencies: `python -m deploy.audit` (also `make audit`).

Runs pip-audit over requirements.lock (the exact set the service installs) against PyPI's vulnerability data.
Findings listed in deploy/audit-accepted.txt (an id, then the reason it is accepted) are reported but do not fail;
any other finding fails (exit 1). When the vulnerability data cannot be reached (a mirror of the package index
without it, no network), pip-audit can look nothing up: the audit says so plainly, AUDIT SKIPPED with the
reason, and exits 0 unless --require is given (exit 3), so an air-gapped build is not mistaken for a clean one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
ACCEPTED = Path(__file__).resolve().parent / "audit-accepted.txt"
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


@dataclass
class Audit:
    audited: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # package -> why it could not be looked up
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)  # package, version, id, fixed in

    @property
    def looked_up_nothing(self) -> bool:
        return self.audited == 0 and bool(self.skipped)


def read_audit(report: dict) -> Audit:
    """pip-audit's JSON report -> what was audited, skipped and found."""
    audit = Audit()
    for dependency in report.get("dependencies", []):
        name = dependency["name"]
        if "skip_reason" in dependency:
            audit.skipped[name] = dependency["skip_reason"]
            continue
        audit.audited += 1
        for vulnerability in dependency.get("vulns", []):
            fixed = ", ".join(vulnerability.get("fix_versions", [])) or "no fix yet"
            audit.findings.append((name, dependency["version"], vulnerability["id"], fixed))
    return audit


def accepted_ids(path: Path = ACCEPTED) -> dict[str, str]:
    """`ID  reason...` per line; blank lines and # comments ignored. An entry without a reason is an error."""
    accepted = {}
    if not path.exists():
        return accepted
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        vulnerability, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"{path.name}:{number}: {vulnerability} has no reason; say why it is accepted")
        accepted[vulnerability] = reason.strip()
    return accepted


def verdict(audit: Audit, accepted: dict[str, str], *, require: bool) -> tuple[list[str], int]:
    lines = []
    if audit.looked_up_nothing:
        reasons = sorted(set(audit.skipped.values()))
        lines.append(
            f"AUDIT SKIPPED: none of the {len(audit.skipped)} locked packages could be looked up in the vulnerability "
            f"data from this machine (e.g. {reasons[0]}). Run `make audit` where PyPI's JSON API is reachable."
        )
        return lines, 3 if require else 0
    failing = 0
    for name, version, vulnerability, fixed in audit.findings:
        if vulnerability in accepted:
            lines.append(f"accepted  {name} {version}: {vulnerability} (fixed in {fixed}): {accepted[vulnerability]}")
        else:
            failing += 1
            lines.append(f"FOUND     {name} {version}: {vulnerability} (fixed in {fixed})")
    for name, reason in sorted(audit.skipped.items()):
        lines.append(f"not audited  {name}: {reason}")
    lines.append(
        f"{audit.audited} packages audited, {len(audit.skipped)} not audited, {len(audit.findings)} findings "
        f"({failing} not accepted)"
    )
    return lines, 1 if failing else 0


def run_pip_audit(lock: Path) -> dict:
    command = [
        str(PIP_AUDIT),
        "-r",
        str(lock),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if not run.stdout.strip():  # pip-audit could not even start (network error on every lookup, bad lock file)
        raise RuntimeError(f"pip-audit failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--require", action="store_true", help="exit 3 when nothing could be looked up")
    args = parser.parse_args(argv)
    try:
        report = run_pip_audit(args.lock)
    except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired) as err:
        print(f"AUDIT SKIPPED: {err}")
        return 3 if args.require else 0
    lines, code = verdict(read_audit(report), accepted_ids(), require=args.require)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
