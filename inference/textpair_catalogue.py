"""The text-pair family's names: the model in the store and its two classes (1: the texts mean the same)."""

from __future__ import annotations

TEXTPAIR_MODEL = "textpair"
SAME_MEANING = 1
LABELS = {0: "different", 1: "paraphrase"}
