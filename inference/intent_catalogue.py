"""The intent family's labels: query intents, verticals and model variants (the single source for training,
serving and docs)."""

from __future__ import annotations

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
CLASSIC = "classic"
ENSEMBLE = "ensemble"
VARIANTS = (CLASSIC, ENSEMBLE)

CLASSIC_MODEL = "intent-classic"
ENSEMBLE_MODEL = "intent-ensemble"
VERTICALS_MODEL = "intent-verticals"
VARIANT_MODELS = {CLASSIC: CLASSIC_MODEL, ENSEMBLE: ENSEMBLE_MODEL}
INTENT_MODELS = (CLASSIC_MODEL, ENSEMBLE_MODEL, VERTICALS_MODEL)
