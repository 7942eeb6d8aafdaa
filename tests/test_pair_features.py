"""The 30 pair features: documented, in a fixed order, and measuring what their names say; the same values as the
quadratic implementation the stored models were trained with, for Python work that grows linearly with the texts."""

import itertools
import random
import string
import sys
import time
from difflib import SequenceMatcher

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq, Levenshtein

from inference.families.textpair import features as pair_features
from inference.families.textpair.features import (
    N_PAIR_FEATURES,
    NEGATIONS,
    PAIR_FEATURES,
    STOP_WORDS,
    PairFeaturizer,
    _char_ngrams,
    _jaccard,
    _ngrams,
    _numbers,
    _ratio,
    lexical_features,
    tokens,
)
from inference.schemas import MAX_TEXT_CHARS_DEFAULT
from train.data.pairs import generate_pairs


@pytest.fixture(scope="module")
def featurizer():
    return PairFeaturizer().fit(generate_pairs(500, seed=1).pairs)


def features(featurizer, first, second):
    return dict(zip(PAIR_FEATURES, featurizer.transform([(first, second)])[0], strict=True))


def test_thirty_named_features_in_a_fixed_order(featurizer):
    assert N_PAIR_FEATURES == 30
    matrix = featurizer.transform(generate_pairs(40, seed=2).pairs)
    assert matrix.shape == (40, 30) and np.isfinite(matrix).all()
    assert list(featurizer.get_feature_names_out()) == list(PAIR_FEATURES)
    assert len(lexical_features("a b", "b a")) == 28


def test_identical_texts_are_fully_similar(featurizer):
    same = features(featurizer, "the doctor fixed the broken car", "the doctor fixed the broken car")
    for name in ("word_jaccard", "char_similarity", "same_word_bag", "shared_order_agreement", "length_ratio_words"):
        assert same[name] == pytest.approx(1.0), name
    assert same["tfidf_word_cosine"] == pytest.approx(1.0)
    assert same["word_edit_distance"] == 0 and same["negation_mismatch"] == 0


def test_swapped_roles_keep_the_words_but_break_the_order(featurizer):
    swapped = features(featurizer, "the student helped the teacher", "the teacher helped the student")
    assert swapped["same_word_bag"] == 1 and swapped["word_jaccard"] == 1
    assert swapped["shared_order_agreement"] < 1 and swapped["word_edit_distance"] > 0


def test_numbers_and_negation_are_noticed(featurizer):
    numbers = features(featurizer, "she bought two tickets", "she bought three tickets")
    assert numbers["number_mismatch"] == 1 and numbers["number_jaccard"] == 0
    negated = features(featurizer, "he did not finish the exam", "he finished the exam")
    assert negated["negation_mismatch"] == 1
    no_numbers = features(featurizer, "hello there", "hello world")
    assert no_numbers["number_jaccard"] == 1 and no_numbers["number_mismatch"] == 0


def test_every_feature_is_documented_in_the_generated_features_doc():
    from tools.docs import FEATURES_DOC

    text = FEATURES_DOC.read_text()
    assert all(f"`{name}`" in text for name in PAIR_FEATURES)


# The implementation the stored models were trained with: quadratic (SequenceMatcher, every pair of shared words)
# and cubic (rapidfuzz's partial_ratio scoring each end alignment on its own) at the maximum text length.


def reference_order_agreement(first: list[str], second: list[str]) -> float:
    position = {}
    for index, word in enumerate(second):
        position.setdefault(word, index)
    shared = [position[word] for word in dict.fromkeys(first) if word in position]
    pairs = [(a, b) for i, a in enumerate(shared) for b in shared[i + 1 :]]
    return sum(a < b for a, b in pairs) / len(pairs) if pairs else 1.0


def reference_longest_common_substring(first: str, second: str) -> int:
    return SequenceMatcher(None, first, second, autojunk=False).find_longest_match().size


