"""The protocol's messages as models, for the OpenAPI document (the routes read and write the wire themselves,
`tensors.py`, as the binary extension is not JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="binary_tensor_data: tensors may travel as bytes after the JSON.")


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    version: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="FP32, FP64, INT64 or BYTES.")
    shape: list[int] = Field(description="-1 for a dimension of any size.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The versions loaded.")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(
        description="version; for a skill, feature_names (the column order) and features (each column's schema)."
    )


class RequestInput(BaseModel):
    name: str
    datatype: str = Field(description="FP32 or FP64 for the skills' features, BYTES for texts.")
    shape: list[int]
    data: list[Any] | None = Field(None, description="Row-major values; absent when sent as binary data.")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the bytes after the JSON.")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: answer this output as bytes.")


class InferRequest(BaseModel):
    id: str | None = Field(None, description="Echoed in the answer.")
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="The outputs wanted; all when absent.")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_output: every output as bytes.")


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class ProtocolErrorBody(BaseModel):
    error: str
    code: str | None = Field(None, description="The error's stable code, as the JSON API's (docs/api.md).")
