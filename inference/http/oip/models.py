"""The models the Open Inference Protocol serves, one adapter per family: which names it answers, its metadata,
how input tensors become the family's requests and its answers output tensors.

    skill-<skill>                 FP32/FP64 `features` [n, n_features]  ->  `score`, `confidence` FP64 [n]
    intent-classic, -ensemble     BYTES `text` [n]                      ->  `intent`, `variant`, `verticals` BYTES,
                                                                            `confidence` FP64 [n]
    textpair                      BYTES `text1`, `text2` [n]            ->  `prediction` INT64, `label` BYTES,
                                                                            `confidence` FP64 [n]

Every family's rows take the JSON API's path (`Serving.answer_many`: version, result cache, batcher, observation,
limits), so a row scores the same on either protocol; a version given in the path is the JSON API's
`X-Model-Version`. Skill rows carry no student: they are not written to the prediction log.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from inference.errors import InferenceError
from inference.http.oip.tensors import InputTensor, OutputTensor, ProtocolError

if TYPE_CHECKING:
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily


class ProtocolModel:
    """One family's models on the protocol. `name` is the model's name in the path; `version` is loaded; `most`
    is the largest batch a request may hold (INFERENCE_MAX_BATCH_ITEMS)."""

    family: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    row_noun: ClassVar[str] = "row"  # how a batch names its rows in a refusal (`text: at most 1000 texts ...`)
    row_code: ClassVar[str | None] = None  # the code of a bad row's refusal; None: the JSON API's for that row

    def segment(self, name: str) -> str:
        """The model's `segment` label in the request metrics."""
        return name

    def claims(self, name: str) -> bool:
        """Whether a model of this name would be this family's (without looking at what is loaded)."""
        raise NotImplementedError

    def names(self, family: VersionedFamily[Any], version: str) -> list[str]:
        """The models this family serves at a loaded version."""
        raise NotImplementedError

    def metadata(self, name: str, version: str, family: VersionedFamily[Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def infer(
        self, name: str, version: str, inputs: list[InputTensor], serving: Serving, *, most: int
    ) -> list[OutputTensor]:
        raise NotImplementedError

    async def answers(
        self,
        serving: Serving,
        version: str,
        requests: Sequence[Any],
        *,
        most: int,
        field: str | None = None,
    ) -> list[Any]:
        """The family's answers to the rows' requests through the JSON API's path (version, result cache,
        batcher, observation); a row that cannot be answered refuses the request, naming the row. `field` names
        the batch in a refusal (default: `batch_field()`)."""
        from inference.serving.pipeline import BatchLimit

        limit = BatchLimit(field or self.batch_field(), self.row_noun, most)
        outcome = await serving.answer_many(
            self.family,
            requests,
            caller_ids=[None] * len(requests),
            forced_version=version,
            limit=limit,
            endpoint="oip",
        )
        for row, answer in enumerate(outcome.answers):
            if isinstance(answer, InferenceError):
                if int(answer.status) >= 500:
                    raise answer
                raise ProtocolError(
                    400, f"row {row}: {answer.message}", code=self.row_code or answer.code, limit=answer.limit
                )
        return outcome.answers

    def batch_field(self) -> str:
        return "inputs"


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


class TextModels(ProtocolModel):
    """A text family: BYTES inputs of one text per row, answered through the family's serving path."""

    inputs: ClassVar[tuple[str, ...]]
    row_noun = "text"

    def metadata(self, name: str, version: str, family: VersionedFamily[Any]) -> dict[str, Any]:
        return {
            "platform": "sklearn",
            "inputs": [{"name": input_name, "datatype": "BYTES", "shape": [-1]} for input_name in self.inputs],
            "outputs": [
                {"name": output, "datatype": self.output_type(output), "shape": [-1]} for output in self.outputs
            ],
            "parameters": {"version": version},
        }

    def output_type(self, output: str) -> str:
        return "FP64" if output == "confidence" else "BYTES"

    def batch_field(self) -> str:
        return self.inputs[0]  # `text: at most 1000 texts per request`

    def texts(self, inputs: list[InputTensor]) -> list[list[str]]:
        """The texts of each expected input, by position in `self.inputs`; all of one length."""
        given = {tensor.name: tensor for tensor in inputs}
        if sorted(given) != sorted(self.inputs) or len(inputs) != len(self.inputs):
            raise ProtocolError(
                400, f"inputs: expected BYTES tensors named {', '.join(self.inputs)}; got {', '.join(given) or 'none'}"
            )
        columns = []
        for input_name in self.inputs:
            tensor = given[input_name]
            if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
                raise ProtocolError(
                    400, f"{input_name}: expected BYTES of shape [n], got {tensor.datatype} {tensor.shape}"
                )
            columns.append(list(tensor.values))
        lengths = {len(column) for column in columns}
        if len(lengths) != 1 or 0 in lengths:
            raise ProtocolError(400, f"inputs: {', '.join(self.inputs)} must hold the same number of texts, at least 1")
        return columns


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


@functools.cache
def protocol_models(plugins: tuple[str, ...] = ()) -> tuple[ProtocolModel, ...]:
    """The adapter of every registered family that has one (`FamilySpec.protocol`), in registration order."""
    from inference.families.registry import attribute, specs

    return tuple(attribute(spec.protocol)() for spec in specs(plugins).values() if spec.protocol)
