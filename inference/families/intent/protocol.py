"""The intent variants on the Open Inference Protocol: `intent-classic`, `intent-ensemble`, BYTES `text` [n] ->
`intent`, `variant`, `verticals` BYTES, `confidence` FP64 [n]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from inference.serving.tensors import InputTensor, OutputTensor, TextModels

if TYPE_CHECKING:
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily


class IntentModels(TextModels):
    """The two intent variants, each with the vertical detectors of its version."""

    family = "intent"
    inputs = ("text",)
    outputs = ("intent", "confidence", "verticals", "variant")
    variants: ClassVar[dict[str, str]] = {"intent-classic": "classic", "intent-ensemble": "ensemble"}

    def claims(self, name: str) -> bool:
        return name in self.variants

    def names(self, family: VersionedFamily[Any], version: str) -> list[str]:
        return list(self.variants)

    async def infer(
        self, name: str, version: str, inputs: list[InputTensor], serving: Serving, *, most: int
    ) -> list[OutputTensor]:
        from inference.families.intent.scorer import IntentQuery

        (texts,) = self.texts(inputs)
        preference = self.variants[name]
        queries = [IntentQuery(text, field=f"text[{index}]", preference=preference) for index, text in enumerate(texts)]
        answers = await self.answers(serving, version, queries, most=most)
        return [
            OutputTensor("intent", "BYTES", [answer.intent for answer in answers]),
            OutputTensor("confidence", "FP64", [answer.confidence for answer in answers]),
            # The verticals detected, comma-separated ("" for none): one string per text, as BYTES must be.
            OutputTensor("verticals", "BYTES", [",".join(v.vertical for v in answer.verticals) for answer in answers]),
            # Which variant answered: the one asked for, or classic when the ensemble could not or is switched off.
            OutputTensor("variant", "BYTES", [answer.variant for answer in answers]),
        ]
