"""Times for test data, always relative to now: a suite run a year from today sees the same ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def iso_ago(**delta: float) -> str:
    """An ISO 8601 UTC timestamp `delta` (timedelta keywords) before now."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def iso_ahead(**delta: float) -> str:
    """An ISO 8601 UTC timestamp `delta` (timedelta keywords) after now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")
