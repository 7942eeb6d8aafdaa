"""Fault injection for drills and tests: make a named model fail or slow down, on purpose, from settings.

`INFERENCE_INJECT_FAULTS='{"intent-ensemble": "fail", "textpair": "delay_ms=200"}'` makes every call of the
intent ensemble raise and every text-pair call wait 200 ms first. Empty (the default) injects nothing, and a
model without an entry is never touched. The service logs a warning at start when any fault is configured.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from inference.errors import InferenceError

_DELAY = re.compile(r"^delay_ms=(\d+(?:\.\d+)?)$")
FAIL = "fail"


class InjectedFault(InferenceError):
    """A failure injected on purpose (INFERENCE_INJECT_FAULTS), for tests and drills."""

    code = "injected_fault"


@dataclass(frozen=True)
class Fault:
    fail: bool = False
    delay_s: float = 0.0


def parse_fault(spec: str) -> Fault:
    """`fail` or `delay_ms=<number>`; anything else is a ValueError naming the accepted forms."""
    if spec == FAIL:
        return Fault(fail=True)
    match = _DELAY.match(spec)
    if match:
        return Fault(delay_s=float(match.group(1)) / 1000)
    raise ValueError(f"unknown fault {spec!r}; expected 'fail' or 'delay_ms=<milliseconds>'")


class FaultInjector:
    def __init__(self, specs: Mapping[str, str] | None = None) -> None:
        self.faults = {model: parse_fault(spec) for model, spec in (specs or {}).items()}

    def before_call(self, model: str) -> None:
        """Called by a batch function before it runs `model` (on the batch thread: a delay blocks only it)."""
        fault = self.faults.get(model)
        if fault is None:
            return
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.fail:
            raise InjectedFault(f"{model}: failure injected by INFERENCE_INJECT_FAULTS")
