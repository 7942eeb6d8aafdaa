"""The model families this service serves, each behind the protocol of `inference.serving.protocol` and
registered by one `FamilySpec` (`inference.families.registry`)."""

from __future__ import annotations

from inference.families.registry import BUILT_IN, get_family, pinned_tags, specs

# The built-in families' names, in their order.
FAMILIES: tuple[str, ...] = tuple(specs(()))

__all__ = ["BUILT_IN", "FAMILIES", "get_family", "pinned_tags", "specs"]
