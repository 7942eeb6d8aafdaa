"""The Python clients against a real server: typed results for every family, 4xx never retried, connections
dropped by a proxy retried, timeouts against a deliberately slow server, an unreachable port, the intent
fallback, and client-side batching of concurrent single calls."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlparse

import httpx
import pytest

from inference.client import (
    CLIENT_DEFAULT_VARIANT,
    AsyncInferenceClient,
    InferenceClient,
    IntentFallback,
    InvalidInput,
    RequestRejected,
    RetryPolicy,
    ServiceTimeout,
    ServiceUnavailable,
    UnexpectedAnswer,
)
from inference.schemas import (
    IntentResult,
    SkillInferenceFailure,
    SkillInferenceResult,
    TextPairResult,
)
from tests.utils.proxy import dropping_proxy
from tests.utils.requests import student_items
from tests.utils.servers import free_port
from tests.utils.stub_http import scripted_server

pytestmark = pytest.mark.server

FAST_RETRY = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)
ITEMS = student_items(60, seed=91)


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self._lock = threading.Lock()  # batches are sent from several threads at once

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests += 1
        return super().handle_request(request)


class SignallingAsyncTransport(httpx.AsyncHTTPTransport):
    """Counts requests and sets `sent` when the first one goes out."""

    def __init__(self, *, max_connections: int) -> None:
        super().__init__(limits=httpx.Limits(max_connections=max_connections))
        self.requests = 0
        self.sent = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.sent.set()
        return await super().handle_async_request(request)


@contextmanager
def full_accept_queue() -> Iterator[str]:
    """The URL of a port whose accept queue is full: the kernel drops further connection attempts unanswered, so
    making a connection times out (a server too busy to accept, or a firewall that drops)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):  # takes the queue's one place, never accepted
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_every_family_answers_with_the_services_own_models(server):
    with InferenceClient(server.url) as client:
        item = ITEMS[0]
        skill = client.infer_skill(item["student_id"], item["skill"], item["features"])
        assert isinstance(skill, SkillInferenceResult) and 0 <= skill.score <= 1 and skill.model_version == "v1.0.0"
        raw = httpx.post(server.url + "/api/v1/skills/infer", json=item).json()
        assert skill.model_dump() == {**raw, "cached": skill.cached}
        batch = client.infer_skills([*ITEMS[:3], {**ITEMS[3], "skill": "teamwork"}])
        assert (batch.succeeded, batch.failed) == (3, 1)
        assert isinstance(batch.results[3], SkillInferenceFailure) and batch.results[3].error.code == "unknown_skill"
        intent = client.classify("dentist near me", variant="ensemble")
        assert isinstance(intent, IntentResult) and intent.variant == "ensemble" and not intent.fallback
        assert client.classify_ensemble("chase login").variant == "ensemble"
        texts = client.classify_batch(["chase login", "   "], variant="classic")
        assert (texts.succeeded, texts.failed) == (1, 1)
        pair = client.predict_pair("the doctor fixed the car", "the physician repaired the car")
        assert isinstance(pair, TextPairResult) and pair.prediction in (0, 1)
        assert {family.family for family in client.models().families} == {"skills", "intent", "textpair"}
        assert len(client.skill_models().models) == 7
        assert client.health().status == "ok"


def test_a_client_mistake_raises_request_rejected_naming_the_field_and_is_never_retried(server):
    with InferenceClient(server.url) as client, pytest.raises(RequestRejected) as rejected:
        client.infer_skill("s-1", "creativity", {"novel_idea_count": "lots"})
    assert rejected.value.status == 400 and rejected.value.code == "invalid_feature_value"
    assert "features.novel_idea_count" in rejected.value.message
    body = {"error": "features.x: bad", "code": "invalid_feature_value"}
    with scripted_server([(400, body), (200, {})]) as stub, InferenceClient(stub.url, retry=FAST_RETRY) as client:
        with pytest.raises(RequestRejected):
            client.infer_skill("s-1", "creativity", {"x": 1})
        assert stub.calls == 1


