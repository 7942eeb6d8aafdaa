"""What a family implements to be served over the Open Inference Protocol (KServe's v2): a `ProtocolModel` names
its models, describes them and turns input tensors into the family's requests and its answers into output
tensors, through the JSON API's serving path (`Serving.answer_many`: version, result cache, batcher, observation,
limits), so a row scores the same on either protocol. `TextModels` is the base of a text family's adapter. The
wire format (JSON or binary tensors) is the HTTP edge's: `inference.http.oip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.serving.pipeline import Serving
    from inference.serving.versions import VersionedFamily


class ProtocolError(InferenceError):
    """A request the protocol refuses: 400, or 404 for a model or version this server does not have."""

    def __init__(self, status: int, message: str, *, code: str | None = None, limit: str | None = None) -> None:
        super().__init__(message)
        self.status = HTTPStatus(status)
        self.code = code or ("not_found" if status == 404 else "invalid_request")
        self.limit = limit


@dataclass(frozen=True)
class InputTensor:
    """One decoded input: numbers as a float64 array of its shape, BYTES as a flat list of strings."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[str]


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str  # FP64, INT64 or BYTES
    values: Sequence[Any]


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
