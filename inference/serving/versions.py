"""Model versions side by side: which versions of a family are loaded, which is stable, how traffic splits.

A `VersionedFamily` is immutable: a weight change, a reload or a rollback builds a new one and the service
swaps the reference in one assignment, so a request that already holds the old one finishes on it and no
item is ever answered by two versions' state (under split weights, one batch may hold items of several).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from inference.errors import InvalidHeader, InvalidRequest
from inference.serving.routing import choose_variant

Scorer = TypeVar("Scorer")
# The request header that forces a version (inference.http.paths), and its older name, still read.
VERSION_HEADERS = "X-Model-Version (or X-Model-Variant)"


@dataclass(frozen=True)
class TrafficSplit:
    """How one family's traffic splits between its versions: every version with a positive weight gets that share;
    `stable` is where a rollback sends everything. The settings and the admin API call a family's split its
    "route" (INFERENCE_ROUTES, /admin/routes): those names are the API's and stay."""

    stable: str
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weights:
            object.__setattr__(self, "weights", {self.stable: 100.0})
        if any(weight < 0 for weight in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise InvalidRequest("weights: must be non-negative with a positive sum")

    def versions(self) -> set[str]:
        return {self.stable, *self.weights}

    def rolled_back(self) -> TrafficSplit:
        return TrafficSplit(stable=self.stable, weights={self.stable: 100.0})

    def to_dict(self) -> dict[str, object]:
        return {"stable": self.stable, "weights": dict(self.weights)}


@dataclass(frozen=True)
class VersionedFamily(Generic[Scorer]):
    family: str
    scorers: Mapping[str, Scorer]
    route: TrafficSplit
    salt: str = "variants-v1"

    def __post_init__(self) -> None:
        missing = sorted(self.route.versions() - set(self.scorers))
        if missing:
            raise ValueError(f"{self.family}: route names versions that are not loaded: {missing}")

    def choose(
        self, *, caller_id: str | None, forced: str | None = None, rng: random.Random | None = None
    ) -> tuple[str, Scorer]:
        """The version a caller gets: the forced one (header) if loaded, else sticky by caller id by weight."""
        if forced is not None:
            if forced not in self.scorers:
                raise InvalidHeader(
                    f"{VERSION_HEADERS}: version {forced!r} of {self.family} is not loaded; loaded: "
                    f"{', '.join(sorted(self.scorers))}"
                )
            return forced, self.scorers[forced]
        weights = {version: weight for version, weight in self.route.weights.items() if weight > 0}
        if len(weights) == 1:  # one version takes all traffic: no hashing needed
            (version,) = weights
        else:
            version = choose_variant(weights, caller_id=caller_id, salt=f"{self.salt}:{self.family}", rng=rng)
        return version, self.scorers[version]
