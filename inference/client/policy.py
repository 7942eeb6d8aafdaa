"""What both clients share: which failures are worth another attempt, how long to wait, and how an HTTP answer
becomes a result or an error. No I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential

from inference.client.errors import InferenceClientError, RequestRejected, ServiceTimeout, ServiceUnavailable
from inference.schemas import IntentResult

RETRYABLE_STATUSES = frozenset({502, 503, 504})  # a gateway or a busy, starting or stopping server
# Failures that leave no answer and cost no time budget: the connection was refused, or a connection was closed
# (by the server, or a proxy reloading) before an answer came. The request may or may not have reached the
# service; every scoring endpoint is a read without side effects, so sending it again is safe, but the service
# may do the work twice. Timeouts are not here: the time is spent.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
CLIENT_DEFAULT_VARIANT = "client_default"  # the `variant` of an answer the client made up (fallback)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` more attempts after the first, waiting a random time up to `backoff_s * 2**attempt`
    (full jitter) but never longer than `max_backoff_s`. 4xx answers, 500 and timeouts are never retried."""

    retries: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def options(self) -> dict[str, Any]:
        """Arguments of tenacity's `Retrying` / `AsyncRetrying`."""
        return {
            "retry": retry_if_exception(is_retryable),
            "stop": stop_after_attempt(self.retries + 1),
            "wait": wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            "reraise": True,
        }

    def longest_call_s(self, timeout_s: float) -> float:
        """The longest a call can take: every attempt timing out, every wait at its longest."""
        return (self.retries + 1) * timeout_s + self.retries * self.max_backoff_s


@dataclass(frozen=True)
class IntentFallback:
    """The answer `classify` gives, flagged, when the service is unreachable or too slow: the application keeps
    working with a neutral intent instead of an error."""

    intent: str = "informational"

    def result(self) -> IntentResult:
        return IntentResult(
            intent=self.intent,
            confidence=0.0,
            verticals=[],
            variant=CLIENT_DEFAULT_VARIANT,
            model_version=None,
            fallback=True,
        )


class RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def check_response(response: httpx.Response, accept: frozenset[int] = frozenset()) -> httpx.Response:
    """The response when it is a success (or its status is in `accept`); raises `RetryableStatus` for
    502/503/504, `RequestRejected` for 4xx, `ServiceUnavailable` for any other failure."""
    status = response.status_code
    if status < 400 or status in accept:
        return response
    if status in RETRYABLE_STATUSES:
        raise RetryableStatus(response)
    code, message = error_fields(response)
    if status < 500:
        raise RequestRejected(status, code, message)
    raise ServiceUnavailable(f"{status} {code}: {message}")


def error_fields(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of the service's error shape `{"error": message, "code": code}`; BentoML's own 4xx
    (`{"error": ..., "detail": [...]}` or a list of them) are read too."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "http_error", response.text[:500] or response.reason_phrase
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        return str(body.get("code", "invalid_request")), str(body.get("error", body))
    return "http_error", str(body)[:500]


def give_up(error: BaseException, attempts: int) -> InferenceClientError:
    """The error a call raises once it stops trying."""
    if isinstance(error, InferenceClientError):
        return error
    if isinstance(error, httpx.TimeoutException):
        return ServiceTimeout(f"no answer within the timeout ({type(error).__name__})")
    if isinstance(error, RetryableStatus):
        code, message = error_fields(error.response)
        return ServiceUnavailable(f"{error.response.status_code} {code}: {message} (after {attempts} attempts)")
    return ServiceUnavailable(f"{type(error).__name__}: {error} (after {attempts} attempts)")


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, (RetryableStatus, *RETRYABLE_ERRORS))
