"""The shape of a JSON body, read without parsing it: how deep it nests and how many elements its containers hold
at each depth. The edge checks a request's limits with it (items per batch, features per item) before anything
builds a Python object of the body: a 4 MiB body of 100,000 items costs a few milliseconds of numpy here,
against about a second of parsing and validation.

Only the structure counts: brackets, commas and the quotes that say whether they are inside a string. Escaped
backslashes and quotes are dropped first, so every quote left opens or closes a string; a structural byte is
inside a string when an odd number of quotes precede it. The result is exact for valid JSON; for invalid JSON it
is whatever the bytes say, and the parser refuses the body afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_STRUCTURE = b'"{}[],'
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in _STRUCTURE)
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("{"), ord("[")]] = 1
_STEP[[ord("}"), ord("]")]] = -1


@dataclass(frozen=True)
class JsonShape:
    """`depth`: the deepest nesting (0 for a scalar); `widest[d]`: the most elements of one container whose
    elements sit at depth `d` (1 for the top-level object's members, 2 for the elements of an array in it...).
    A container's count is its commas plus one, so an empty one counts 1: an upper bound, which is what a limit
    needs."""

    depth: int
    widest: dict[int, int]

    def widest_at(self, depth: int) -> int:
        return self.widest.get(depth, 0)


def json_shape(body: bytes, *, depths: tuple[int, ...] = ()) -> JsonShape:
    """The body's depth, and the widest container at each of `depths`."""
    if b"\\" in body:  # drop escaped backslashes, then escaped quotes: every quote left opens or closes a string
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(body.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    if marks.size == 0:
        return JsonShape(0, {})
    outside = (np.cumsum(marks == ord('"'), dtype=np.int32) & 1) == 0  # after an odd number of quotes: inside
    steps = np.take(_STEP, marks) * outside
    level = np.cumsum(steps, dtype=np.int32)  # the depth after each mark: an opening bracket's is its elements'
    widest = {}
    if depths:
        opens = steps > 0
        commas = (marks == ord(",")) & outside
        for depth in depths:
            at_depth = level == depth
            opened = np.flatnonzero(opens & at_depth)
            if opened.size:
                # Each comma at this depth belongs to the container opened last at this depth before it.
                owners = np.searchsorted(opened, np.flatnonzero(commas & at_depth))
                widest[depth] = int(np.bincount(owners, minlength=opened.size + 1).max(initial=0)) + 1
    return JsonShape(int(level.max(initial=0)), widest)


def json_depth(body: bytes, *, at_most: int) -> int:
    """The nesting depth of a JSON document, exact once it is over `at_most` (below, any value <= at_most).

    Cheap where it matters: a body with no more brackets than `at_most` cannot be deeper, so most single
    requests cost two byte counts."""
    if body.count(b"{") + body.count(b"[") <= at_most:
        return 0
    return json_shape(body).depth