def test_502_503_504_are_retried_with_backoff_and_then_reported(server):
    answer = httpx.post(server.url + "/api/v1/skills/infer", json=ITEMS[0]).json()
    busy = [(503, {"error": "busy", "code": "models_not_ready"}), (502, {}), (504, {})]
    with scripted_server([*busy, (200, answer)]) as stub, InferenceClient(stub.url, retry=FAST_RETRY) as client:
        item = ITEMS[0]
        assert client.infer_skill(item["student_id"], item["skill"], item["features"]).score == answer["score"]
        assert stub.calls == 4
    with scripted_server([(503, {"error": "busy", "code": "models_not_ready"})]) as stub:
        with InferenceClient(stub.url, retry=FAST_RETRY) as client, pytest.raises(ServiceUnavailable) as failed:
            client.infer_skill("s-1", "creativity", {"novel_idea_count": 1})
        assert stub.calls == 4 and "503 models_not_ready" in str(failed.value)


def test_a_dropped_connection_is_retried_through_a_proxy_to_the_real_server(server):
    port = urlparse(server.url).port
    with dropping_proxy(port, drop_first=2) as proxy, InferenceClient(proxy_url(proxy), retry=FAST_RETRY) as client:
        item = ITEMS[1]
        result = client.infer_skill(item["student_id"], item["skill"], item["features"])
        assert result.student_id == item["student_id"] and proxy.accepted == 3
    with dropping_proxy(port, drop_first=10) as proxy, InferenceClient(proxy_url(proxy), retry=FAST_RETRY) as client:
        with pytest.raises(ServiceUnavailable, match="after 4 attempts"):
            client.predict_pair("a", "b")
        assert proxy.accepted == 4


