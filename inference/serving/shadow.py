"""Shadow traffic: a configured version scores a sampled copy of the requests after the answer has been sent, and
the agreement between the version that answered and the shadow is recorded per version pair. Every family, through
its scorer's `measure` (a score and a label per answer; skills: the score and high skill; intent: the confidence
and the intent, the same variant answering again; text pair: the probability of the same meaning and the
prediction).

The shadow never answers anyone: its work is scheduled by the service as a task that runs once the response has
gone out (BentoML's background tasks), its failures are logged (once a minute), never raised. Agreement per pair:
the number of comparisons, the mean absolute score difference and the share of equal labels, as Prometheus
counters (all workers add up) and, for this worker, on the dashboard.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.logs import LOGGER_NAME, EveryInterval
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.serving.loader import FamilyLoader, FamilyLookup

if TYPE_CHECKING:
    from inference.serving.pipeline import Outcome
    from inference.serving.protocol import Scorer
    from inference.settings import Settings

logger = logging.getLogger(LOGGER_NAME)


@dataclass
class Agreement:
    """One (family, answering version, shadow version) pair, as seen by this worker."""

    family: str
    primary: str
    shadow: str
    compared: int = 0
    abs_diff_sum: float = 0.0
    agreed: int = 0

    @property
    def mean_abs_diff(self) -> float:
        return self.abs_diff_sum / self.compared if self.compared else 0.0

    @property
    def agreement(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0


class Shadow:
    """A shadow version of one family: `scorer` is that version's loaded scorer."""

    def __init__(
        self,
        family: str,
        version: str,
        scorer: Scorer[Any, Any],
        *,
        share: float,
        metrics: Metrics | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.family = family
        self.version = version
        self.scorer = scorer
        self.share = share
        self.metrics = metrics or NoMetrics()
        self.pairs: dict[str, Agreement] = {}
        self._sample = sample
        self._log = EveryInterval(60.0)

    def task(self, outcome: Outcome) -> Callable[[], Awaitable[None]] | None:
        """The comparison to run after the response is sent, or None when this request is not sampled (or holds
        nothing to compare). Errors, fallbacks and the shadow version's own answers are not compared."""
        if self.share <= 0 or self._sample() >= self.share:
            return None
        pairs = [
            (request, answer)
            for request, answer in zip(outcome.requests, outcome.answers, strict=True)
            if (measure := self.scorer.measure(answer)) is not None and measure.version != self.version
        ]
        if not pairs:
            return None

        async def compare() -> None:
            try:
                await self._compare(pairs)
            except Exception as err:  # the shadow must never hurt: log (once a minute) and go on
                held_back = self._log.allow()
                if held_back is not None:
                    logger.warning(
                        "shadow %s %s failed: %s: %s (%d more since)",
                        self.family,
                        self.version,
                        type(err).__name__,
                        err,
                        held_back,
                    )

        return compare

    async def _compare(self, pairs: list[tuple[Any, Any]]) -> None:
        again = await self.scorer.score_many([request for request, _ in pairs])
        by_primary: dict[str, list[tuple[float, float, object, object]]] = {}
        for (_, answer), repeated in zip(pairs, again, strict=True):
            primary, shadowed = self.scorer.measure(answer), self.scorer.measure(repeated)
            if primary is not None and shadowed is not None:
                figure = (primary.score, shadowed.score, primary.label, shadowed.label)
                by_primary.setdefault(primary.version, []).append(figure)
        for primary_version, figures in by_primary.items():
            self.record(primary_version, figures)

    def record(self, primary: str, figures: list[tuple[float, float, object, object]]) -> None:
        pair = self.pairs.setdefault(primary, Agreement(self.family, primary, self.version))
        abs_diff = sum(abs(first - second) for first, second, _, _ in figures)
        agreed = sum(first_label == second_label for _, _, first_label, second_label in figures)
        pair.compared += len(figures)
        pair.abs_diff_sum += abs_diff
        pair.agreed += agreed
        self.metrics.shadow(self.family, primary, self.version, len(figures), abs_diff, agreed)


def load_shadows(settings: Settings, lookup: FamilyLookup, metrics: Metrics) -> dict[str, Shadow]:
    """The configured shadow versions, loaded; a family whose shadow cannot load serves without one."""
    # The shadow's models load without the service's metrics: its batches and any intent fallback inside it are not
    # the service's answers and must not move their figures or alerts; what it is for is counted by `Shadow`.
    loader = FamilyLoader(settings, lookup)
    shadows: dict[str, Shadow] = {}
    for family, wanted in settings.shadow.items():
        if family not in settings.families:
            logger.error("shadow version %s of %s ignored: this server does not serve %s", wanted, family, family)
            continue
        try:
            version = loader.resolve(family, wanted)
            scorer = loader.load(family, version)
        except Exception as err:
            logger.error("shadow version %s of %s not loaded, serving without a shadow: %s", wanted, family, err)
            continue
        shadows[family] = Shadow(family, version, scorer, share=settings.shadow_share, metrics=metrics)
        logger.info(
            "shadow: %s %s scores %.0f%% of requests after they are answered",
            family,
            version,
            100 * settings.shadow_share,
        )
    return shadows
