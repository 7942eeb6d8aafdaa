"""Both Python clients honour `Retry-After` on a retryable answer: the next attempt waits at least what the server
asked for (seconds or an HTTP-date), at most `RetryPolicy.max_retry_after_s`, and an answer without the header keeps
the jittered backoff. The gaps are measured by a scripted server of the test's own, as lower bounds: a busy machine
can only make them longer."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate
from typing import Any, TypeVar

import pytest

from inference.client import AsyncInferenceClient, InferenceClient, RetryPolicy, ServiceUnavailable
from inference.client.policy import retry_after_s, retry_wait_s
from inference.schemas import IntentResult
from tests.utils.stub_http import scripted_server

# A backoff far shorter than any Retry-After below, so a gap of a second can only come from the header.
FAST_RETRY = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)
OVERLOADED = {"error": "the worker is at its bound; retry after the Retry-After seconds", "code": "overloaded"}
ANSWER = {
    "intent": "local",
    "confidence": 0.9,
    "verticals": [],
    "variant": "classic",
    "model_version": "v1.0.0",
    "fallback": False,
}
CLIENTS = ["sync", "asyncio"]
T = TypeVar("T")


def classify(client: str, url: str, retry: RetryPolicy) -> IntentResult:
    """One `classify` call through the named client, with no fallback: a failure raises."""
    if client == "sync":
        with InferenceClient(url, retry=retry) as sync_client:
            return sync_client.classify("dentist near me")

    async def call() -> IntentResult:
        async with AsyncInferenceClient(url, retry=retry) as async_client:
            return await async_client.classify("dentist near me")

    return asyncio.run(call())


def finished_within(seconds: float, call: Callable[[], T]) -> T:
    """What `call()` returns or raises; the test fails, rather than hangs, when it takes longer than `seconds`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # handed to the test's thread below
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)  # left sleeping if the wait is not bounded
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def overloaded_then_answer(headers: Mapping[str, str]) -> list[tuple[int, object, Mapping[str, str]]]:
    return [(503, OVERLOADED, headers), (200, ANSWER, {})]


# --- over HTTP, both clients


@pytest.mark.parametrize("client", CLIENTS)
def test_a_503_with_retry_after_seconds_makes_the_next_attempt_wait_that_long(client):
    with scripted_server(overloaded_then_answer({"Retry-After": "1"})) as stub:
        assert classify(client, stub.url, FAST_RETRY).intent == "local"
        assert stub.calls == 2
        assert stub.gaps_s()[0] >= 1.0


@pytest.mark.clock
@pytest.mark.parametrize("client", CLIENTS)
def test_a_retry_after_http_date_makes_the_next_attempt_wait_until_then(client):
    # The answer's Date is sent from the same instant: the server's own Date, stamped a moment later, can fall in
    # the next whole second and leave one second to wait instead of two.
    now = time.time()
    headers = {"Date": formatdate(now, usegmt=True), "Retry-After": formatdate(now + 2, usegmt=True)}
    with scripted_server(overloaded_then_answer(headers)) as stub:
        assert classify(client, stub.url, FAST_RETRY).intent == "local"
        assert stub.gaps_s()[0] >= 1.5


@pytest.mark.clock
@pytest.mark.parametrize("client", CLIENTS)
def test_a_retry_after_date_is_read_against_the_answers_own_date_so_a_server_clock_an_hour_behind_still_waits(client):
    server_now = time.time() - 3600  # read against our clock, the date would be long past: no wait at all
    headers = {"Date": formatdate(server_now, usegmt=True), "Retry-After": formatdate(server_now + 2, usegmt=True)}
    with scripted_server(overloaded_then_answer(headers)) as stub:
        assert classify(client, stub.url, FAST_RETRY).intent == "local"
        assert stub.gaps_s()[0] >= 1.5


