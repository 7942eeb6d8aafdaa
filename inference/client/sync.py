"""The synchronous client: one pool of kept-alive connections, safe to share between threads."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from inference.client import calls
from inference.client.batching import BatchMismatch, ThreadBatcher
from inference.client.errors import RequestRejected, ServiceTimeout, ServiceUnavailable, UnexpectedAnswer
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

    - `timeout_s` bounds each phase of an attempt on its own, as httpx does (it has no deadline for a whole request
      on blocking sockets): waiting for a pooled connection, sending, and each wait for bytes of the answer; making
      a connection is bounded by `connect_timeout_s`. An attempt that waits for a pooled connection and then for a
      slow answer can therefore take up to twice `timeout_s` plus the connect time, and an answer that keeps trickling in
      is bounded per read only. `AsyncInferenceClient` bounds the attempt as a whole. Every call can pass its own
      `timeout_s`. A timeout is not retried.
    - A refused or dropped connection and 502/503/504 are retried (`retry`: 3 times by default, jittered
      exponential backoff, and at least an answer's `Retry-After`, at most `RetryPolicy.max_retry_after_s`);
      a 4xx raises `RequestRejected` at once, anything that leaves no usable answer raises `ServiceUnavailable`
      (`ServiceTimeout` when the time ran out); input that cannot be sent raises `InvalidInput` before anything
      is sent.
    - `intent_fallback`: `classify*` answer this default intent, flagged (`fallback=True`, variant
      `client_default`), instead of raising `ServiceUnavailable`; a 4xx still raises.
    - `batch_window_ms`: single `infer_skill` and `classify` calls made within this window from several threads
      travel as one batch request (at most `max_batch_size` items; keep it at or below the service's
      INFERENCE_MAX_BATCH_ITEMS). A bad item fails its own call only.
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
            headers={"Content-Type": "application/json", **(headers or {})},
            transport=transport,
        )
        self._connect_timeout_s = connect_timeout_s
        self._retry = retry or RetryPolicy()
        self._intent_fallback = intent_fallback
        self._batch_window_s = batch_window_ms / 1000 if batch_window_ms else None
        self._max_batch_size = max_batch_size
        # A coalesced call waits at most for its batch's whole retry sequence, plus the window.
        self._batched_call_s = self._retry.longest_call_s(timeout_s) + (self._batch_window_s or 0) + 1.0
        self._lock = threading.Lock()
        self._closed = False
        self._skill_batcher: ThreadBatcher[bytes, SkillInferenceResult] | None = None
        self._intent_batchers: dict[str | None, ThreadBatcher[bytes, IntentResult]] = {}

    # --- skills

    def infer_skill(
        self,
        student_id: str,
        skill: str,
        features: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        model_version: str | None = None,
        explain: bool = False,
    ) -> SkillInferenceResult:
        """One student's score for one skill. `model_version` asks for that version (X-Model-Version); `explain`
        for the top feature contributions (docs/explanations.md)."""
        item = calls.skill_request(student_id, skill, features, explain=explain)
        if self._batch_window_s and model_version is None and timeout_s is None:
            return self._coalesced(self._skills(), item)
        return self._run(calls.infer_skill(item, model_version), timeout_s)

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
            item = calls.intent_text(text)
            try:
                return self._coalesced(self._intents(variant), item)
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
        """Up to 1000 texts, answered in order; with a fallback, every text gets the default when the service
        cannot answer (also texts it would have refused)."""
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
        """Send the calls waiting for a batch, then close the connections."""
        with self._lock:
            self._closed = True
            batchers = [*self._intent_batchers.values(), *([self._skill_batcher] if self._skill_batcher else [])]
        for batcher in batchers:
            batcher.close()
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the one way a call goes out

    def _run(self, call: calls.Call[T], timeout_s: float | None) -> T:
        try:
            return call.parse(self._send(call, timeout_s))
        except ServiceUnavailable:
            if call.fallback is None:
                raise
            return call.fallback()

    def _send(self, call: calls.Call[Any], timeout_s: float | None) -> httpx.Response:
        timeout: httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
        if timeout_s is not None:
            timeout = httpx.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s))
        retrying = Retrying(**self._retry.options())

        def attempt() -> httpx.Response:
            response = self._http.request(
                call.method, call.path, content=call.body, headers=dict(call.headers), timeout=timeout
            )
            return check_response(response, call.accept_statuses)

        try:
            return retrying(attempt)
        except (httpx.HTTPError, RetryableStatus) as error:  # anything else is a bug: it propagates as it is
            raise give_up(error, retrying.statistics.get("attempt_number", 1)) from error

    # --- coalescing

    def _coalesced(self, batcher: ThreadBatcher[bytes, T], item: bytes) -> T:
        try:
            return batcher.submit(item, timeout_s=self._batched_call_s)
        except FutureTimeout as err:
            raise ServiceTimeout(f"no answer within {self._batched_call_s:.1f} s (coalesced call)") from err
        except BatchMismatch as err:
            raise UnexpectedAnswer(str(err)) from err

    def _skills(self) -> ThreadBatcher[bytes, SkillInferenceResult]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._skill_batcher is None:
                self._skill_batcher = self._batcher(_send_skills)
            return self._skill_batcher

    def _intents(self, variant: str | None) -> ThreadBatcher[bytes, IntentResult]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            if variant not in self._intent_batchers:
                self._intent_batchers[variant] = self._batcher(
                    lambda client, texts: _send_texts(client, texts, variant)
                )
            return self._intent_batchers[variant]

    def _batcher(self, send: Callable[[InferenceClient, Sequence[bytes]], list[Any]]) -> ThreadBatcher[bytes, Any]:
        # The batcher's threads hold the client only weakly, so a client the program drops without closing is
        # collected, and its batcher closed with it.
        client = weakref.ref(self)

        def send_batch(items: Sequence[bytes]) -> list[Any]:
            alive = client()
            if alive is None:
                raise ServiceUnavailable("the client was closed")
            return send(alive, items)

        assert self._batch_window_s is not None
        batcher: ThreadBatcher[bytes, Any] = ThreadBatcher(
            send_batch, window_s=self._batch_window_s, max_size=self._max_batch_size
        )
        weakref.finalize(self, batcher.close)
        return batcher


def _send_skills(client: InferenceClient, items: Sequence[bytes]) -> list[SkillInferenceResult | RequestRejected]:
    return calls.skill_outcomes(client._run(calls.skill_batch(items), None))


def _send_texts(
    client: InferenceClient, texts: Sequence[bytes], variant: str | None
) -> list[IntentResult | RequestRejected]:
    return calls.intent_outcomes(client._run(calls.text_batch(texts, variant), None))
