"""The models the Open Inference Protocol serves: one adapter per family (`FamilySpec.protocol`, a
`inference.serving.tensors.ProtocolModel` in the family's folder), which names its models and turns tensors into
the family's requests and back.
"""

from __future__ import annotations

import functools

from inference.serving.tensors import ProtocolModel


@functools.cache
def protocol_models(plugins: tuple[str, ...] = ()) -> tuple[ProtocolModel, ...]:
    """The adapter of every registered family that has one (`FamilySpec.protocol`), in registration order."""
    from inference.families.registry import attribute, specs

    return tuple(attribute(spec.protocol)() for spec in specs(plugins).values() if spec.protocol)
