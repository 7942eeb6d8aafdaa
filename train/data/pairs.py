"""Seeded synthetic text pairs for the text-pair family: paraphrases against unrelated and near-miss pairs.

A sentence is a subject, a verb, an object and a time phrase. A paraphrase swaps words for synonyms, moves the
time phrase, adds a filler word or a typo. A near miss keeps most words but changes what the sentence says:
another subject or object, another number, a negation, or subject and object swapped. Near misses share most
of their words with the original, so word overlap alone cannot separate them: scores are good, not perfect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBJECTS = (
    "the student",
    "my teacher",
    "the company",
    "our team",
    "the doctor",
    "a customer",
    "the manager",
    "my neighbour",
    "the council",
    "the author",
)
VERBS = (
    ("bought", "purchased"),
    ("started", "began"),
    ("fixed", "repaired"),
    ("needs", "requires"),
    ("showed", "demonstrated"),
    ("helped", "assisted"),
    ("asked for", "requested"),
    ("finished", "completed"),
    ("chose", "selected"),
    ("sent", "mailed"),
    ("built", "constructed"),
    ("found", "discovered"),
)
OBJECTS = (
    "{n} new laptops",
    "the annual report",
    "{n} train tickets",
    "the broken car",
    "{n} extra chairs",
    "the final exam",
    "a larger office",
    "{n} short videos",
    "the old bridge",
    "{n} books on history",
    "the missing keys",
    "a faster computer",
)
NUMBERS = ("two", "three", "four", "five", "six", "ten", "12", "20")
BASE_FORMS = {
    "bought": "buy",
    "purchased": "purchase",
    "started": "start",
    "began": "begin",
    "fixed": "fix",
    "repaired": "repair",
    "needs": "need",
    "requires": "require",
    "showed": "show",
    "demonstrated": "demonstrate",
    "helped": "help",
    "assisted": "assist",
    "asked for": "ask for",
    "requested": "request",
    "finished": "finish",
    "completed": "complete",
    "chose": "choose",
    "selected": "select",
    "sent": "send",
    "mailed": "mail",
    "built": "build",
    "constructed": "construct",
    "found": "find",
    "discovered": "discover",
}
PRESENT_TENSE = frozenset({"needs", "requires"})
TIMES = (
    ("yesterday", "the day before today"),
    ("last week", "the previous week"),
    ("this morning", "earlier today"),
    ("in 2024", "during 2024"),
    ("before the meeting", "ahead of the meeting"),
    ("after lunch", "following lunch"),
)
SYNONYMS = {
    "new": "brand new",
    "broken": "damaged",
    "annual": "yearly",
    "larger": "bigger",
    "final": "last",
    "short": "brief",
    "old": "ancient",
    "missing": "lost",
    "faster": "quicker",
    "extra": "additional",
    "customer": "client",
    "company": "firm",
    "doctor": "physician",
    "team": "group",
}
FILLERS = ("actually", "finally", "quickly", "already")
PARAPHRASE_SHARE = 0.5
NEAR_MISS_SHARE = 0.3  # of all pairs; the rest are unrelated


@dataclass(frozen=True)
class PairSample:
    pairs: list[tuple[str, str]]
    labels: list[int]  # 1: same meaning


@dataclass(frozen=True)
class _Sentence:
    subject: str
    verb: int
    object: str
    time: int
    number: str


def generate_pairs(n: int, *, seed: int) -> PairSample:
    rng = np.random.default_rng(seed)
    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    for _ in range(n):
        sentence = _random_sentence(rng)
        roll = rng.random()
        if roll < PARAPHRASE_SHARE:
            other, label = _paraphrase(sentence, rng), 1
        elif roll < PARAPHRASE_SHARE + NEAR_MISS_SHARE:
            other, label = _near_miss(sentence, rng), 0
        else:
            other, label = _render(_random_sentence(rng), rng), 0
        first = _render(sentence, rng)
        pairs.append((first, other) if rng.random() < 0.5 else (other, first))
        labels.append(label)
    return PairSample(pairs=pairs, labels=labels)


def _pick(options: tuple, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    return options[rng.integers(len(options))]


def _random_sentence(rng: np.random.Generator) -> _Sentence:
    return _Sentence(
        subject=_pick(SUBJECTS, rng),
        verb=int(rng.integers(len(VERBS))),
        object=_pick(OBJECTS, rng),
        time=int(rng.integers(len(TIMES))),
        number=_pick(NUMBERS, rng),
    )


def _render(sentence: _Sentence, rng: np.random.Generator, *, alternate: bool = False, negate: bool = False) -> str:
    verb = VERBS[sentence.verb][int(alternate)]
    if negate:
        verb = f"{'does' if verb in PRESENT_TENSE else 'did'} not {BASE_FORMS[verb]}"
    time = TIMES[sentence.time][int(alternate and rng.random() < 0.5)]
    body = f"{sentence.subject} {verb} {sentence.object.format(n=sentence.number)}"
    return f"{time}, {body}" if alternate and rng.random() < 0.4 else f"{body} {time}"


def _paraphrase(sentence: _Sentence, rng: np.random.Generator) -> str:
    text = _render(sentence, rng, alternate=True)
    words = text.split()
    for index, word in enumerate(words):
        if word in SYNONYMS and rng.random() < 0.6:
            words[index] = SYNONYMS[word]
    if rng.random() < 0.3:
        words.insert(int(rng.integers(1, len(words))), _pick(FILLERS, rng))
    if rng.random() < 0.2:
        index = int(rng.integers(len(words)))
        word = words[index]
        if len(word) > 4:
            cut = int(rng.integers(1, len(word) - 1))
            words[index] = word[:cut] + word[cut + 1 :]
    return " ".join(words)


def _near_miss(sentence: _Sentence, rng: np.random.Generator) -> str:
    kind = rng.integers(4)
    if kind == 0:  # another subject or object
        other = _random_sentence(rng)
        changed = _Sentence(other.subject, sentence.verb, sentence.object, sentence.time, sentence.number)
        if rng.random() < 0.5 or changed == sentence:
            changed = _Sentence(sentence.subject, sentence.verb, other.object, sentence.time, sentence.number)
        return _render(changed, rng, alternate=rng.random() < 0.5)
    if kind == 1 and "{n}" in sentence.object:  # another number
        number = _pick(tuple(n for n in NUMBERS if n != sentence.number), rng)
        return _render(_Sentence(sentence.subject, sentence.verb, sentence.object, sentence.time, number), rng)
    if kind == 2:  # negated
        return _render(sentence, rng, negate=True)
    # subject and object swapped: the same words, another meaning
    text = _render(sentence, rng)
    swapped_object = sentence.object.format(n=sentence.number)
    return (
        text.replace(sentence.subject, "\x00").replace(swapped_object, sentence.subject).replace("\x00", swapped_object)
    )