@pytest.mark.parametrize("client", CLIENTS)
def test_a_retry_after_longer_than_the_cap_waits_the_cap_and_then_tries_again(client):
    capped = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=1.0)
    with scripted_server(overloaded_then_answer({"Retry-After": "3600"})) as stub:
        assert finished_within(30, lambda: classify(client, stub.url, capped)).intent == "local"  # not an hour
        assert stub.calls == 2
        assert stub.gaps_s()[0] >= 1.0


@pytest.mark.parametrize("client", CLIENTS)
def test_a_503_without_retry_after_keeps_the_jittered_backoff(client):
    # Three retries on a backoff of at most 0.05 s; the 10 s cap, or the service's usual 1 s, would take 3 s or more.
    busy = (503, {"error": "models are loading", "code": "models_not_ready"}, {})
    with scripted_server([busy, busy, busy, (200, ANSWER, {})]) as stub:
        assert classify(client, stub.url, FAST_RETRY).intent == "local"
        assert stub.calls == 4
        assert sum(stub.gaps_s()) < 2.5


@pytest.mark.parametrize("client", CLIENTS)
def test_the_retries_still_run_out_when_every_answer_asks_to_wait(client):
    policy = RetryPolicy(retries=1, backoff_s=0.01, max_backoff_s=0.05)
    with scripted_server([(503, OVERLOADED, {"Retry-After": "1"})]) as stub:
        with pytest.raises(ServiceUnavailable, match="503 overloaded"):
            classify(client, stub.url, policy)
        assert stub.calls == 2
        assert stub.gaps_s()[0] >= 1.0


# --- the computation, no server


def test_the_wait_is_the_longer_of_the_jitter_and_the_retry_after_at_most_the_cap():
    assert retry_wait_s(0.03, None, 10.0) == 0.03  # no header: the backoff as before
    assert retry_wait_s(0.03, 1.0, 10.0) == 1.0
    assert retry_wait_s(0.8, 0.5, 10.0) == 0.8  # the jitter is longer
    assert retry_wait_s(0.03, 3600.0, 10.0) == 10.0
    assert retry_wait_s(0.03, math.inf, 10.0) == 10.0
    assert retry_wait_s(0.03, 5.0, 0.0) == 0.03  # a cap of 0 ignores the header


def test_retry_after_reads_seconds_and_ignores_what_is_neither_seconds_nor_a_date():
    assert retry_after_s({"Retry-After": "1"}) == 1.0
    assert retry_after_s({"Retry-After": " 120 "}) == 120.0
    assert retry_after_s({"Retry-After": "9" * 400}) == math.inf  # bounded by the cap, never an error
    for unreadable in ("", "soon", "-1", "1.5", "²"):
        assert retry_after_s({"Retry-After": unreadable}) is None, unreadable
    assert retry_after_s({}) is None


@pytest.mark.clock
def test_retry_after_reads_an_http_date_against_the_answers_date_else_the_local_clock():
    now = datetime.now(UTC).replace(microsecond=0)
    in_90_s = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_s({"Retry-After": in_90_s}, now=now) == 90.0
    behind = now - timedelta(hours=1)
    skewed = {
        "Date": format_datetime(behind, usegmt=True),
        "Retry-After": format_datetime(behind + timedelta(seconds=5), usegmt=True),
    }
    assert retry_after_s(skewed, now=now) == 5.0
    past = format_datetime(now - timedelta(minutes=1), usegmt=True)
    assert retry_after_s({"Retry-After": past}, now=now) == 0.0  # already past: retry on the backoff


def test_the_longest_call_counts_every_wait_at_the_retry_after_cap():
    policy = RetryPolicy(retries=3, max_backoff_s=1.0, max_retry_after_s=10.0)
    assert policy.longest_call_s(5.0) == 4 * 5.0 + 3 * 10.0
    assert RetryPolicy(retries=2, max_backoff_s=1.0, max_retry_after_s=0.0).longest_call_s(5.0) == 3 * 5.0 + 2 * 1.0


def test_a_negative_retry_after_cap_is_refused():
    with pytest.raises(ValueError, match="max_retry_after_s"):
        RetryPolicy(max_retry_after_s=-1)
