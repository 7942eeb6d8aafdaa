"""Choosing a variant by weight: sticky per caller id (the same id always lands on the same variant for the
same weights and salt), random for anonymous callers. Pure functions; the weights come from settings."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping


def sticky_point(key: str, salt: str) -> float:
    """A point in [0, 1) fixed by `key` and `salt`: SHA-256, so ids spread evenly whatever their shape."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_by_weight(weights: Mapping[str, float], point: float) -> str:
    """The variant whose share of the cumulative weights holds `point` (in [0, 1)); zero weights never win."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    threshold = point * total
    cumulative = 0.0
    last_positive = ""
    for name, weight in weights.items():
        if weight <= 0:
            continue
        cumulative += weight
        last_positive = name
        if threshold < cumulative:
            return name
    return last_positive  # only reachable through floating-point rounding at point -> 1


def choose_variant(
    weights: Mapping[str, float], *, caller_id: str | None, salt: str, rng: random.Random | None = None
) -> str:
    point = sticky_point(caller_id, salt) if caller_id else (rng or random).random()
    return pick_by_weight(weights, point)
