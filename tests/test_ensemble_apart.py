"""The intent ensemble as its own BentoML service: in process (a stand-in service), and for real, two process
groups (the ensemble's `bentoml serve service:IntentEnsemble`, the front's `bentoml serve service:Inference` with
INFERENCE_ENSEMBLE_SERVICE at its URL), the ensemble stopped and started again; and `apart`, where one
`bentoml serve` starts both."""

from __future__ import annotations

import itertools
import json
import re
import sys

import httpx
import pytest

from inference.families.intent.apart import EnsembleAbsent, EnsembleWorker
from inference.families.intent.scorer import IntentModels, IntentPolicy, IntentQuery, IntentScorer
from inference.families.intent.variants import CLASSIC_MODEL, ENSEMBLE, VERTICALS_MODEL
from inference.http.ensemble import BentoEnsemble, absent
from inference.store.text_artifacts import load_stored_text_model
from tests.utils.servers import free_port, start_server, stop, wait_until
from tests.utils.serving import run

CLASSIFY = "/api/classify"
WANT_ENSEMBLE = {"X-Model-Preference": "ensemble"}
FRONT_ONLY = {"INFERENCE_FAMILIES": '["intent"]', "INFERENCE_WORKERS": "1"}
# What the ensemble's pods run (k8s/units/ensemble): the image's entrypoint turns `start-http-server ...` into this,
# BentoML's way of serving one service of a Bento whose root depends on it.
ENSEMBLE_ALONE = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server"]
ENSEMBLE_ARGS = ["--service-name", "intent-ensemble", "service:Inference"]
ENSEMBLE_ENV = {**FRONT_ONLY, "INFERENCE_ENSEMBLE_SERVICE": "apart"}
texts = (f"cheap flights to city number {n}" for n in itertools.count())  # new texts: never a cached answer


class StandIn:
    """The ensemble's service as the front sees it, answering from a worker in this process, or failing."""

    def __init__(self, worker: EnsembleWorker | None = None, failure: EnsembleAbsent | None = None) -> None:
        self.worker, self.failure, self.calls = worker, failure, 0

    async def classify(self, texts, version):
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return await self.worker.classify(texts, version)

    def classify_blocking(self, texts, version):
        raise self.failure or EnsembleAbsent("ensemble_unreachable", "blocking calls are not stood in for")


@pytest.fixture(scope="module")
def front_models(text_reports):
    classic, verticals = (load_stored_text_model(name, "v1.0.0") for name in (CLASSIC_MODEL, VERTICALS_MODEL))
    return IntentModels(classic, None, verticals)


def front(models, remote):
    return IntentScorer(models, IntentPolicy(ensemble_budget_s=10.0), remote=remote)


def ask(scorer, text):
    prepared = scorer.prepare([IntentQuery(text=text, preference=ENSEMBLE)])
    (answer,) = run(scorer.score_many(prepared))
    return answer


def test_front_answers_with_the_services_votes_and_its_own_verticals(front_models):
    worker = EnsembleWorker()
    scorer = front(front_models, StandIn(worker))
    try:
        answer = ask(scorer, "cheap flights to paris")
    finally:
        scorer.close()
        worker.close()
    assert (answer.variant, answer.fallback, answer.fallback_reason) == ("ensemble", False, None)
    assert answer.intent in front_models.classic.labels
    assert "travel" in [vertical.vertical for vertical in answer.verticals]  # the front's detectors
    assert scorer.ensemble_outcomes == {"answered": 1}
    assert ENSEMBLE not in scorer.batchers  # no ensemble model, no ensemble batcher in the front


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (EnsembleAbsent("ensemble_unreachable", "connection refused"), "ensemble_unreachable"),
        (EnsembleAbsent("ensemble_unavailable", "503"), "ensemble_unavailable"),
    ],
)
def test_front_falls_back_to_classic_with_the_reason(front_models, failure, reason):
    scorer = front(front_models, StandIn(failure=failure))
    try:
        answer = ask(scorer, "cheap flights to paris")
    finally:
        scorer.close()
    assert (answer.variant, answer.fallback, answer.fallback_reason) == ("classic", True, reason)
    assert scorer.ensemble_outcomes == {reason: 1}


