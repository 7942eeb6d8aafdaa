"""The guard: a cost or latency spike of a variant lowers its traffic share by itself, within bounds an operator
sets. `inference.app.build` sets one on the intent ensemble (INFERENCE_ENSEMBLE_GUARD, on by default).

Every CHECK_EVERY_S each worker measures the variant's recent requests: what they cost (the cost meter's charges,
inference/monitoring/cost.py) and their P95 latency (the observer's), over the last
INFERENCE_ENSEMBLE_GUARD_WINDOW_S and only since the share last changed (figures taken under another share say
nothing of this one). When either is over its ceiling with at least INFERENCE_ENSEMBLE_GUARD_MIN_ANSWERS requests
behind it, the rollout percentage is multiplied by INFERENCE_ENSEMBLE_GUARD_STEP, never below
INFERENCE_ENSEMBLE_GUARD_FLOOR_PERCENTAGE, and never within INFERENCE_ENSEMBLE_GUARD_COOLDOWN_S of the share's last
change, whoever made it (an operator's change gets the same grace). The guard never raises the share (an operator
does: PUT /admin/intent/ensemble) and never touches the flag's other fields.

The change is written as an admin change is, through the control store, so every worker of every replica applies
it, and the audit records it by `guard` with the reason, the figure and the ceiling. One worker acts per change:
the write is a compare-and-set on the store's revision, made only while the stored share is still the one the
worker measured under, so a worker that finds it lowered already (by another worker) writes nothing; and each
worker's cooldown starts when it sees the share change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference.errors import InferenceError
from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import count_guard_action
from inference.monitoring.observer import Observer
from inference.serving.control import ControlConflict
from inference.serving.manager import ModelManager

logger = logging.getLogger(LOGGER_NAME)

GUARD_ACTOR = "guard"  # who the audit says made the change
CHECK_EVERY_S = 5.0
SHARE_FIELD = "rollout_percentage"
COST, LATENCY = "cost", "latency"


@dataclass(frozen=True)
class GuardLimits:
    """The bounds an operator sets (INFERENCE_ENSEMBLE_GUARD_*)."""

    cost_per_1k: float  # ceiling on what 1,000 requests cost, in the currency of the cost prices
    p95_ms: float  # ceiling on the P95 latency
    floor_percentage: float  # the share is never lowered below this
    step: float  # each action multiplies the share by this (0 < step < 1)
    cooldown_s: float
    window_s: float
    min_answers: int


@dataclass(frozen=True)
class Measured:
    """A variant's recent figures: the cost of the requests charged, and the P95 of the requests timed."""

    dollars: float
    charged: int
    p95_ms: float
    timed: int

    def cost_per_1k(self) -> float | None:
        return 1000 * self.dollars / self.charged if self.charged else None


@dataclass(frozen=True)
class Lowering:
    """What the guard does: the share from `share` to `to`, because `reason`'s figure is over its ceiling."""

    share: float
    to: float
    reason: str  # COST or LATENCY
    measured: float
    ceiling: float
    requests: int  # behind the figure

    def describe(self) -> str:
        """The reason as the audit records it."""
        if self.reason == COST:
            figure, ceiling = f"{self.measured:.4g} per 1k requests", f"{self.ceiling:g}"
        else:
            figure, ceiling = f"P95 {self.measured:.0f} ms", f"{self.ceiling:g} ms"
        return (
            f"{self.reason} {figure} over {self.requests} requests, above the ceiling {ceiling}: "
            f"{SHARE_FIELD} {self.share:g} -> {self.to:g}"
        )


def decide(share: float, measured: Measured, limits: GuardLimits, *, since_change_s: float | None) -> Lowering | None:
    """Lower `share` by a step when its cost or its P95 latency is over the ceiling with enough requests behind
    the figure, the floor is below it, and the share did not change within the cooldown (`since_change_s`: None
    when it never changed); otherwise nothing. Cost is judged first."""
    if since_change_s is not None and since_change_s < limits.cooldown_s:
        return None
    to = max(limits.floor_percentage, round(share * limits.step, 2))
    if to >= share:  # at or under the floor already
        return None
    cost = measured.cost_per_1k()
    if cost is not None and measured.charged >= limits.min_answers and cost > limits.cost_per_1k:
        return Lowering(share, to, COST, cost, limits.cost_per_1k, measured.charged)
    if measured.timed >= limits.min_answers and measured.p95_ms > limits.p95_ms:
        return Lowering(share, to, LATENCY, measured.p95_ms, limits.p95_ms, measured.timed)
    return None


class Guard:
    """One worker's guard of one variant's share, held in a family's runtime control (intent: the `ensemble`
    flag's rollout_percentage, the variant's requests being the segment `ensemble`)."""

    def __init__(
        self,
        manager: ModelManager,
        observer: Observer,
        limits: GuardLimits,
        *,
        family: str,
        segment: str,
        control: str,
        clock: Callable[[], float] = time.monotonic,  # the cost meter's and the observer's clock
    ) -> None:
        self.manager = manager
        self.observer = observer
        self.limits = limits
        self.family = family
        self.segment = segment
        self.control = control
        self.clock = clock
        self._share: float | None = None  # the share this worker applied at its last check
        self._measuring_since = clock()  # figures count from here: the start, or the share's last change seen
        self._changed_at: float | None = None  # when this worker last saw the share change
        for reason in (COST, LATENCY):
            count_guard_action(family, segment, reason, count=0)

    async def run(self) -> None:
        """Runs for the worker's life; a failed check is logged and made again next time."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                await self.check()
            except InferenceError as err:  # the control store away: nothing was changed
                logger.warning("guard: %s", err.message)
            except Exception:
                logger.exception("guard check failed; checking again in %.0f s", CHECK_EVERY_S)

    def measure(self, since: float) -> Measured:
        """The variant's figures since `since` (on the guard's clock)."""
        dollars, charged = 0.0, 0
        if self.observer.cost is not None:
            dollars, charged = self.observer.cost.spent(self.family, self.segment, since=since)
        p95_ms, timed = self.observer.segment_p95(self.family, self.segment, since=since)
        return Measured(dollars, charged, p95_ms, timed)

    async def check(self) -> Lowering | None:
        """Measure, decide, and lower the share when the figures say so; what was done (None: nothing)."""
        flag = self.manager.controls().get(self.family, {}).get(self.control)
        if not flag or not flag.get("enabled", True):
            return None
        share, now = float(flag[SHARE_FIELD]), self.clock()
        if share != self._share:
            if self._share is not None:  # changed since the last check, by anyone
                self._measuring_since = self._changed_at = now
            self._share = share
        measured = self.measure(max(now - self.limits.window_s, self._measuring_since))
        since_change_s = None if self._changed_at is None else now - self._changed_at
        lowering = decide(share, measured, self.limits, since_change_s=since_change_s)
        if lowering is None:
            return None
        revision, stored = await self.manager.stored_control(self.family, self.control)
        if float(stored.get(SHARE_FIELD, share)) != share:
            return None  # changed meanwhile (another worker acted): judged again under the new share
        try:
            await self.manager.set_control(
                self.family,
                self.control,
                {SHARE_FIELD: lowering.to},
                actor=GUARD_ACTOR,
                based_on=revision,
                reason=lowering.describe(),
            )
        except ControlConflict:
            return None  # another change came first
        count_guard_action(self.family, self.segment, lowering.reason)
        logger.warning("guard lowered the %s share of %s: %s", self.segment, self.family, lowering.describe())
        self._share, self._measuring_since, self._changed_at = lowering.to, now, now
        return lowering
