"""Variant routing: weighted, sticky per caller id, spread evenly, and zero weights never chosen."""

import random
from collections import Counter

import pytest

from inference.serving.routing import choose_variant, pick_by_weight, sticky_point

SPLIT = {"classic": 90.0, "ensemble": 10.0}


def test_a_caller_id_always_gets_the_same_variant():
    for index in range(200):
        first = choose_variant(SPLIT, caller_id=f"user-{index}", salt="s")
        assert all(choose_variant(SPLIT, caller_id=f"user-{index}", salt="s") == first for _ in range(3))


def test_the_split_holds_over_2000_ids_within_tolerance():
    counts = Counter(choose_variant(SPLIT, caller_id=f"user-{index}", salt="s") for index in range(2000))
    assert counts["ensemble"] / 2000 == pytest.approx(0.10, abs=0.02)


def test_another_salt_reshuffles_the_assignment():
    ids = [f"user-{index}" for index in range(500)]
    first = [choose_variant(SPLIT, caller_id=i, salt="a") for i in ids]
    second = [choose_variant(SPLIT, caller_id=i, salt="b") for i in ids]
    assert first != second


def test_anonymous_callers_follow_the_split_at_random():
    rng = random.Random(7)
    counts = Counter(choose_variant(SPLIT, caller_id=None, salt="s", rng=rng) for _ in range(4000))
    assert counts["ensemble"] / 4000 == pytest.approx(0.10, abs=0.02)


def test_zero_weights_never_win_and_points_span_zero_to_one():
    assert {pick_by_weight({"a": 0.0, "b": 1.0}, point / 100) for point in range(100)} == {"b"}
    assert pick_by_weight({"a": 1.0, "b": 0.0}, 0.999999999) == "a"
    points = [sticky_point(str(index), "s") for index in range(1000)]
    assert min(points) >= 0 and max(points) < 1 and 0.45 < sum(points) / 1000 < 0.55
    with pytest.raises(ValueError, match="positive"):
        pick_by_weight({"a": 0.0}, 0.5)
