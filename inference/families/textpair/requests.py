"""The text-pair family's HTTP input turned into its requests (the `JsonRoute.requests` of its spec)."""

from __future__ import annotations

from collections.abc import Mapping

from inference.schemas import LabelledPair, TextPairRequest


def one(body: TextPairRequest, headers: Mapping[str, str]) -> tuple[list[TextPairRequest], list[str | None]]:
    """The pair itself; no caller id, so a version split draws per request."""
    return [body], [None]


def labelled_texts(item: LabelledPair) -> list[str]:
    return [item.text1, item.text2]
