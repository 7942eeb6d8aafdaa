"""The skill models on the Open Inference Protocol: `skill-<skill>`, FP32/FP64 `features` [n, n_features] ->
`score`, `confidence` FP64 [n]. Skill rows carry no student: they are not written to the prediction log."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.serving.tensors import InputTensor, OutputTensor, ProtocolError, ProtocolModel

if TYPE_CHECKING:
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily


class SkillModels(ProtocolModel):
    """The skill models: one tensor of feature rows in the model's column order, NaN for a missing value."""

    family = "skills"
    outputs = ("score", "confidence")
    row_code = "invalid_request"  # a bad row has always answered this here (the JSON API names the finer code)
    prefix = "skill-"

    def segment(self, name: str) -> str:
        return name.removeprefix(self.prefix)  # the skill, as the JSON API labels it

    def claims(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def names(self, family: VersionedFamily[Any], version: str) -> list[str]:
        return [self.prefix + skill for skill in family.scorers[version].skills]

    def metadata(self, name: str, version: str, family: VersionedFamily[Any]) -> dict[str, Any]:
        model = family.scorers[version].models[name.removeprefix(self.prefix)]
        return {
            "platform": "xgboost",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, len(model.feature_names)]}],
            "outputs": [{"name": output, "datatype": "FP64", "shape": [-1]} for output in self.outputs],
            "parameters": {
                "version": version,
                "feature_names": list(model.feature_names),
                # Each column's schema: the value imputed for NaN, and the unit and valid range where known.
                "features": [
                    {"name": spec.name, "imputation_default": spec.default, **spec.to_metadata()}
                    for spec in model.schema.features
                ],
            },
        }

    async def infer(
        self, name: str, version: str, inputs: list[InputTensor], serving: Serving, *, most: int
    ) -> list[OutputTensor]:
        skill = name.removeprefix(self.prefix)
        scorer = serving.family(self.family).scorers[version]
        n_features = len(scorer.models[skill].feature_names)
        if len(inputs) != 1 or inputs[0].datatype == "BYTES":
            raise ProtocolError(400, "inputs: expected exactly one FP32 or FP64 tensor of shape [n, n_features]")
        (tensor,) = inputs
        if len(tensor.shape) != 2 or tensor.shape[1] != n_features:
            raise ProtocolError(
                400, f"{tensor.name}: this model takes {n_features} features per row, got shape {tensor.shape}"
            )
        if tensor.shape[0] == 0:
            raise ProtocolError(400, f"{tensor.name}: at least one row is needed")
        from inference.schemas import SkillInferenceRequest

        # Each row becomes the JSON API's request (NaN: a missing value, imputed there) and takes its path.
        values = np.asarray(tensor.values, dtype=np.float64).reshape(tensor.shape[0], n_features)
        names = scorer.models[skill].feature_names
        requests = [
            SkillInferenceRequest.model_construct(
                student_id="",  # rows without a student: not in the prediction log, any version by weight
                skill=skill,
                features={name: value for name, value in zip(names, row, strict=True) if not math.isnan(value)},
                explain=False,
            )
            for row in values.tolist()
        ]
        scores = await self.answers(serving, version, requests, most=most, field=tensor.name)
        return [
            OutputTensor("score", "FP64", [score.score for score in scores]),
            OutputTensor("confidence", "FP64", [score.confidence for score in scores]),
        ]
