"""What a test needs from the machine: a tool, a service, a download. Missing on a laptop, the test skips with the
reason printed; missing in CI (CI=true), it fails, as .ci/run must provide everything the suite needs."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """A failure in CI, a skip (with the reason printed) elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must provide it)")
    print(f"skipped: {reason}")
    pytest.skip(reason)


def tool(name: str, install: str) -> str:
    """The path of the command `name`; `install` says how to get it."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed ({install})")
    return found
