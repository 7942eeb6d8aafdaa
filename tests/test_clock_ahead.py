"""Tests marked `clock` work with dates: rating windows, times in the future, incremental runs by change time. They
pass today and must pass on any later day, so here they run again with the clock a year ahead (libfaketime moves
the clocks of the test process and of every server and tool it starts). A fixed date in such a test, or a window
that only today's date satisfies, fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.utils.needs import unavailable
from tests.utils.servers import PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
AHEAD = timedelta(days=365)


def a_year_ahead() -> dict[str, str]:
    if not LIBFAKETIME.exists():
        unavailable(f"{LIBFAKETIME} is not installed (apt-get install libfaketime)")
    return {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        # The monotonic clock moves by the same offset: timeouts take differences, so they are unaffected, and
        # libfaketime 0.9.10 fails absolute sleeps (time.sleep) when only the wall clock is moved.
        "FAKETIME": f"+{AHEAD.days}d",
    }


def test_the_clock_is_really_moved_for_the_process_and_its_children():
    probe = "import datetime, subprocess, sys; print(datetime.datetime.now(datetime.UTC).timestamp())"
    nested = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {probe!r}])"
    for code in (probe, nested):
        shown = subprocess.run(
            [sys.executable, "-c", code], env=a_year_ahead(), capture_output=True, text=True, check=True
        ).stdout
        seen = datetime.fromtimestamp(float(shown), UTC)
        assert abs(seen - (datetime.now(UTC) + AHEAD)) < timedelta(minutes=5), seen


def test_every_date_sensitive_test_passes_a_year_from_now():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "clock", "-p", "no:cacheprovider", "-q", "-rfE", "tests"],
        cwd=PROJECT_ROOT,
        env=a_year_ahead(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 10, summary
    assert "skipped" not in summary and "failed" not in summary, summary
