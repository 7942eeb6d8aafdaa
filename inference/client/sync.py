"""The synchronous client: one pool of kept-alive connections, safe to share between threads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from inference.client import calls
from inference.client.batching import ThreadBatcher
from inference.client.errors import RequestRejected, ServiceUnavailable
from inference.client.policy import IntentFallback, RetryableStatus, RetryPolicy, check_response, give_up
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
DEFAULT_URL = "http://127.0.0.1:3000"


class InferenceClient:
    """Calls the inference service.

    - `timeout_s` bounds each attempt (connecting within `connect_timeout_s`); every call can pass its own.
    - Connection errors and 502/503/504 are retried (`retry`, 3 times by default, jittered exponential backoff);
      4xx answers raise `RequestRejected` at once, anything else that leaves no answer raises
      `ServiceUnavailable` (`ServiceTimeout` when the time ran out).
    - `intent_fallback`: `classify*` answer this default intent, flagged (`fallback=True`, variant
      `client_default`), instead of raising when the service cannot answer.
    - `batch_window_ms`: single `infer_skill` and `classify` calls made within this window from several threads
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=headers,
            transport=transport,
        )
        self._connect_timeout_s = connect_timeout_s
        self._retry = retry or RetryPolicy()
        self._intent_fallback = intent_fallback
        self._skill_batcher: ThreadBatcher[SkillInferenceRequest, SkillInferenceResult] | None = None
        self._intent_batchers: dict[str | None, ThreadBatcher[str, IntentResult]] = {}
        self._batch_window_s = batch_window_ms / 1000 if batch_window_ms else None
        self._max_batch_size = max_batch_size
        if self._batch_window_s:
            self._skill_batcher = ThreadBatcher(
                self._send_skill_batch, window_s=self._batch_window_s, max_size=max_batch_size
            )

    # --- skills

    def infer_skill(
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
            return self._skill_batcher.submit(request)
        return self._run(calls.infer_skill(request, model_version), timeout_s)

    def infer_skills(
        self, items: Sequence[SkillInferenceRequest | Mapping[str, Any]], *, timeout_s: float | None = None
    ) -> SkillBatchResponse:
        """Up to 1000 items; a bad item gets its error in place and the others are scored."""
        return self._run(calls.infer_skills(items), timeout_s)

    # --- intent

    def classify(
        self, text: str, *, user_id: str | None = None, variant: str | None = None, timeout_s: float | None = None
    ) -> IntentResult:
        """The intent of a query; `variant` is classic or ensemble (else the service's split, sticky per user)."""
        if self._batch_window_s and user_id is None and timeout_s is None:
            try:
                return self._intent_batcher(variant).submit(text)
            except ServiceUnavailable:
                if self._intent_fallback is None:
                    raise
                return self._intent_fallback.result()
        return self._run(calls.classify(text, user_id, variant, self._intent_fallback), timeout_s)

    def classify_ensemble(
        self, text: str, *, user_id: str | None = None, timeout_s: float | None = None
    ) -> IntentResult:
        return self._run(calls.classify(text, user_id, None, self._intent_fallback, ensemble=True), timeout_s)

    def classify_batch(
        self,
        texts: Sequence[str],
        *,
        user_id: str | None = None,
        variant: str | None = None,
        timeout_s: float | None = None,
    ) -> IntentBatchResponse:
        return self._run(calls.classify_batch(texts, user_id, variant, self._intent_fallback), timeout_s)

    # --- text pair, models, health

    def predict_pair(self, text1: str, text2: str, *, timeout_s: float | None = None) -> TextPairResult:
        return self._run(calls.predict_pair(text1, text2), timeout_s)

    def models(self) -> ModelsResponse:
        return self._run(calls.models(), None)

    def skill_models(self) -> SkillModelsResponse:
        return self._run(calls.skill_models(), None)

    def health(self) -> HealthResponse:
        return self._run(calls.health(), None)

    def close(self) -> None:
        if self._skill_batcher is not None:
            self._skill_batcher.close()
        for batcher in self._intent_batchers.values():
            batcher.close()
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the one way a call goes out

    def _run(self, call: calls.Call[T], timeout_s: float | None) -> T:
        try:
            response = self._send(call, timeout_s)
        except ServiceUnavailable:
            if call.fallback is None:
                raise
            return call.fallback()
        return call.parse(response)

    def _send(self, call: calls.Call[Any], timeout_s: float | None) -> httpx.Response:
        timeout = (
            httpx.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s)) if timeout_s is not None else None
        )
        retrying = Retrying(**self._retry.options())

        def attempt() -> httpx.Response:
            response = self._http.request(
                call.method,
                call.path,
                json=call.body,
                headers=dict(call.headers),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            return check_response(response, call.accept_statuses)

        try:
            return retrying(attempt)
        except (httpx.HTTPError, RetryableStatus) as error:  # anything else is a bug: it propagates as it is
            raise give_up(error, retrying.statistics.get("attempt_number", 1)) from error

    def _send_skill_batch(
        self, requests: Sequence[SkillInferenceRequest]
    ) -> list[SkillInferenceResult | RequestRejected]:
        return calls.skill_outcomes(self._run(calls.infer_skills(requests), None))

    def _intent_batcher(self, variant: str | None) -> ThreadBatcher[str, IntentResult]:
        if variant not in self._intent_batchers:
            assert self._batch_window_s is not None

            def send(texts: Sequence[str]) -> list[IntentResult | RequestRejected]:
                return calls.intent_outcomes(self._run(calls.classify_batch(texts, None, variant, None), None))

            self._intent_batchers.setdefault(
                variant, ThreadBatcher(send, window_s=self._batch_window_s, max_size=self._max_batch_size)
            )
        return self._intent_batchers[variant]
