"""The text pair on the Open Inference Protocol: `textpair`, BYTES `text1`, `text2` [n] -> `prediction` INT64,
`label` BYTES, `confidence` FP64 [n]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inference.serving.tensors import InputTensor, OutputTensor, TextModels

if TYPE_CHECKING:
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily


class TextPairModels(TextModels):
    family = "textpair"
    inputs = ("text1", "text2")
    outputs = ("prediction", "label", "confidence")

    def claims(self, name: str) -> bool:
        return name == "textpair"

    def names(self, family: VersionedFamily[Any], version: str) -> list[str]:
        return ["textpair"]

    def output_type(self, output: str) -> str:
        return "INT64" if output == "prediction" else super().output_type(output)

    async def infer(
        self, name: str, version: str, inputs: list[InputTensor], serving: Serving, *, most: int
    ) -> list[OutputTensor]:
        from inference.schemas import TextPairRequest

        first, second = self.texts(inputs)
        requests = [TextPairRequest(text1=a, text2=b) for a, b in zip(first, second, strict=True)]
        answers = await self.answers(serving, version, requests, most=most)
        return [
            OutputTensor("prediction", "INT64", [answer.prediction for answer in answers]),
            OutputTensor("label", "BYTES", [answer.label for answer in answers]),
            OutputTensor("confidence", "FP64", [answer.confidence for answer in answers]),
        ]
