"""The asyncio client: the same calls as `InferenceClient`, awaited; one pool of kept-alive connections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from inference.client import calls
from inference.client.batching import AsyncBatcher
from inference.client.errors import RequestRejected, ServiceUnavailable
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
    """Calls the inference service from asyncio code; see `InferenceClient` for the options.

    - `timeout_s` bounds each attempt (connecting within `connect_timeout_s`); every call can pass its own.
    - Connection errors and 502/503/504 are retried (`retry`, 3 times by default, jittered exponential backoff);
      4xx answers raise `RequestRejected` at once, anything else that leaves no answer raises
      `ServiceUnavailable` (`ServiceTimeout` when the time ran out).
    - `intent_fallback`: `classify*` answer this default intent, flagged (`fallback=True`, variant
      `client_default`), instead of raising when the service cannot answer.
    - `batch_window_ms`: single `infer_skill` and `classify` calls awaited within this window by concurrent tasks
      travel as one batch request (at most `max_batch_size` items).
    """

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
            headers=headers,
            transport=transport,
        )
        self._connect_timeout_s = connect_timeout_s
        self._retry = retry or RetryPolicy()
        self._intent_fallback = intent_fallback
        self._skill_batcher: AsyncBatcher[SkillInferenceRequest, SkillInferenceResult] | None = None
        self._intent_batchers: dict[str | None, AsyncBatcher[str, IntentResult]] = {}
        self._batch_window_s = batch_window_ms / 1000 if batch_window_ms else None
        self._max_batch_size = max_batch_size
        if self._batch_window_s:
            self._skill_batcher = AsyncBatcher(
                self._send_skill_batch, window_s=self._batch_window_s, max_size=max_batch_size
            )

    # --- skills

    async def infer_skill(
        self,
        student_id: str,
        skill: str,
        features: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        model_version: str | None = None,
    ) -> SkillInferenceResult:
        """One student's score for one skill. `model_version` asks for that version (X-Model-Variant)."""
        request = calls.skill_request(student_id, skill, features)
        if self._skill_batcher is not None and model_version is None and timeout_s is None:
            return await self._skill_batcher.submit(request)
        return await self._run(calls.infer_skill(request, model_version), timeout_s)

    async def infer_skills(
        self, items: Sequence[SkillInferenceRequest | Mapping[str, Any]], *, timeout_s: float | None = None
    ) -> SkillBatchResponse:
        """Up to 1000 items; a bad item gets its error in place and the others are scored."""
        return await self._run(calls.infer_skills(items), timeout_s)

    # --- intent

    async def classify(
        self, text: str, *, user_id: str | None = None, variant: str | None = None, timeout_s: float | None = None
    ) -> IntentResult:
        """The intent of a query; `variant` is classic or ensemble (else the service's split, sticky per user)."""
        if self._batch_window_s and user_id is None and timeout_s is None:
            try:
                return await self._intent_batcher(variant).submit(text)
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
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- the one way a call goes out

    async def _run(self, call: calls.Call[T], timeout_s: float | None) -> T:
        try:
            response = await self._send(call, timeout_s)
        except ServiceUnavailable:
            if call.fallback is None:
                raise
            return call.fallback()
        return call.parse(response)

    async def _send(self, call: calls.Call[Any], timeout_s: float | None) -> httpx.Response:
        timeout = (
            httpx.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s)) if timeout_s is not None else None
        )
        retrying = AsyncRetrying(**self._retry.options())

        async def attempt() -> httpx.Response:
            response = await self._http.request(
                call.method,
                call.path,
                json=call.body,
                headers=dict(call.headers),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            return check_response(response, call.accept_statuses)

        try:
            return await retrying(attempt)
        except (httpx.HTTPError, RetryableStatus) as error:  # anything else is a bug: it propagates as it is
            raise give_up(error, retrying.statistics.get("attempt_number", 1)) from error

    async def _send_skill_batch(
        self, requests: Sequence[SkillInferenceRequest]
    ) -> list[SkillInferenceResult | RequestRejected]:
        return calls.skill_outcomes(await self._run(calls.infer_skills(requests), None))

    def _intent_batcher(self, variant: str | None) -> AsyncBatcher[str, IntentResult]:
        if variant not in self._intent_batchers:
            assert self._batch_window_s is not None

            async def send(texts: Sequence[str]) -> list[IntentResult | RequestRejected]:
                batch = await self._run(calls.classify_batch(texts, None, variant, None), None)
                return calls.intent_outcomes(batch)

            self._intent_batchers.setdefault(
                variant, AsyncBatcher(send, window_s=self._batch_window_s, max_size=self._max_batch_size)
            )
        return self._intent_batchers[variant]
