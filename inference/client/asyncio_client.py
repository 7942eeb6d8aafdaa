"""The asyncio client: the same calls as `InferenceClient`, awaited; one pool of kept-alive connections."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from inference.client import calls
from inference.client.batching import AsyncBatcher, BatchMismatch
from inference.client.errors import RequestRejected, ServiceTimeout, ServiceUnavailable, UnexpectedAnswer
from inference.client.policy import IntentFallback, RetryableStatus, RetryPolicy, check_response, give_up
from inference.client.sync import DEFAULT_URL
from inference.schemas import (
    HealthResponse,
    IntentBatchResponse,
    IntentResult,
    ModelsResponse,
    SkillBatchResponse,
    SkillInferenceRequest,
    SkillInferenceResult,
    SkillModelsResponse,
    TextPairResult,
)

T = TypeVar("T")


class AsyncInferenceClient:
    """Calls the inference service from asyncio code; the options and errors are those of `InferenceClient`.
    Here `timeout_s` is one deadline for the whole attempt: waiting for a pooled connection, connecting, sending
    and reading the answer together. `batch_window_ms` coalesces single calls awaited within the window by
    concurrent tasks."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 1.0,
        retry: RetryPolicy | None = None,
        intent_fallback: IntentFallback | None = None,
        batch_window_ms: float | None = None,
        max_batch_size: int = 100,
        max_connections: int = 32,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Content-Type": "application/json", **(headers or {})},
            transport=transport,
        )
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._retry = retry or RetryPolicy()
        self._intent_fallback = intent_fallback
        self._batch_window_s = batch_window_ms / 1000 if batch_window_ms else None
        self._max_batch_size = max_batch_size
        self._batched_call_s = self._retry.longest_call_s(timeout_s) + (self._batch_window_s or 0) + 1.0
        self._closed = False
        self._skill_batcher: AsyncBatcher[bytes, SkillInferenceResult] | None = None
        self._intent_batchers: dict[str | None, AsyncBatcher[bytes, IntentResult]] = {}

    # --- skills

    async def infer_skill(
        self,
        student_id: str,
        skill: str,
        features: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        model_version: str | None = None,
        explain: bool = False,
    ) -> SkillInferenceResult:
        item = calls.skill_request(student_id, skill, features, explain=explain)
        if self._batch_window_s and model_version is None and timeout_s is None:
            if self._skill_batcher is None:
                self._skill_batcher = self._batcher(self._send_skills)
            return await self._coalesced(self._skill_batcher, item)
        return await self._run(calls.infer_skill(item, model_version), timeout_s)

    async def infer_skills(
        self, items: Sequence[SkillInferenceRequest | Mapping[str, Any]], *, timeout_s: float | None = None
    ) -> SkillBatchResponse:
        return await self._run(calls.infer_skills(items), timeout_s)

    # --- intent

    async def classify(
        self, text: str, *, user_id: str | None = None, variant: str | None = None, timeout_s: float | None = None
    ) -> IntentResult:
        if self._batch_window_s and user_id is None and timeout_s is None:
            item = calls.intent_text(text)
            if variant not in self._intent_batchers:
                self._intent_batchers[variant] = self._batcher(lambda texts: self._send_texts(texts, variant))
            try:
                return await self._coalesced(self._intent_batchers[variant], item)
            except ServiceUnavailable:
                if self._intent_fallback is None:
                    raise
                return self._intent_fallback.result()
        return await self._run(calls.classify(text, user_id, variant, self._intent_fallback), timeout_s)

    async def classify_ensemble(
        self, text: str, *, user_id: str | None = None, timeout_s: float | None = None
    ) -> IntentResult:
        return await self._run(calls.classify(text, user_id, None, self._intent_fallback, ensemble=True), timeout_s)

    async def classify_batch(
        self,
        texts: Sequence[str],
        *,
        user_id: str | None = None,
        variant: str | None = None,
        timeout_s: float | None = None,
    ) -> IntentBatchResponse:
        return await self._run(calls.classify_batch(texts, user_id, variant, self._intent_fallback), timeout_s)

    # --- text pair, models, health

    async def predict_pair(self, text1: str, text2: str, *, timeout_s: float | None = None) -> TextPairResult:
        return await self._run(calls.predict_pair(text1, text2), timeout_s)

    async def models(self) -> ModelsResponse:
        return await self._run(calls.models(), None)

    async def skill_models(self) -> SkillModelsResponse:
        return await self._run(calls.skill_models(), None)

    async def health(self) -> HealthResponse:
        return await self._run(calls.health(), None)

    async def close(self) -> None:
        """Send the calls waiting for a batch and wait for them, then close the connections."""
        self._closed = True
        batchers = [*self._intent_batchers.values(), *([self._skill_batcher] if self._skill_batcher else [])]
        for batcher in batchers:
            await batcher.close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- the one way a call goes out

    async def _run(self, call: calls.Call[T], timeout_s: float | None) -> T:
        try:
            return call.parse(await self._send(call, timeout_s))
        except ServiceUnavailable:
            if call.fallback is None:
                raise
            return call.fallback()

    async def _send(self, call: calls.Call[Any], timeout_s: float | None) -> httpx.Response:
        attempt_s = self._timeout_s if timeout_s is None else timeout_s
        timeout = httpx.Timeout(attempt_s, connect=min(self._connect_timeout_s, attempt_s))
        retrying = AsyncRetrying(**self._retry.options())

        async def attempt() -> httpx.Response:
            # httpx bounds each phase (pool wait, connect, write, each read) on its own; the deadline bounds them
            # together, so a call that first waits for a pooled connection still gets no more than attempt_s.
            try:
                async with asyncio.timeout(attempt_s):
                    response = await self._http.request(
                        call.method, call.path, content=call.body, headers=dict(call.headers), timeout=timeout
                    )
            except TimeoutError as err:
                raise ServiceTimeout(f"no answer within the timeout ({attempt_s:g} s for the attempt)") from err
            return check_response(response, call.accept_statuses)

        try:
            return await retrying(attempt)
        except (httpx.HTTPError, RetryableStatus) as error:  # anything else is a bug: it propagates as it is
            raise give_up(error, retrying.statistics.get("attempt_number", 1)) from error

    # --- coalescing

    def _batcher(self, send: Any) -> AsyncBatcher[bytes, Any]:
        if self._closed:
            raise RuntimeError("the client is closed")
        assert self._batch_window_s is not None
        return AsyncBatcher(send, window_s=self._batch_window_s, max_size=self._max_batch_size)

    async def _coalesced(self, batcher: AsyncBatcher[bytes, T], item: bytes) -> T:
        try:
            return await asyncio.wait_for(batcher.submit(item), self._batched_call_s)
        except TimeoutError as err:
            raise ServiceTimeout(f"no answer within {self._batched_call_s:.1f} s (coalesced call)") from err
        except BatchMismatch as err:
            raise UnexpectedAnswer(str(err)) from err

    async def _send_skills(self, items: Sequence[bytes]) -> list[SkillInferenceResult | RequestRejected]:
        return calls.skill_outcomes(await self._run(calls.skill_batch(items), None))

    async def _send_texts(self, texts: Sequence[bytes], variant: str | None) -> list[IntentResult | RequestRejected]:
        return calls.intent_outcomes(await self._run(calls.text_batch(texts, variant), None))
