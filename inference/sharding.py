"""Splitting the student population between workers.

A student's shard key is the first 32 bits of the MD5 of the id: stable across processes, Python versions and
databases (PostgreSQL computes the same number in SQL, SQLite through a registered function), so `n` workers given
shards `0/n` .. `n-1/n` cover every student exactly once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SHARD_KEY_HEX_DIGITS = 8  # 32 bits: an unsigned bigint in PostgreSQL
_SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_key(student_id: str) -> int:
    digest = hashlib.md5(student_id.encode(), usedforsecurity=False).hexdigest()
    return int(digest[:SHARD_KEY_HEX_DIGITS], 16)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): the students whose shard key modulo `count` is `index`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: expected 0 <= index < count, count >= 1")

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """`"2/4"` is shard 2 of 4."""
        match = _SHARD_SPEC.match(spec)
        if not match:
            raise ValueError(f"shard {spec!r}: expected INDEX/COUNT, e.g. 0/4")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def is_everyone(self) -> bool:
        return self.count == 1

    def contains(self, student_id: str) -> bool:
        return shard_key(student_id) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


EVERYONE = Shard(0, 1)