def proxy_url(proxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def test_a_slow_endpoint_times_out_quickly_with_a_clear_error_and_is_not_retried(slow_server):
    transport = CountingTransport()
    with InferenceClient(slow_server.url, retry=FAST_RETRY, transport=transport) as client:
        started = time.monotonic()
        with pytest.raises(ServiceTimeout):
            client.predict_pair("a cat", "a dog", timeout_s=0.3)
        assert time.monotonic() - started < 1.5  # it gave up before the service's 1.5 s answer
        assert transport.requests == 1  # a timeout is not retried
        assert client.predict_pair("a cat", "a dog", timeout_s=10).prediction in (0, 1)  # a longer timeout waits


def test_a_connect_timeout_is_not_retried_and_intent_falls_back():
    with full_accept_queue() as url:
        transport = CountingTransport()
        with InferenceClient(url, connect_timeout_s=0.2, retry=FAST_RETRY, transport=transport) as client:
            with pytest.raises(ServiceTimeout, match="ConnectTimeout"):
                client.predict_pair("a", "b")
            assert transport.requests == 1
        with InferenceClient(url, connect_timeout_s=0.2, intent_fallback=IntentFallback(), retry=FAST_RETRY) as client:
            assert client.classify("dentist near me").variant == CLIENT_DEFAULT_VARIANT


def test_the_async_clients_timeout_bounds_the_whole_attempt_waiting_for_a_connection_included(slow_server):
    """One pooled connection, held 1.5 s by a first call. The second call waits for it, then the service takes
    1.5 s more: its answer would come 3 s after the call started. With httpx's per-phase timeouts alone (2 s to
    wait for the connection, then 2 s to read) it would arrive; the 2 s deadline of the attempt ends it first."""

    async def scenario() -> None:
        transport = SignallingAsyncTransport(max_connections=1)
        async with AsyncInferenceClient(slow_server.url, retry=FAST_RETRY, transport=transport) as client:
            first = asyncio.create_task(client.predict_pair("a cat", "a dog", timeout_s=10))
            # The transport takes the pool's one connection before it first yields to the event loop.
            await transport.sent.wait()
            with pytest.raises(ServiceTimeout, match="for the attempt"):
                await client.predict_pair("a cat", "a dog", timeout_s=2.0)
            assert (await first).prediction in (0, 1)
            assert transport.requests == 2  # the deadline is a timeout: not retried

    asyncio.run(scenario())


def test_intent_falls_back_to_the_configured_answer_when_slow_or_unreachable(slow_server):
    fallback = IntentFallback("navigational")
    with InferenceClient(slow_server.url, intent_fallback=fallback, retry=FAST_RETRY) as client:
        answer = client.classify("dentist near me", timeout_s=0.3)
        assert (answer.intent, answer.fallback, answer.variant) == ("navigational", True, CLIENT_DEFAULT_VARIANT)
        batch = client.classify_batch(["a", "b"], timeout_s=0.3)
        assert [result.variant for result in batch.results] == [CLIENT_DEFAULT_VARIANT] * 2
    closed = f"http://127.0.0.1:{free_port()}"
    with InferenceClient(closed, intent_fallback=fallback, retry=FAST_RETRY) as client:
        assert client.classify("dentist near me").fallback is True
        with pytest.raises(ServiceUnavailable, match="ConnectError"):  # skills have no made-up answer
            client.infer_skill("s-1", "creativity", {"novel_idea_count": 2})
    with InferenceClient(closed, retry=FAST_RETRY) as client, pytest.raises(ServiceUnavailable):
        client.classify("dentist near me")  # no fallback configured: the error


def test_concurrent_single_calls_travel_as_few_batch_requests_with_the_same_answers(server):
    items = [*ITEMS[:59], {"student_id": "s-1", "skill": "teamwork", "features": {"x": 1}}]
    with InferenceClient(server.url) as plain:
        expected = [plain.infer_skill(i["student_id"], i["skill"], i["features"]).score for i in items[:59]]
    transport = CountingTransport()
    # The calls wait at a barrier and start together; a batch goes once it holds 20 calls, long before its 5 s
    # window ends, so the count of requests does not depend on how fast threads start.
    with (
        InferenceClient(server.url, batch_window_ms=5000, max_batch_size=20, transport=transport) as client,
        ThreadPoolExecutor(len(items)) as pool,
    ):
        skills_start, intents_start = threading.Barrier(len(items), timeout=30), threading.Barrier(20, timeout=30)

        def score(item: dict) -> float | str:
            skills_start.wait()
            try:
                return client.infer_skill(item["student_id"], item["skill"], item["features"]).score
            except RequestRejected as rejected:  # a bad item fails alone, as its single call would
                return rejected.code

        def classify(text: str) -> str:
            intents_start.wait()
            return client.classify(text, variant="classic").intent

        outcomes = list(pool.map(score, items))
        intents = list(pool.map(classify, ["chase login"] * 20))
    assert outcomes[:59] == pytest.approx(expected, abs=1e-12)
    assert outcomes[59] == "unknown_skill"
    assert set(intents) == {"navigational"}
    assert transport.requests == 4  # 60 skill calls in 3 batches of 20, 20 intent calls in one


def test_the_async_client_answers_batches_concurrent_calls_and_falls_back(server):
    async def scenario() -> None:
        async with AsyncInferenceClient(server.url, batch_window_ms=10) as client:
            results = await asyncio.gather(
                *(client.infer_skill(i["student_id"], i["skill"], i["features"]) for i in ITEMS)
            )
            assert [result.student_id for result in results] == [i["student_id"] for i in ITEMS]
            assert (await client.classify("dentist near me", variant="classic")).intent == "local"
            assert (await client.predict_pair("a", "a")).prediction in (0, 1)
            with pytest.raises(RequestRejected):
                await client.infer_skill("s-1", "creativity", {"novel_idea_count": "lots"})
        closed = f"http://127.0.0.1:{free_port()}"
        async with AsyncInferenceClient(closed, intent_fallback=IntentFallback(), retry=FAST_RETRY) as client:
            assert (await client.classify("x")).variant == CLIENT_DEFAULT_VARIANT
            with pytest.raises(ServiceUnavailable):
                await client.infer_skill("s-1", "creativity", {"novel_idea_count": 2})

    asyncio.run(scenario())


def test_a_client_error_is_never_replaced_by_the_fallback(server):
    with InferenceClient(server.url, intent_fallback=IntentFallback()) as client:
        with pytest.raises(RequestRejected, match="invalid_text"):
            client.classify("   ")
        with pytest.raises(RequestRejected, match="X-Model-Preference"):
            client.classify("x", variant="bogus")


def test_a_500_is_reported_at_once_and_not_retried():
    with scripted_server([(500, {"error": "boom", "code": "internal_error"})]) as stub:
        with InferenceClient(stub.url, retry=FAST_RETRY) as client, pytest.raises(ServiceUnavailable, match="500"):
            client.predict_pair("a", "b")
        assert stub.calls == 1


def test_an_answer_that_is_not_the_apis_is_unavailable_and_intent_falls_back():
    with scripted_server([(200, {"not": "the api"})]) as stub:
        with InferenceClient(stub.url) as client, pytest.raises(UnexpectedAnswer):
            client.predict_pair("a", "b")
        with InferenceClient(stub.url, intent_fallback=IntentFallback()) as client:
            assert client.classify("x").variant == CLIENT_DEFAULT_VARIANT
        with InferenceClient(stub.url) as client, pytest.raises(UnexpectedAnswer):
            client.health()


def test_input_json_cannot_carry_fails_alone_before_anything_is_sent(server):
    transport = CountingTransport()
    with (
        InferenceClient(server.url, batch_window_ms=30, transport=transport) as client,
        ThreadPoolExecutor(4) as pool,
    ):

        def call(index: int) -> str:
            item = ITEMS[index]
            features = {**item["features"], "novel_idea_count": float("nan")} if index == 0 else item["features"]
            try:
                return client.infer_skill(item["student_id"], item["skill"], features).student_id
            except InvalidInput as error:
                return f"invalid: {error}"

        outcomes = list(pool.map(call, range(4)))
    assert outcomes[0].startswith("invalid: ") and "cannot be sent as JSON" in outcomes[0]
    assert outcomes[1:] == [ITEMS[i]["student_id"] for i in range(1, 4)]
    with InferenceClient(server.url) as client, pytest.raises(InvalidInput, match="student_id"):
        client.infer_skill("", "creativity", {"novel_idea_count": 1})


def test_a_batch_answer_short_of_an_item_fails_every_coalesced_call_instead_of_leaving_one_waiting(server):
    answer = httpx.post(server.url + "/api/v1/skills/infer/batch", json={"items": ITEMS[:1]}).json()
    with (
        scripted_server([(200, answer)]) as stub,
        InferenceClient(stub.url, batch_window_ms=50) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        futures = [pool.submit(client.infer_skill, i["student_id"], i["skill"], i["features"]) for i in ITEMS[:3]]
        for future in futures:
            with pytest.raises(UnexpectedAnswer, match="holds 1 results for"):
                future.result(timeout=20)


def test_coalesced_intent_calls_fall_back_together_when_the_service_is_down():
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        InferenceClient(closed, batch_window_ms=20, intent_fallback=IntentFallback(), retry=FAST_RETRY) as client,
        ThreadPoolExecutor(6) as pool,
    ):
        variants = set(pool.map(lambda _: client.classify("x").variant, range(6)))
    assert variants == {CLIENT_DEFAULT_VARIANT}


def test_closing_the_async_client_answers_the_calls_still_waiting_for_their_batch(server):
    async def scenario() -> list[str]:
        client = AsyncInferenceClient(server.url, batch_window_ms=500)
        pending = [
            asyncio.create_task(client.infer_skill(i["student_id"], i["skill"], i["features"])) for i in ITEMS[:5]
        ]
        await asyncio.sleep(0.05)  # they wait for the window
        await client.close()
        return [(await task).student_id for task in pending]

    assert asyncio.run(scenario()) == [i["student_id"] for i in ITEMS[:5]]


def test_a_batching_client_dropped_without_closing_is_collected_and_does_not_keep_the_program_alive(server):
    import gc
    import weakref

    client = InferenceClient(server.url, batch_window_ms=5)
    item = ITEMS[0]
    client.infer_skill(item["student_id"], item["skill"], item["features"])
    reference = weakref.ref(client)
    del client
    gc.collect()
    assert reference() is None
    script = (
        "import threading, sys\n"
        "from inference.client import InferenceClient, IntentFallback\n"
        f"client = InferenceClient({server.url!r}, batch_window_ms=200, intent_fallback=IntentFallback())\n"
        "threading.Thread(target=lambda: print(client.classify('chase login').intent, flush=True)).start()\n"
        "sys.exit(0)  # the main thread ends while the worker's call waits for its batch\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in ("navigational", "informational")


def test_importing_the_client_pulls_in_neither_bentoml_nor_a_model_library():
    script = (
        "import sys\n"
        "import inference.client\n"
        "heavy = ('bentoml', 'xgboost', 'sklearn', 'scipy')\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & set(heavy)))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