def reference_lexical_features(first: str, second: str) -> list[float]:
    words_a, words_b = tokens(first), tokens(second)
    set_a, set_b = set(words_a), set(words_b)
    shared = set_a & set_b
    longer_words = max(len(words_a), len(words_b))
    numbers_a, numbers_b = _numbers(words_a), _numbers(words_b)
    match = SequenceMatcher(None, first.lower(), second.lower(), autojunk=False).find_longest_match()
    return [
        _jaccard(set_a, set_b),
        _ratio(len(shared), min(len(set_a), len(set_b))),
        _ratio(len(shared), max(len(set_a), len(set_b))),
        _ratio(2 * len(shared), len(set_a) + len(set_b)),
        _jaccard(set_a - STOP_WORDS, set_b - STOP_WORDS),
        _jaccard(_ngrams(words_a, 2), _ngrams(words_b, 2)),
        _jaccard(_ngrams(words_a, 3), _ngrams(words_b, 3)),
        _jaccard(_char_ngrams(first, 3), _char_ngrams(second, 3)),
        _jaccard(_char_ngrams(first, 4), _char_ngrams(second, 4)),
        _ratio(min(len(first), len(second)), max(len(first), len(second))),
        _ratio(min(len(words_a), len(words_b)), longer_words),
        _ratio(abs(len(words_a) - len(words_b)), longer_words),
        fuzz.ratio(first.lower(), second.lower()) / 100,
        fuzz.partial_ratio(first.lower(), second.lower()) / 100,
        fuzz.token_sort_ratio(first, second) / 100,
        fuzz.token_set_ratio(first, second) / 100,
        Levenshtein.normalized_distance(words_a, words_b),
        LCSseq.normalized_similarity(words_a, words_b),
        _ratio(match.size, max(len(first), len(second))),
        float(bool(words_a and words_b) and words_a[0] == words_b[0]),
        float(bool(words_a and words_b) and words_a[-1] == words_b[-1]),
        _jaccard(numbers_a, numbers_b),
        float(numbers_a != numbers_b),
        float(bool(set_a & NEGATIONS) != bool(set_b & NEGATIONS)),
        _ratio(len(set_a - set_b), len(set_a)),
        _ratio(len(set_b - set_a), len(set_b)),
        float(sorted(words_a) == sorted(words_b)),
        reference_order_agreement(words_a, words_b),
    ]


