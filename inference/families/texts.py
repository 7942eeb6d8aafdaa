"""Validation of free text sent to the text families: the one place that decides what a usable text is."""

from __future__ import annotations

from inference.errors import InvalidText, TextTooLong


def check_text(text: str, *, field_name: str, max_chars: int) -> str:
    """The text itself when usable; otherwise `InvalidText` naming the field and what was expected."""
    if not text.strip():
        raise InvalidText(f"{field_name}: must not be empty or whitespace only")
    if len(text) > max_chars:
        raise TextTooLong(f"{field_name}: at most {max_chars} characters, got {len(text)}")
    return text
