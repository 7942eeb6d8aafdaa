"""The generated queries and text pairs have the structure the text models are meant to learn."""

from collections import Counter

from train.data.pairs import generate_pairs
from train.data.queries import AMBIGUOUS_TEMPLATES, INTENTS, VERTICALS, generate_queries


def test_same_seed_same_queries_another_seed_others():
    assert generate_queries(300, seed=1) == generate_queries(300, seed=1)
    assert generate_queries(300, seed=1).texts != generate_queries(300, seed=2).texts


def test_queries_cover_every_intent_and_vertical_with_some_multi_label_and_noise():
    sample = generate_queries(6000, seed=3)
    intents = Counter(sample.intents)
    assert set(intents) == set(INTENTS) and len(INTENTS) >= 6
    assert min(intents.values()) > 600  # roughly balanced
    assert set().union(*sample.verticals) == set(VERTICALS) and len(VERTICALS) >= 6
    multi = sum(len(labels) > 1 for labels in sample.verticals) / len(sample.verticals)
    assert 0.08 < multi < 0.2
    assert any(text.isupper() for text in sample.texts)  # roughened casing


def test_ambiguous_templates_carry_more_than_one_label():
    sample = generate_queries(6000, seed=4)
    reviews = {intent for text, intent in zip(sample.texts, sample.intents, strict=True) if text.endswith(" reviews")}
    assert reviews == set(AMBIGUOUS_TEMPLATES[0][1])


def test_pairs_are_balanced_and_near_misses_share_most_words():
    sample = generate_pairs(4000, seed=5)
    share = sum(sample.labels) / len(sample.labels)
    assert 0.45 < share < 0.55
    negated = [pair for pair, label in zip(sample.pairs, sample.labels, strict=True) if " not " in " ".join(pair)]
    assert negated and all(
        label == 0 for pair, label in zip(sample.pairs, sample.labels, strict=True) if pair in negated
    )
    assert generate_pairs(50, seed=5) == generate_pairs(50, seed=5)