def adversarial_pairs(chars: int) -> dict[str, tuple[str, str]]:
    """Pairs of texts of at most `chars` characters that drive the costly features to their worst case."""
    rng = random.Random(chars)
    demo_text = " ".join(text for pair in generate_pairs(chars // 10 + 10, seed=3).pairs for text in pair)
    text, other_text = demo_text[:chars], demo_text[chars : chars + chars // 2]
    two_letter_words = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=2)]
    distinct = " ".join(two_letter_words)[:chars].rsplit(" ", 1)[0]
    middle = chars // 2
    return {
        "one repeated character": ("a" * chars, "a" * chars),
        "near-equal texts": (text, text[:middle] + "#" + text[middle + 1 :]),
        "many distinct words, reversed": (distinct, " ".join(reversed(distinct.split()))),
        "random letters": tuple("".join(rng.choices("ab ", k=chars)) for _ in range(2)),
        "half-length text against a longer one": (other_text, text),
        "two-thirds text against a periodic one": ("".join(rng.choices("ab ", k=chars * 2 // 3)), "ab " * (chars // 3)),
        "unicode": tuple("".join(chr(rng.randrange(0x4E00, 0x4E00 + 300)) for _ in range(chars)) for _ in range(2)),
    }


def test_features_equal_the_reference_on_the_demo_pairs():
    pairs = generate_pairs(3000, seed=11).pairs
    assert [lexical_features(*pair) for pair in pairs] == [reference_lexical_features(*pair) for pair in pairs]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("", ""),
        ("", "a"),
        ("!!", "?? ..."),  # no words at all
        ("İstanbul", "i̇stanbul"),  # "İ".lower() is two characters
        ("STRASSE ẞ", "straße ß"),
        ("a" * 65, "a" * 65),  # just past rapidfuzz's one-word needle
        ("ab" * 60 + "x", "ab" * 200),
        ("the end of the text " * 5, "a longer text ends with " + "the end of the text " * 5),
        ("the start of the text " * 5, "the start of the text " * 5 + "and more after it"),
        ("the middle of the text " * 4, "(" + "the middle of the text " * 4 + ")"),
        ("don't stop", "do not stop"),
    ],
)
def test_features_equal_the_reference_at_the_edges(first, second):
    assert lexical_features(first, second) == reference_lexical_features(first, second)
    assert lexical_features(second, first) == reference_lexical_features(second, first)


alphabets = st.sampled_from(
    [
        "a",
        "ab",
        "ab ",
        "abc .",
        string.ascii_letters + " ,'",
        "a\u0130\u0131\u00df\u1e9e e\u0301 1",
        "\u5b57\u6587 z\U0001f600",
    ]
)
# Lengths drawn explicitly: left to itself, hypothesis keeps texts short, below rapidfuzz's one-word needle.
texts = st.tuples(alphabets, st.integers(0, 250)).flatmap(
    lambda drawn: st.text(alphabet=drawn[0], min_size=drawn[1], max_size=drawn[1])
)


@st.composite
def text_pairs(draw) -> tuple[str, str]:
    first = draw(texts)
    kind = draw(st.sampled_from(["independent", "edited", "inside", "periodic"]))
    if kind == "independent":
        return first, draw(texts)
    if kind == "edited":  # a few characters changed: long shared runs and near-equal lengths
        edited = list(first)
        for _ in range(draw(st.integers(0, 4))):
            if edited:
                edited[draw(st.integers(0, len(edited) - 1))] = draw(st.sampled_from("aZ \u00e9"))
        return first, "".join(edited)
    if kind == "inside":  # the whole of one inside the other, often at one end
        ends = st.one_of(st.just(""), texts)
        return first, draw(ends) + first + draw(ends)
    period = draw(st.text(alphabet="ab ", min_size=1, max_size=4))  # every window alike
    return first, (period * 400)[: draw(st.integers(len(first), 2 * len(first) + 1))]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pair=text_pairs(), swap=st.booleans())
def test_features_equal_the_reference_on_any_texts(pair, swap):
    first, second = pair[::-1] if swap else pair
    lower_a, lower_b = first.lower(), second.lower()
    assert pair_features._partial_ratio(lower_a, lower_b) == fuzz.partial_ratio(lower_a, lower_b)
    assert pair_features._longest_common_substring(lower_a, lower_b) == reference_longest_common_substring(
        lower_a, lower_b
    )
    assert lexical_features(first, second) == reference_lexical_features(first, second)


@settings(max_examples=200, deadline=None)
@given(first=st.lists(st.sampled_from("abcdefgh"), max_size=40), second=st.lists(st.sampled_from("abcdefgh")))
def test_order_agreement_equals_the_reference_with_repeated_words(first, second):
    assert pair_features._order_agreement(first, second) == reference_order_agreement(first, second)


def test_features_equal_the_reference_on_adversarial_pairs():
    # At 1,000 characters: the reference costs about 0.1 s a pair there, seconds at the maximum length.
    for kind, (first, second) in adversarial_pairs(1000).items():
        assert lexical_features(first, second) == reference_lexical_features(first, second), kind


def python_lines_run(function, *args) -> int:
    """How many lines of Python `function(*args)` runs: a measure of work that machine load does not change."""
    lines = 0

    def count(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return count

    previous = sys.gettrace()  # coverage's tracer, when the suite measures coverage
    sys.settrace(count)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return lines


def growth(function, kind: str, small: int) -> float:
    """How much the work of `function` on the adversarial pair `kind` grows when the texts are 4x longer."""
    return python_lines_run(function, *adversarial_pairs(small * 4)[kind]) / python_lines_run(
        function, *adversarial_pairs(small)[kind]
    )


@pytest.mark.parametrize("kind", list(adversarial_pairs(10)))
def test_the_work_grows_linearly_with_the_text_length(kind):
    # Up to the maximum text length, 4x longer: linear work grows 4x, O(n log n) a little more, quadratic work 16x.
    assert growth(lexical_features, kind, MAX_TEXT_CHARS_DEFAULT // 4) < 6


@pytest.mark.parametrize("kind", ["one repeated character", "near-equal texts", "many distinct words, reversed"])
def test_the_work_measure_catches_the_quadratic_reference(kind):
    assert growth(reference_lexical_features, kind, 120) > 10


def test_partial_ratio_of_equal_length_texts_is_not_cubic():
    # rapidfuzz's partial_ratio scores each of the 4 x n end alignments on its own, O(n³/64) in C, out of reach of
    # the line count: from 500 to 2,000 characters its time grows over 100x, two bit-parallel passes' about 6x.
    def seconds(chars: int) -> float:
        first, second = adversarial_pairs(chars)["random letters"]
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            pair_features._partial_ratio(first, second)
            runs.append(time.perf_counter() - started)
        return min(runs)

    assert seconds(MAX_TEXT_CHARS_DEFAULT) / seconds(MAX_TEXT_CHARS_DEFAULT // 4) < 25


def test_the_benchmark_reports_each_adversarial_kind(capsys):
    from loadtests.pair_features_bench import main

    assert main(["--chars", "150", "--repeat", "1", "--typical-pairs", "20"]) == 0
    output = capsys.readouterr().out
    assert all(kind in output for kind in adversarial_pairs(150))
