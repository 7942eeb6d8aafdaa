"""The dependency audit: its verdicts on pip-audit reports, and a real run over requirements.lock, which must either
audit or say plainly that it could not (the vulnerability data is out of reach from some machines)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deploy.audit import accepted_ids, read_audit, verdict
from tests.utils.servers import PROJECT_ROOT

CLEAN = {"dependencies": [{"name": "httpx", "version": "0.28.1", "vulns": []}]}
FOUND = {
    "dependencies": [
        {"name": "httpx", "version": "0.28.1", "vulns": []},
        {"name": "jinja2", "version": "3.1.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.1.5"]}]},
    ]
}
UNREACHABLE = {
    "dependencies": [
        {
            "name": name,
            "version": "1.0",
            "skip_reason": f"Dependency not found on PyPI and could not be audited: {name}",
        }
        for name in ("httpx", "numpy")
    ]
}


def test_a_clean_report_passes():
    lines, code = verdict(read_audit(CLEAN), {}, require=True)
    assert code == 0 and lines[-1].startswith("1 packages audited, 0 not audited, 0 findings")


def test_a_finding_fails_unless_accepted_with_a_reason():
    lines, code = verdict(read_audit(FOUND), {}, require=False)
    assert code == 1 and "FOUND     jinja2 3.1.0: GHSA-xxxx (fixed in 3.1.5)" in lines
    lines, code = verdict(read_audit(FOUND), {"GHSA-xxxx": "templates are ours only"}, require=False)
    assert code == 0 and any(
        line.startswith("accepted  jinja2") and "templates are ours only" in line for line in lines
    )


def test_an_audit_that_looked_nothing_up_says_skipped_and_fails_only_when_required():
    lines, code = verdict(read_audit(UNREACHABLE), {}, require=False)
    assert code == 0 and lines[0].startswith("AUDIT SKIPPED: none of the 2 locked packages could be looked up")
    assert verdict(read_audit(UNREACHABLE), {}, require=True)[1] == 3


def test_an_accepted_entry_needs_a_reason(tmp_path):
    path = tmp_path / "accepted.txt"
    path.write_text("# comment\nGHSA-1 fixed upstream, not reachable here\n\nGHSA-2\n")
    with pytest.raises(ValueError, match="GHSA-2 has no reason"):
        accepted_ids(path)
    path.write_text("GHSA-1 fixed upstream, not reachable here  # until 2027-01\n")
    assert accepted_ids(path) == {"GHSA-1": "fixed upstream, not reachable here"}


def test_the_locked_dependencies_are_audited_or_the_skip_is_said_plainly():
    run = subprocess.run(
        [sys.executable, "-m", "deploy.audit"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    audited = "packages audited" in run.stdout.splitlines()[-1]
    assert audited or run.stdout.startswith("AUDIT SKIPPED: "), run.stdout[-2000:]
