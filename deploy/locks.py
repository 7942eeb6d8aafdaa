"""The pinned requirement files read as `{canonical name: version}`: requirements/runtime.txt (what the image installs,
`make lock`) and requirements.lock (the development environment's constraints)."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_IN = ROOT / "requirements" / "runtime.in"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
DEV_LOCK = ROOT / "requirements.lock"


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file, comments and blank lines dropped."""
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def exact_pin(line: str) -> tuple[str, str]:
    """`name[extras]==version` -> (canonical name, version); ValueError for anything but one exact pin."""
    requirement = Requirement(line)
    specifiers = list(requirement.specifier)
    if requirement.url or requirement.marker or len(specifiers) != 1 or specifiers[0].operator != "==":
        raise ValueError(f"{line!r} is not an exact pin (name==version)")
    if "*" in specifiers[0].version:
        raise ValueError(f"{line!r} pins a version range, not a version")
    return canonicalize_name(requirement.name), specifiers[0].version


def read_pins(path: Path) -> dict[str, str]:
    """Every requirement of a fully pinned file; ValueError on a line that is not an exact pin or a repeated name
    with another version."""
    pins: dict[str, str] = {}
    for line in requirement_lines(path):
        name, version = exact_pin(line)
        if pins.setdefault(name, version) != version:
            raise ValueError(f"{path.name}: {name} is pinned to both {pins[name]} and {version}")
    return pins