def test_votes_outside_the_versions_intents_are_an_error(front_models):
    class Wrong(StandIn):
        async def classify(self, texts, version):
            return [("no-such-intent", 0.9) for _ in texts]

    scorer = front(front_models, Wrong())
    try:
        answer = ask(scorer, "cheap flights to paris")
    finally:
        scorer.close()
    assert (answer.fallback, answer.fallback_reason) == (True, "ensemble_error")


def test_labelled_feedback_keeps_classic_when_the_service_is_absent(front_models):
    scorer = front(front_models, StandIn(failure=EnsembleAbsent("ensemble_unreachable", "refused")))
    try:
        found = scorer.intents_by_variant(["cheap flights to paris"])
    finally:
        scorer.close()
    assert list(found) == ["classic"]


def test_failed_calls_are_told_apart():
    import aiohttp
    from bentoml.exceptions import BentoMLException

    assert absent(aiohttp.ClientConnectionError("refused")).reason == "ensemble_unreachable"
    assert absent(BentoMLException("starting", error_code=503)).reason == "ensemble_unavailable"
    assert absent(BentoMLException("bad", error_code=500)).reason == "ensemble_error"


def test_blocking_call_before_any_call_is_unreachable():
    with pytest.raises(EnsembleAbsent) as raised:
        BentoEnsemble(object()).classify_blocking(["x"], "v1.0.0")
    assert raised.value.reason == "ensemble_unreachable"


# --- for real: bentoml serve --------------------------------------------------------------------------------------


def classify(http: httpx.Client, headers=WANT_ENSEMBLE) -> dict:
    response = http.post(CLASSIFY, json={"text": next(texts)}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def counter(http: httpx.Client, name: str, **labels: str) -> float:
    text = http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.server
def test_ensemble_as_its_own_deployment_stopped_and_started_again(text_reports, session_dir):
    logs = session_dir / "logs-ensemble-apart"
    port = free_port()
    alone = [*ENSEMBLE_ALONE, *ENSEMBLE_ARGS]
    with start_server(logs, command=alone, env=ENSEMBLE_ENV, port=port) as ensemble:
        # A generous budget: the first calls on a busy test machine may take longer than 250 ms, and a stopped
        # ensemble is answered at once (connection refused), not at the budget.
        env = {
            **FRONT_ONLY,
            "INFERENCE_ENSEMBLE_SERVICE": f"http://127.0.0.1:{port}",
            "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "10000",
        }
        with start_server(logs, env=env) as served, httpx.Client(base_url=served.url, timeout=30) as http:
            log = served.wait_for_log("the ensemble runs as its own service")
            assert not re.search(r"loaded intent-ensemble:", log)  # the front holds no ensemble model
            answer = classify(http)
            assert (answer["variant"], answer["fallback"]) == ("ensemble", False), answer

            stop(ensemble.process)
            answer = classify(http)
            assert (answer["variant"], answer["fallback"], answer["fallback_reason"]) == (
                "classic",
                True,
                "ensemble_unreachable",
            )
            assert http.get("/readyz").status_code == 200  # the front serves on without it
            assert counter(http, "inference_fallbacks_total", reason="ensemble_unreachable") >= 1
            assert counter(http, "inference_variant_wanted_total", variant="ensemble") >= 2
            classic = classify(http, headers={"X-Model-Preference": "classic"})
            assert (classic["variant"], classic["fallback"]) == ("classic", False)

            with start_server(logs, command=alone, env=ENSEMBLE_ENV, port=port):
                assert wait_until(lambda: classify(http)["variant"] == "ensemble", timeout=30)


@pytest.mark.server
def test_bentoml_serve_starts_both_and_a_slow_ensemble_is_answered_by_classic(text_reports, session_dir):
    env = {
        **FRONT_ONLY,
        "INFERENCE_ENSEMBLE_SERVICE": "apart",
        # Every call of the ensemble's process waits 1 s; the front waits 250 ms.
        "INFERENCE_INJECT_FAULTS": json.dumps({"intent-ensemble": "delay_ms=1000"}),
        "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "250",
    }
    with (
        start_server(session_dir / "logs-ensemble-both", env=env) as served,
        httpx.Client(base_url=served.url, timeout=30) as http,
    ):
        # The front is ready on its own; the ensemble's workers start beside it, a process group of their own.
        log = served.wait_for_log("Service intent-ensemble initialized")
        assert "[entry_service:inference:1] Service inference initialized" in log
        answer = classify(http)
        assert (answer["variant"], answer["fallback_reason"]) == ("classic", "ensemble_timeout"), answer
