"""The text-pair family's 30 engineered features: how alike two texts are in words, characters, order,
length, numbers and negation. `PairFeaturizer` is a scikit-learn transformer (its TF-IDF vocabularies are
fitted on the training texts), so it travels inside the model's Pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import accumulate
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq, Levenshtein
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer

Pair = tuple[str, str]

PAIR_FEATURES: dict[str, str] = {
    "word_jaccard": "shared words / all distinct words",
    "word_overlap_min": "shared words / distinct words of the text with fewer distinct words",
    "word_overlap_max": "shared words / distinct words of the text with more distinct words",
    "word_dice": "2 x shared words / (distinct words of one + of the other)",
    "content_jaccard": "word Jaccard without stop words",
    "bigram_jaccard": "Jaccard of word bigrams",
    "trigram_jaccard": "Jaccard of word trigrams",
    "char3_jaccard": "Jaccard of character 3-grams",
    "char4_jaccard": "Jaccard of character 4-grams",
    "tfidf_word_cosine": "cosine of the word TF-IDF vectors (vocabulary from training)",
    "tfidf_char_cosine": "cosine of the character 2-4-gram TF-IDF vectors",
    "length_ratio_chars": "shorter / longer length in characters",
    "length_ratio_words": "shorter / longer length in words",
    "word_count_difference": "absolute difference in word counts / longer word count",
    "char_similarity": "normalised Indel similarity of the lower-cased characters (rapidfuzz `fuzz.ratio`): "
    "1 - (insertions + deletions) / (length of one + of the other); no substitutions, unlike Levenshtein",
    "partial_similarity": "best similarity of the shorter text against any part of the longer",
    "sorted_word_similarity": "character similarity after sorting the words",
    "word_set_similarity": "character similarity of the shared and differing word sets",
    "word_edit_distance": "Levenshtein distance over words / longer word count",
    "word_lcs_ratio": "longest common subsequence of words / longer word count",
    "longest_common_substring": "longest shared run of characters / longer length",
    "first_word_equal": "1 if the first words are equal",
    "last_word_equal": "1 if the last words are equal",
    "number_jaccard": "Jaccard of the numbers mentioned (1 when neither mentions one)",
    "number_mismatch": "1 if the texts mention different numbers",
    "negation_mismatch": "1 if one text is negated and the other is not",
    "unique_share_first": "share of the first text's words missing from the second",
    "unique_share_second": "share of the second text's words missing from the first",
    "same_word_bag": "1 if both texts have exactly the same words, in any order",
    "shared_order_agreement": "share of shared word pairs that appear in the same order in both",
}
N_PAIR_FEATURES = len(PAIR_FEATURES)
_WORD_BITS = 64  # rapidfuzz scores a string of up to 64 characters against another with one integer per step

_TOKEN = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "my",
        "our",
        "your",
        "their",
        "his",
        "her",
        "i",
        "we",
        "you",
        "they",
        "he",
        "she",
        "by",
        "from",
        "as",
    ]
)
NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "didnt", "dont"})
NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "twenty",
        "hundred",
    ]
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("n't", " not"))


def _jaccard(first: AbstractSet[Hashable], second: AbstractSet[Hashable]) -> float:
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _char_ngrams(text: str, n: int) -> set[str]:
    compact = " ".join(text.lower().split())
    return {compact[i : i + n] for i in range(len(compact) - n + 1)}


def _ratio(shorter: float, longer: float) -> float:
    return shorter / longer if longer else 1.0


def _numbers(words: Iterable[str]) -> set[str]:
    return {word for word in words if word.isdigit() or word in NUMBER_WORDS}


def _order_agreement(first: list[str], second: list[str]) -> float:
    """Share of the pairs of shared words that come in the same order in both texts (1.0 with fewer than two).

    Each shared word is placed where it first occurs in `second`, in the order it first occurs in `first`; a
    Fenwick tree over the places counts, for each word, the earlier words placed before it: O(k log k) for k
    shared words instead of listing the O(k²) pairs (some 680 distinct words fit in 2,000 characters).
    """
    position: dict[str, int] = {}
    for index, word in enumerate(second):
        position.setdefault(word, index)
    places = [position[word] for word in dict.fromkeys(first) if word in position]
    pairs = len(places) * (len(places) - 1) // 2
    if not pairs:
        return 1.0
    tree = [0] * (len(second) + 1)  # tree[i] counts a span of places ending at place i - 1
    in_order = 0
    for place in places:
        index = place
        while index:
            in_order += tree[index]
            index -= index & -index
        index = place + 1
        while index < len(tree):
            tree[index] += 1
            index += index & -index
    return in_order / pairs


def _longest_common_substring(first: str, second: str) -> int:
    """Length of the longest run of characters the two strings share, in O(len(first) + len(second)).

    Equal to the size of difflib's `SequenceMatcher(None, first, second, autojunk=False).find_longest_match()`
    (with no junk, the longest matching block is the longest common substring), which costs
    O(len(first) x len(second)): 0.4 s for two 2,000-character texts of one repeated letter.
    A suffix automaton of the shorter string (each of its substrings is a path from state 0) is walked with the
    longer one, keeping the longest run of characters that is still a path.
    """
    shorter, longer = (first, second) if len(first) <= len(second) else (second, first)
    transitions: list[dict[str, int]] = [{}]
    suffix_link = [-1]
    length = [0]
    last = 0
    for char in shorter:
        added = len(length)
        transitions.append({})
        suffix_link.append(0)
        length.append(length[last] + 1)
        state = last
        while state != -1 and char not in transitions[state]:
            transitions[state][char] = added
            state = suffix_link[state]
        if state != -1:
            target = transitions[state][char]
            if length[target] == length[state] + 1:
                suffix_link[added] = target
            else:
                clone = len(length)
                transitions.append(dict(transitions[target]))
                suffix_link.append(suffix_link[target])
                length.append(length[state] + 1)
                while state != -1 and transitions[state].get(char) == target:
                    transitions[state][char] = clone
                    state = suffix_link[state]
                suffix_link[target] = suffix_link[added] = clone
        last = added
    state = run = longest = 0
    for char in longer:
        while state and char not in transitions[state]:
            state = suffix_link[state]
            run = length[state]
        if char in transitions[state]:
            state = transitions[state][char]
            run += 1
            longest = max(longest, run)
    return longest


def _lcs_of_prefixes(pattern: str, text: str) -> tuple[list[int], list[int]]:
    """LCS(pattern, text[:t]) for t = 0..len(text), and LCS(pattern[:k], text) for k = 0..len(pattern).

    Hyyrö's bit-parallel LCS: after text[:t], the zero bits among the lowest k bits of `row` count
    LCS(pattern[:k], text[:t]); each character of the text is a few operations on len(pattern)-bit integers.
    """
    masks: dict[str, int] = {}
    for index, char in enumerate(pattern):
        masks[char] = masks.get(char, 0) | 1 << index
    full = (1 << len(pattern)) - 1
    row = full
    by_text_prefix = [0]
    for char in text:
        matches = row & masks.get(char, 0)
        row = ((row + matches) | (row - matches)) & full
        by_text_prefix.append(len(pattern) - row.bit_count())
    zero_bits = (bit == "0" for bit in reversed(format(row, f"0{len(pattern)}b")))
    return by_text_prefix, list(accumulate(zero_bits, initial=0))


def _partial_ratio(first: str, second: str) -> float:
    """rapidfuzz's `fuzz.partial_ratio(first, second)`, the same value, without its cubic worst case.

    partial_ratio aligns the shorter string (the needle, n characters) with windows of the longer (m) and keeps
    the best `fuzz.ratio`, 100 x (1 - (total length - 2 x LCS) / total length): the m - n + 1 windows of length
    n, and the shorter windows at either end (the longer string's prefixes and suffixes of fewer than n
    characters); with equal lengths, each string is also aligned with the ends of the other. rapidfuzz scores
    each end window on its own, O(n³/64) (0.3 s at n = m = 2,000); here one bit-parallel pass scores every
    prefix, and one over the reversed strings every suffix. A needle of one machine word costs rapidfuzz
    O(m x n) simple steps, so it is left to rapidfuzz.
    """
    needle, haystack = (first, second) if len(first) <= len(second) else (second, first)
    n, m = len(needle), len(haystack)
    if n <= _WORD_BITS:
        return fuzz.partial_ratio(first, second)
    by_prefix, needle_prefixes = _lcs_of_prefixes(needle, haystack[:n])
    by_suffix, needle_suffixes = _lcs_of_prefixes(needle[::-1], haystack[::-1][:n])
    # (LCS, total length) of each end alignment: a window of t characters against the n of the needle.
    alignments = [(by_prefix[t], n + t) for t in range(1, n)] + [(by_suffix[t], n + t) for t in range(1, n + 1)]
    if n == m:
        alignments += [(needle_prefixes[k], n + k) for k in range(1, n)]
        alignments += [(needle_suffixes[k], n + k) for k in range(1, n + 1)]
    lcs, total = max(alignments, key=lambda alignment: alignment[0] / alignment[1])
    # The windows of length n that start before the last one (a suffix, scored above). Shifting a window by one
    # character changes its LCS by at most one, so no window between two scored ones exceeds the mean of their
    # LCS plus half their distance. Windows are scored coarse to fine, one rapidfuzz call per level, and a span
    # is split only while that bound can beat the best alignment so far. Where every window scores alike (against
    # a periodic text) none is skipped: O((m - n) x n²/64), some 20 ms for n = 1,333 and m = 2,000.
    scored: dict[int, int] = {}
    spans = [(0, m - n - 1)] if m > n else []
    while spans and 2 * lcs < total:
        starts = sorted({start for span in spans for start in span} - scored.keys())
        windows = [haystack[start : start + n] for start in starts]
        scores = process.cdist([needle], windows, scorer=LCSseq.similarity)[0].tolist()
        scored.update(zip(starts, scores, strict=True))
        if max(scores) * total > 2 * n * lcs:
            lcs, total = max(scores), 2 * n
        spans = [
            half
            for low, high in spans
            if high - low > 1 and (scored[low] + scored[high] + high - low) // 2 * total > 2 * n * lcs
            for half in ((low, (low + high) // 2), ((low + high) // 2, high))
        ]
    return (1.0 - (total - 2 * lcs) / total) * 100


def _cosine(first: Any, second: Any) -> np.ndarray:  # scipy sparse rows (scipy ships no types)
    # Rows of TfidfVectorizer output are L2-normalised, so the cosine is the row-wise dot product.
    return np.asarray(first.multiply(second).sum(axis=1)).ravel()


def lexical_features(first: str, second: str) -> list[float]:
    """The 28 features that need no fitted vocabulary, in PAIR_FEATURES order (the two TF-IDF cosines aside)."""
    words_a, words_b = tokens(first), tokens(second)
    set_a, set_b = set(words_a), set(words_b)
    shared = set_a & set_b
    longer_words = max(len(words_a), len(words_b))
    numbers_a, numbers_b = _numbers(words_a), _numbers(words_b)
    lower_a, lower_b = first.lower(), second.lower()
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
        fuzz.ratio(lower_a, lower_b) / 100,
        _partial_ratio(lower_a, lower_b) / 100,
        fuzz.token_sort_ratio(first, second) / 100,
        fuzz.token_set_ratio(first, second) / 100,
        Levenshtein.normalized_distance(words_a, words_b),
        LCSseq.normalized_similarity(words_a, words_b),
        _ratio(_longest_common_substring(lower_a, lower_b), max(len(first), len(second))),
        float(bool(words_a and words_b) and words_a[0] == words_b[0]),
        float(bool(words_a and words_b) and words_a[-1] == words_b[-1]),
        _jaccard(numbers_a, numbers_b),
        float(numbers_a != numbers_b),
        float(bool(set_a & NEGATIONS) != bool(set_b & NEGATIONS)),
        _ratio(len(set_a - set_b), len(set_a)),
        _ratio(len(set_b - set_a), len(set_b)),
        float(sorted(words_a) == sorted(words_b)),
        _order_agreement(words_a, words_b),
    ]


class PairFeaturizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no types
    """(text1, text2) pairs in, a (n, 30) float matrix out, columns in PAIR_FEATURES order."""

    def fit(self, pairs: Sequence[Pair], y: object = None) -> PairFeaturizer:
        texts = [text for pair in pairs for text in pair]
        self.words_ = TfidfVectorizer(token_pattern=_TOKEN.pattern, sublinear_tf=True).fit(texts)
        self.chars_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(texts)
        return self

    def transform(self, pairs: Sequence[Pair]) -> np.ndarray:
        firsts, seconds = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        lexical = np.array([lexical_features(a, b) for a, b in pairs], dtype=np.float64).reshape(len(pairs), -1)
        # One transform over both sides per vectorizer: each call has ~0.6 ms of fixed cost.
        words, chars = self.words_.transform(firsts + seconds), self.chars_.transform(firsts + seconds)
        n = len(pairs)
        word_cosine = _cosine(words[:n], words[n:])
        char_cosine = _cosine(chars[:n], chars[n:])
        # Insert the cosines where PAIR_FEATURES lists them (after char4_jaccard).
        return np.column_stack([lexical[:, :9], word_cosine, char_cosine, lexical[:, 9:]])

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array(list(PAIR_FEATURES))
