"""The family's wire types and how a body becomes its requests (with the callers' ids, for sticky versions)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from inference.schemas import ErrorDetail


class ToxicityRequest(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    user_id: str | None = Field(None, max_length=128)


class ToxicityBatch(BaseModel):
    texts: list[str]
    user_id: str | None = Field(None, max_length=128)


class ToxicityResult(BaseModel):
    toxic: bool
    probability: float
    model_version: str
    cached: bool = False


class ToxicityFailure(BaseModel):
    index: int
    error: ErrorDetail


class ToxicityBatchResponse(BaseModel):
    results: list[ToxicityResult | ToxicityFailure]
    succeeded: int
    failed: int


def one_request(body: ToxicityRequest, headers: Mapping[str, str]) -> tuple[list[str], list[str | None]]:
    return [body.text], [body.user_id]


def batch_requests(body: ToxicityBatch, headers: Mapping[str, str]) -> tuple[list[str], list[str | None]]:
    return list(body.texts), [body.user_id] * len(body.texts)
