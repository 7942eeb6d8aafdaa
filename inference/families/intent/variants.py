"""The intent family's structure (not its labels, which each model version brings in its metadata): the two
variants that answer a query, and the store names of the models that make up a version."""

from __future__ import annotations

CLASSIC = "classic"
ENSEMBLE = "ensemble"
VARIANTS = (CLASSIC, ENSEMBLE)
DEFAULT_VARIANT = "default"  # the `variant` of an answer no model gave
PREFERENCE_HEADER = "X-Model-Preference"  # the variant a caller asks for

CLASSIC_MODEL = "intent-classic"
ENSEMBLE_MODEL = "intent-ensemble"
VERTICALS_MODEL = "intent-verticals"  # the vertical detectors: optional in a version
VARIANT_MODELS = {CLASSIC: CLASSIC_MODEL, ENSEMBLE: ENSEMBLE_MODEL}
INTENT_MODELS = (CLASSIC_MODEL, ENSEMBLE_MODEL, VERTICALS_MODEL)
