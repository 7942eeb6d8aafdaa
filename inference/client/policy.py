"""What both clients share: which failures are worth another attempt, how long to wait, and how an HTTP answer
becomes a result or an error. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

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
    (full jitter) but never longer than `max_backoff_s`. 4xx answers, 500 and timeouts are never retried.

    A retryable answer (502/503/504) that carries `Retry-After` (seconds, or an HTTP-date) makes the next attempt
    wait at least that long: the longer of the jittered backoff and the Retry-After. A Retry-After longer than
    `max_retry_after_s` waits `max_retry_after_s` and the client tries again, rather than giving up at once: the
    header may come from a proxy rather than the service, an HTTP-date from a clock that is off, and the number of
    retries still bounds what the service is asked; the caller's time stays bounded by `longest_call_s`.
    `max_retry_after_s=0` ignores the header."""

    retries: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    max_retry_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retry_after_s < 0:
            raise ValueError(f"max_retry_after_s: expected 0 or more seconds, got {self.max_retry_after_s}")

    def options(self) -> dict[str, Any]:
        """Arguments of tenacity's `Retrying` / `AsyncRetrying`."""
        return {
            "retry": retry_if_exception(is_retryable),
            "stop": stop_after_attempt(self.retries + 1),
            "wait": self._wait(),
            "reraise": True,
        }

    def longest_call_s(self, timeout_s: float) -> float:
        """The longest a call can take: every attempt timing out, every wait at its longest (a Retry-After at the
        cap when that is longer than the backoff's ceiling)."""
        longest_wait_s = max(self.max_backoff_s, self.max_retry_after_s)
        return (self.retries + 1) * timeout_s + self.retries * longest_wait_s

    def _wait(self) -> Callable[[RetryCallState], float]:
        jitter = wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked_s = retry_after_s(error.response.headers) if isinstance(error, RetryableStatus) else None
            return retry_wait_s(jitter(state), asked_s, self.max_retry_after_s)

        return wait


def retry_wait_s(jitter_s: float, asked_s: float | None, max_retry_after_s: float) -> float:
    """The wait before the next attempt: the jittered backoff, or the seconds the answer's Retry-After asked for
    (at most `max_retry_after_s`) when that is longer."""
    if asked_s is None:
        return jitter_s
    return max(jitter_s, min(asked_s, max_retry_after_s))


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The seconds an answer's `Retry-After` asks the client to wait, `None` without a readable one.

    The header holds seconds or an HTTP-date. A date is read against the answer's own `Date` header when it
    carries one (both come from the server's clock, so a server clock off by an hour still gets the wait it
    meant), else against `now` (the local clock); a date already past waits 0."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)  # a number too long for a float reads as infinity, which the cap then bounds
    asked = http_date(value)
    if asked is None:
        return None
    reference = http_date(headers.get("Date", "")) or now or datetime.now(UTC)
    return max((asked - reference).total_seconds(), 0.0)


def http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # A zone given as -0000 reads as naive; HTTP dates are in GMT.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


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
