"""Validation of free text sent to the text families: the one place that decides what a usable text is, and what
a text costs to score."""

from __future__ import annotations

from collections.abc import Iterable

from inference.errors import InvalidText, TextTooLong, TooManyChars

CHARS_PER_UNIT = 100  # a text's cost grows with its characters: a unit per 100, plus one for the text itself
# Most units of one call of a text model: ~10,000 characters, at most ~25 ms for the text pair's features. A large
# request is scored in chunks this size, so that other callers' texts get their turn between them and a cancelled
# request stops.
CHUNK_UNITS = 100.0


def check_text(text: str, *, field_name: str, max_chars: int) -> str:
    """The text itself when usable; otherwise `InvalidText` naming the field and what was expected."""
    if len(text) > max_chars:
        raise TextTooLong(f"{field_name}: at most {max_chars} characters, got {len(text)}")
    if not text.strip():
        raise InvalidText(f"{field_name}: must not be empty or whitespace only")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate (an escape like \ud800 the JSON parser let through)
        raise InvalidText(f"{field_name}: not valid Unicode text (a lone surrogate at character {err.start})") from None
    return text


def check_request_chars(texts: Iterable[str], *, field_name: str, max_chars: int) -> None:
    """`TooManyChars` when the texts of one request hold more characters than `max_chars` in all."""
    total = sum(len(text) for text in texts)
    if total > max_chars:
        raise TooManyChars(
            f"{field_name}: at most {max_chars} characters of text per request (INFERENCE_MAX_REQUEST_CHARS), "
            f"got {total}"
        )


def text_units(text: str) -> float:
    """What scoring a text costs, in the batchers' units."""
    return 1.0 + len(text) / CHARS_PER_UNIT
