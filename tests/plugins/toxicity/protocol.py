"""The family on the Open Inference Protocol: model `toxicity`, BYTES `text` [n] -> `toxic` INT64 (0 or 1) and
`probability` FP64 [n], through the same serving path as the JSON API."""

from __future__ import annotations

from typing import Any

from inference.serving.pipeline import Serving
from inference.serving.tensors import InputTensor, OutputTensor, TextModels
from inference.serving.versions import VersionedFamily
from tests.plugins.toxicity.spec import FAMILY


class ToxicityModels(TextModels):
    family = FAMILY
    inputs = ("text",)
    outputs = ("toxic", "probability")

    def claims(self, name: str) -> bool:
        return name == FAMILY

    def names(self, family: VersionedFamily[Any], version: str) -> list[str]:
        return [FAMILY]

    def output_type(self, output: str) -> str:
        return "INT64" if output == "toxic" else "FP64"

    async def infer(
        self, name: str, version: str, inputs: list[InputTensor], serving: Serving, *, most: int
    ) -> list[OutputTensor]:
        (texts,) = self.texts(inputs)
        answers = await self.answers(serving, version, texts, most=most)
        return [
            OutputTensor("toxic", "INT64", [int(answer.toxic) for answer in answers]),
            OutputTensor("probability", "FP64", [answer.probability for answer in answers]),
        ]
