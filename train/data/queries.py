"""Seeded synthetic search queries with real structure, for the intent family's demo models, tests and load tests.

A query is an intent's template filled from one vertical's vocabulary (what a person searching would type),
sometimes joined with a phrase from a second vertical (multi-label verticals), sometimes drawn from templates
that genuinely fit two intents (the label then follows a fixed split, so no model can be always right), and
roughened the way typed queries are: typos, filler words, odd casing. Models reach good but imperfect scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The demo's labels (a team's own come from its models' metadata, never from here).
INTENTS: dict[str, str] = {
    "informational": "wants to know or understand something",
    "navigational": "wants to reach a specific site, brand or page",
    "transactional": "wants to buy, book, order or download",
    "local": "wants a place or service nearby",
    "comparison": "wants options weighed against each other",
    "support": "needs help with an account, order or product they already have",
}
VERTICALS: dict[str, str] = {
    "shopping": "products, retailers, prices",
    "travel": "flights, hotels, destinations",
    "health": "symptoms, treatments, doctors",
    "finance": "banking, loans, cards, investing",
    "jobs": "vacancies, salaries, careers",
    "education": "courses, degrees, schools",
}


# Slot vocabularies per vertical: topics (to learn about), products (to buy or book), brands (to reach or get
# help from), services (to find nearby).
VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "shopping": {
        "topic": ("fast fashion", "return policies", "black friday", "fair trade coffee", "consumer rights"),
        "product": (
            "running shoes",
            "laptop",
            "wireless headphones",
            "winter jacket",
            "coffee maker",
            "smartphone",
            "office chair",
            "4k tv",
            "backpack",
            "dishwasher",
        ),
        "brand": ("amazon", "ikea", "best buy", "target", "walmart", "nike", "zara", "etsy"),
        "service": ("shoe store", "electronics store", "furniture shop", "shopping mall", "tailor"),
    },
    "travel": {
        "topic": ("jet lag", "travel insurance", "visa requirements", "passport renewal", "baggage allowance"),
        "product": (
            "flights to paris",
            "hotel in rome",
            "cheap flights",
            "car rental",
            "cruise",
            "train tickets",
            "vacation package",
            "airport hotel",
        ),
        "brand": ("expedia", "booking.com", "airbnb", "delta", "ryanair", "united airlines", "hilton"),
        "service": ("travel agency", "car rental office", "hostel", "currency exchange", "airport shuttle"),
    },
    "health": {
        "topic": (
            "migraine",
            "diabetes",
            "flu symptoms",
            "back pain",
            "high blood pressure",
            "vitamin d",
            "allergies",
            "insomnia",
        ),
        "product": ("blood pressure monitor", "ibuprofen", "allergy medicine", "flu shot", "reading glasses"),
        "brand": ("mayo clinic", "webmd", "cvs", "kaiser permanente", "walgreens"),
        "service": ("dentist", "pharmacy", "urgent care", "physiotherapist", "dermatologist", "walk in clinic"),
    },
    "finance": {
        "topic": ("compound interest", "credit score", "roth ira", "inflation", "mortgage rates", "index funds"),
        "product": (
            "credit card",
            "personal loan",
            "savings account",
            "mortgage",
            "car insurance",
            "stock trading app",
        ),
        "brand": ("chase", "paypal", "bank of america", "wells fargo", "fidelity", "venmo"),
        "service": ("atm", "bank branch", "tax advisor", "notary", "financial planner"),
    },
    "jobs": {
        "topic": ("resume format", "interview questions", "nurse salary", "remote work", "minimum wage"),
        "product": (
            "nursing jobs",
            "software engineer jobs",
            "part time jobs",
            "summer internships",
            "teaching jobs",
            "warehouse jobs",
        ),
        "brand": ("linkedin", "indeed", "glassdoor", "monster", "ziprecruiter"),
        "service": ("staffing agency", "career center", "job fair", "recruitment office"),
    },
    "education": {
        "topic": (
            "photosynthesis",
            "calculus",
            "world war 2",
            "python programming",
            "spanish grammar",
            "climate change",
        ),
        "product": ("online mba", "data science course", "coding bootcamp", "spanish lessons", "ielts preparation"),
        "brand": ("coursera", "khan academy", "harvard", "udemy", "duolingo"),
        "service": ("tutor", "driving school", "language school", "public library", "music school"),
    },
}
CITIES = ("boston", "chicago", "austin", "seattle", "denver", "miami", "london", "berlin", "toronto", "dublin")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "informational": (
        "what is {topic}",
        "how does {topic} work",
        "{topic} explained",
        "why does {topic} matter",
        "{topic} meaning",
        "history of {topic}",
        "facts about {topic}",
        "{topic} definition",
        "what causes {topic}",
        "learn about {topic}",
    ),
    "navigational": (
        "{brand}",
        "{brand} login",
        "{brand} website",
        "{brand} official site",
        "go to {brand}",
        "{brand} homepage",
        "{brand} app",
        "{brand} sign in",
    ),
    "transactional": (
        "buy {product}",
        "{product} price",
        "order {product} online",
        "book {product}",
        "{product} deal",
        "cheap {product}",
        "{product} discount code",
        "purchase {product}",
        "{product} for sale",
        "apply for {product}",
    ),
    "local": (
        "{service} near me",
        "{service} in {city}",
        "best {service} nearby",
        "{service} open now",
        "closest {service}",
        "{service} {city} opening hours",
        "find a {service} near me",
    ),
    "comparison": (
        "{product} vs {product2}",
        "{brand} vs {brand2}",
        "best {product} this year",
        "{product} or {product2}",
        "compare {product} prices",
        "top 10 {product}",
        "which {product} is better",
    ),
    "support": (
        "{brand} customer service",
        "{brand} reset password",
        "cancel {brand} subscription",
        "{brand} refund",
        "{brand} not working",
        "contact {brand} support",
        "track my {brand} order",
        "{brand} account locked",
    ),
}
# Templates that honestly fit two intents: the label follows the split given, whatever a model learns.
AMBIGUOUS_TEMPLATES: tuple[tuple[str, dict[str, float]], ...] = (
    ("{product} reviews", {"comparison": 0.6, "informational": 0.4}),
    ("{brand} hours", {"local": 0.5, "navigational": 0.5}),
    ("{product}", {"transactional": 0.5, "informational": 0.5}),
    ("{brand} price", {"transactional": 0.5, "comparison": 0.5}),
    ("{brand} help", {"support": 0.6, "navigational": 0.4}),
)
FILLERS = ("please", "online", "2026", "today", "fast", "best", "now", "free")
SECOND_VERTICAL_SHARE = 0.15
AMBIGUOUS_SHARE = 0.08
TYPO_SHARE = 0.25
FILLER_SHARE = 0.15


@dataclass(frozen=True)
class QuerySample:
    texts: list[str]
    intents: list[str]
    verticals: list[frozenset[str]]


def generate_queries(n: int, *, seed: int) -> QuerySample:
    """`n` labelled queries, the same for the same seed."""
    rng = np.random.default_rng(seed)
    intents, verticals = list(INTENTS), list(VERTICALS)
    texts: list[str] = []
    labels: list[str] = []
    vertical_sets: list[frozenset[str]] = []
    for _ in range(n):
        vertical = verticals[rng.integers(len(verticals))]
        if rng.random() < AMBIGUOUS_SHARE:
            template, split = AMBIGUOUS_TEMPLATES[rng.integers(len(AMBIGUOUS_TEMPLATES))]
            intent = str(rng.choice(list(split), p=list(split.values())))
        else:
            intent = intents[rng.integers(len(intents))]
            template = TEMPLATES[intent][rng.integers(len(TEMPLATES[intent]))]
        text = _fill(template, VOCABULARY[vertical], rng)
        labelled = {vertical}
        if rng.random() < SECOND_VERTICAL_SHARE:
            second = verticals[rng.integers(len(verticals))]
            if second != vertical:
                kind = ("topic", "product", "service")[rng.integers(3)]
                text = f"{text} {('for', 'and', 'with')[rng.integers(3)]} {_pick(VOCABULARY[second][kind], rng)}"
                labelled.add(second)
        texts.append(_roughen(text, rng))
        labels.append(intent)
        vertical_sets.append(frozenset(labelled))
    return QuerySample(texts=texts, intents=labels, verticals=vertical_sets)


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[rng.integers(len(options))]


def _fill(template: str, vocabulary: dict[str, tuple[str, ...]], rng: np.random.Generator) -> str:
    values = {kind: _pick(words, rng) for kind, words in vocabulary.items()}
    for kind in ("product", "brand"):
        others = [word for word in vocabulary[kind] if word != values[kind]]
        values[f"{kind}2"] = _pick(others, rng)
    values["city"] = _pick(CITIES, rng)
    return template.format(**values)


def _roughen(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    if rng.random() < TYPO_SHARE:
        for _ in range(1 + int(rng.random() < 0.3)):
            index = int(rng.integers(len(words)))
            words[index] = _typo(words[index], rng)
    if rng.random() < FILLER_SHARE:
        words.insert(int(rng.integers(len(words) + 1)), _pick(FILLERS, rng))
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.05:
        return text.upper()
    if roll < 0.15:
        return text.capitalize()
    return text


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(3)
    if kind == 0:  # swap two neighbours
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double one
