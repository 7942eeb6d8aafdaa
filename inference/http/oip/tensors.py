"""Tensors of the Open Inference Protocol on the wire: a JSON header, and with the binary extension
(`Inference-Header-Content-Length`) the tensor bytes after it, both ways, as tritonclient sends and asks for them.

Numbers travel as FP32/FP64/INT64, text as BYTES: in JSON a list of strings, in binary each element a 4-byte
little-endian length and its bytes (Triton's layout). Every error is a `ProtocolError` naming the tensor.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.responses import JSONResponse, Response

from inference.serving.tensors import InputTensor, OutputTensor, ProtocolError

__all__ = ["InputTensor", "OutputTensor", "ProtocolError"]  # the wire's types, defined with the models' interface

HEADER_LENGTH = "inference-header-content-length"
NUMBER_TYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT64": np.dtype("<i8")}
LENGTH = struct.Struct("<I")  # a BYTES element's length prefix in the binary layout
MAX_INPUTS = 16  # no model here takes more than two input tensors
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class TensorLimits:
    """How large the input tensors of one request may be, checked against their declared shapes before any data
    is read: rows (the first dimension: items, as INFERENCE_MAX_BATCH_ITEMS) and elements per tensor."""

    rows: int
    elements: int


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary tensor data after it (the binary extension), or the JSON alone."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(400, f"Inference-Header-Content-Length: not a number: {header_length!r}") from None
        if not 0 < size <= len(body):
            raise ProtocolError(400, f"Inference-Header-Content-Length: {size} is outside the body's {len(body)} bytes")
    try:
        header = orjson.loads(body[:size])
    except orjson.JSONDecodeError:
        # orjson refuses NaN and Infinity, which tritonclient writes for missing and infinite numbers: the
        # standard parser takes them (a lone surrogate it lets through is refused with its text, `invalid_text`).
        try:
            header = json.loads(body[:size])
        except (ValueError, RecursionError) as err:
            raise ProtocolError(400, f"request body: not valid JSON ({err})", code="invalid_json") from None
    if not isinstance(header, dict):
        raise ProtocolError(400, "request body: expected a JSON object with `inputs`")
    return header, body[size:]


def decode_inputs(header: dict[str, Any], binary: bytes, limits: TensorLimits) -> list[InputTensor]:
    """Every input tensor of the request, in order; binary data is taken from `binary` in the inputs' order. Each
    tensor's declared shape is checked against `limits` before its data is read."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(item, dict) for item in inputs):
        raise ProtocolError(400, "inputs: expected a list of tensors")
    if len(inputs) > MAX_INPUTS:
        raise ProtocolError(400, f"inputs: at most {MAX_INPUTS} tensors, got {len(inputs)}")
    decoded, offset = [], 0
    for index, tensor in enumerate(inputs):
        name = tensor.get("name")
        name = name if isinstance(name, str) and name else f"inputs[{index}]"
        datatype = tensor.get("datatype")
        if datatype not in NUMBER_TYPES and datatype != "BYTES":
            raise ProtocolError(400, f"{name}: unsupported datatype {datatype!r}")
        shape = tensor.get("shape")
        if not (
            isinstance(shape, list)
            and 0 < len(shape) <= MAX_DIMENSIONS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ProtocolError(400, f"{name}: shape must be a list of 1 to {MAX_DIMENSIONS} sizes, got {shape!r}")
        count = math.prod(shape)
        if shape[0] > limits.rows:
            raise ProtocolError(
                400,
                f"{name}: at most {limits.rows} rows per request (INFERENCE_MAX_BATCH_ITEMS), got {shape[0]}",
                code="batch_too_large",
                limit="batch_items",
            )
        if count > limits.elements:
            raise ProtocolError(
                400,
                f"{name}: at most {limits.elements} elements per tensor, got {count} ({shape})",
                code="batch_too_large",
                limit="batch_items",
            )
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ProtocolError(400, f"{name}: binary_data_size {size!r} is past the end of the body")
            raw, offset = binary[offset : offset + size], offset + size
            values = _from_binary(name, datatype, raw, count)
        else:
            values = _from_json(name, datatype, tensor.get("data"), count)
        decoded.append(InputTensor(name, datatype, shape, values))
    if offset != len(binary):
        raise ProtocolError(400, f"{len(binary) - offset} bytes of binary data belong to no input")
    return decoded


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray | list[str]:
    if datatype != "BYTES":
        dtype = NUMBER_TYPES[datatype]
        if len(raw) != count * dtype.itemsize:
            raise ProtocolError(400, f"{name}: {len(raw)} bytes do not hold {count} values of {datatype}")
        values: np.ndarray = np.frombuffer(raw, dtype=dtype).astype(np.float64)
        return values
    texts: list[str] = []
    position = 0
    while position < len(raw):
        if position + LENGTH.size > len(raw):
            raise ProtocolError(400, f"{name}: element {len(texts)}: truncated length prefix")
        (length,) = LENGTH.unpack_from(raw, position)
        position += LENGTH.size
        if position + length > len(raw):
            raise ProtocolError(400, f"{name}: element {len(texts)}: {length} bytes announced, fewer sent")
        texts.append(_text(name, len(texts), raw[position : position + length]))
        position += length
    if len(texts) != count:
        raise ProtocolError(400, f"{name}: {len(texts)} elements for {count} in the shape")
    return texts


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray | list[str]:
    if isinstance(data, list) and len(data) > count:  # more values than the shape holds, before converting any
        raise ProtocolError(400, f"{name}: more values than the {count} the shape holds")
    if datatype != "BYTES":
        try:
            flat = np.asarray(data, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ProtocolError(400, f"{name}: data must be numbers (null for a missing value)") from None
        if flat.size != count:
            raise ProtocolError(400, f"{name}: {flat.size} values for {count} in the shape")
        return flat
    flat_texts = list(_flatten(data)) if isinstance(data, list) else None
    if flat_texts is None or not all(isinstance(text, str) for text in flat_texts):
        raise ProtocolError(400, f"{name}: BYTES data must be a list of strings")
    if len(flat_texts) != count:
        raise ProtocolError(400, f"{name}: {len(flat_texts)} strings for {count} in the shape")
    return flat_texts


def _flatten(data: list[Any]) -> Any:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _text(name: str, index: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, f"{name}: element {index}: not UTF-8 text") from None


def requested_outputs(header: dict[str, Any], available: Sequence[str]) -> list[tuple[str, bool]]:
    """The outputs asked for (all when none is named), each with whether it goes back as binary data."""
    binary_all = bool((header.get("parameters") or {}).get("binary_data_output"))
    requested = header.get("outputs")
    if not requested:
        return [(name, binary_all) for name in available]
    wanted = []
    for output in requested:
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str) or name not in available:
            raise ProtocolError(400, f"outputs: unknown output {name!r}; this model has {', '.join(available)}")
        wanted.append((name, bool((output.get("parameters") or {}).get("binary_data", binary_all))))
    return wanted


def encode_answer(
    header: dict[str, Any], name: str, version: str, outputs: Sequence[OutputTensor], available: Sequence[str]
) -> Response:
    """The inference answer: the outputs asked for, each as JSON data or binary after the JSON header."""
    by_name = {output.name: output for output in outputs}
    answer: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": []}
    if "id" in header:
        answer["id"] = header["id"]
    tail = []
    for output_name, binary in requested_outputs(header, available):
        output = by_name[output_name]
        tensor: dict[str, Any] = {"name": output_name, "datatype": output.datatype, "shape": [len(output.values)]}
        if binary:
            raw = _to_binary(output)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif output.datatype == "BYTES":
            tensor["data"] = list(output.values)
        else:
            tensor["data"] = np.asarray(output.values, dtype=NUMBER_TYPES[output.datatype]).tolist()
        answer["outputs"].append(tensor)
    if not tail:
        return JSONResponse(answer)
    head = json.dumps(answer).encode()
    return Response(
        head + b"".join(tail),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )


def _to_binary(output: OutputTensor) -> bytes:
    if output.datatype != "BYTES":
        encoded: bytes = np.asarray(output.values, dtype=NUMBER_TYPES[output.datatype]).tobytes()
        return encoded
    parts = []
    for value in output.values:
        encoded = str(value).encode("utf-8")
        parts += [LENGTH.pack(len(encoded)), encoded]
    return b"".join(parts)
