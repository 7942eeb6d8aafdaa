"""Faults against real `bentoml serve` processes: a database away at start, a corrupt model artifact at start and
in a hot reload, a slow model, and SIGTERM under load. (Redis stopping and coming back: tests/test_redis_http.py;
PostgreSQL restarted under a batch scoring run: tests/test_batch_postgres.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from inference.families.skills.artifacts import read_metadata
from inference.families.skills.scoring import skill_model_name
from inference.store.registry import save_to_store
from tests.utils.clock import iso_ago
from tests.utils.prometheus import metric_total, sample_sum
from tests.utils.requests import RATINGS_AUTH, delete_from_store, student_items
from tests.utils.servers import PROJECT_ROOT, start_server, wait_until
from train.data.catalogue import SKILLS

pytestmark = [pytest.mark.server, pytest.mark.slow]

INFER = "/api/v1/skills/infer"
TOKEN = "fault-drill-token-0123456789"
CORRUPT = "v1.8.0-corrupt"


@pytest.fixture(scope="module")
def corrupt_version(trained_versions, tmp_path_factory):
    """v1.0.0's seven skill models under another version, with the communication booster's file truncated."""
    source_root = tmp_path_factory.mktemp("corrupt")
    for skill in SKILLS:
        source = source_root / skill
        shutil.copytree(trained_versions["v1.0.0"] / skill, source)
        if skill == "communication":
            booster = source / "model.json"
            booster.write_bytes(booster.read_bytes()[:200])
        save_to_store(skill_model_name(skill), CORRUPT, source, read_metadata(source), {"family": "skills"})
    yield CORRUPT
    delete_from_store([skill_model_name(skill) for skill in SKILLS], CORRUPT)


def test_a_database_away_at_start_costs_ratings_and_correlations_but_not_scoring(trained_versions, session_dir):
    env = {
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
    }
    with start_server(session_dir / "logs-no-database", env=env) as server:  # it becomes ready
        # Said once the worker serves: the database is opened off the event loop, after the start.
        server.wait_for_log("database not usable at start", timeout=30)
        item = student_items(1, seed=5)[0]
        assert httpx.post(server.url + INFER, json=item, timeout=30).status_code == 200
        rating = {"student_id": "s-1", "skill": "leadership", "rating": 4, "rated_at": iso_ago(hours=2)}
        stored = httpx.post(
            server.url + "/api/v1/monitoring/ratings", json={"ratings": [rating]}, headers=RATINGS_AUTH, timeout=30
        )
        assert stored.status_code == 503 and stored.json()["code"] == "storage_unavailable", stored.text
        correlation = httpx.get(server.url + "/api/v1/monitoring/correlation", timeout=30)
        assert correlation.status_code == 503 and correlation.json()["code"] == "storage_unavailable"
        assert server.process.poll() is None


def test_a_corrupt_artifact_at_start_leaves_the_service_unready_naming_the_file(corrupt_version, session_dir):
    env = {"INFERENCE_FAMILIES": '["skills"]', "INFERENCE_SKILLS_VERSION": corrupt_version}
    with start_server(session_dir / "logs-corrupt", env=env, wait_ready=False) as server:
        log = server.wait_for_log("the skills family failed to load, the service stays unready")
        assert "model.json" in log and "skill-communication" in log
        assert httpx.get(server.url + "/readyz").status_code == 503
        refused = httpx.post(server.url + INFER, json=student_items(1, seed=6)[0], timeout=30)
        assert refused.status_code == 503 and refused.json()["code"] == "models_not_ready"
        assert server.process.poll() is None


def failed_change(url: str, answer: httpx.Response) -> tuple[str, str]:
    """(code, message) of an admin change that failed: answered 409 at once, or 202 and failed as an operation (a
    load slower than INFERENCE_ADMIN_WAIT_S on a busy machine)."""
    if answer.status_code == 202:
        location = url + answer.headers["Location"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert wait_until(lambda: httpx.get(location, headers=auth).json()["operation"]["status"] != "running", 120)
        operation = httpx.get(location, headers=auth).json()["operation"]
        assert operation["status"] == "failed", operation
        return operation["error"]["code"], operation["error"]["message"]
    assert answer.status_code == 409, answer.text
    return answer.json()["code"], answer.json()["error"]


def test_a_hot_reload_of_a_corrupt_version_fails_and_the_old_one_serves_throughout(corrupt_version, session_dir):
    env = {"INFERENCE_FAMILIES": '["skills"]', "INFERENCE_SKILLS_VERSION": "v1.0.0", "INFERENCE_ADMIN_TOKEN": TOKEN}
    with start_server(session_dir / "logs-reload-corrupt", env=env) as server:
        stop = threading.Event()
        answers: list[httpx.Response] = []

        def load() -> None:
            items = student_items(50, seed=7)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not stop.is_set():
                    for item in items:
                        answers.append(http.post(INFER, json=item, headers={"Cache-Control": "no-cache"}))

        def wait_for_answers(count: int) -> None:
            deadline = time.monotonic() + 60
            while len(answers) < count and time.monotonic() < deadline:
                time.sleep(0.05)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            wait_for_answers(10)  # the load is flowing
            reload = httpx.post(
                server.url + "/admin/models/reload",
                json={"family": "skills", "version": corrupt_version},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=120,
            )
            answered_during_reload = len(answers)
            wait_for_answers(answered_during_reload + 10)  # and keeps flowing after the refused version
        finally:
            stop.set()
            worker.join()
        code, message = failed_change(server.url, reload)
        assert code == "reload_failed" and "model.json" in message, message
        assert len(answers) >= answered_during_reload + 10
        assert {response.status_code for response in answers} == {200}
        assert {response.json()["model_version"] for response in answers} == {"v1.0.0"}
        routes = httpx.get(server.url + "/admin/routes", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert routes["routes"]["skills"]["stable"] == "v1.0.0"


def test_a_slow_model_times_out_quickly_while_the_other_families_answer_and_fallbacks_count(
    trained_versions, text_reports, session_dir
):
    # The slow models take 6 s; the request timeout is 1 s. Bounds below sit between the two, so they tell a
    # timed-out request from one that waited for the model however busy the machine is.
    env = {
        "INFERENCE_REQUEST_TIMEOUT_S": "1",
        "INFERENCE_INJECT_FAULTS": '{"textpair": "delay_ms=6000", "intent-ensemble": "delay_ms=6000"}',
        "CACHE_URL": "none://",
    }
    with start_server(session_dir / "logs-slow-model", env=env) as server:
        url = server.url

        def pair(index: int) -> tuple[int, float]:
            started = time.monotonic()
            body = {"text1": f"the cat sat {index}", "text2": "a cat was sitting"}
            response = httpx.post(url + "/predict", json=body, timeout=30)
            return response.status_code, time.monotonic() - started

        with ThreadPoolExecutor(4) as pool:
            slow = [pool.submit(pair, index) for index in range(4)]
            deadline = time.monotonic() + 30
            while metric_total(url, "inference_http_requests_in_flight", route="/predict") < 1:
                assert time.monotonic() < deadline, "no text-pair request reached the server"
                time.sleep(0.02)  # until the text-pair batcher is stuck in the slow model
            started = time.monotonic()
            skills = [httpx.post(url + INFER, json=item, timeout=30) for item in student_items(10, seed=8)]
            skills_s = time.monotonic() - started
            classic = httpx.post(
                url + "/api/classify", json={"text": "chase login"}, headers={"X-Model-Preference": "classic"}
            )
            ensemble = httpx.post(
                url + "/api/classify", json={"text": "dentist near me"}, headers={"X-Model-Preference": "ensemble"}
            )
            outcomes = [future.result() for future in slow]

        assert all(status in (503, 504) and elapsed < 4.0 for status, elapsed in outcomes), outcomes
        # A blocked event loop would hold the skill requests for the slow model's 6 s.
        assert all(response.status_code == 200 for response in skills) and skills_s < 4.0, skills_s
        assert classic.status_code == 200 and classic.json()["fallback"] is False
        assert ensemble.status_code == 200 and ensemble.json()["fallback"] is True
        assert ensemble.json()["variant"] == "classic"
        assert metric_total(url, "inference_fallbacks_total", family="intent", reason="ensemble_timeout") >= 1


def test_sigterm_under_load_finishes_the_requests_in_flight_and_exits_within_the_grace_period(
    trained_versions, text_reports, session_dir
):
    deployment = yaml.safe_load((PROJECT_ROOT / "k8s/base/deployment.yaml").read_text())
    grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # Each text-pair batch takes 2 s: the first request is scored alone, the other seven queue behind it, so the
    # drain after SIGTERM lasts seconds.
    env = {"INFERENCE_FAMILIES": '["textpair"]', "INFERENCE_INJECT_FAULTS": '{"textpair": "delay_ms=2000"}'}
    with start_server(session_dir / "logs-sigterm", env=env) as server:
        body = {"text1": "the cat sat", "text2": "a cat was sitting"}

        def call(index: int) -> tuple[int, float]:
            """The status (-1: no HTTP answer) and when it came."""
            try:
                response = httpx.post(server.url + "/predict", json={**body, "text1": f"{index}"}, timeout=60)
                return response.status_code, time.monotonic()
            except httpx.TransportError:
                return -1, time.monotonic()

        def held_and_answered() -> tuple[float, float]:
            """(requests to /predict the server holds now, requests it has answered), from one /metrics page."""
            page = httpx.get(server.url + "/metrics").text
            in_progress = sample_sum(page, "inference_http_requests_in_flight", route="/predict")
            return in_progress, sample_sum(page, "inference_http_requests_total", route="/predict")

        def still_accepting() -> bool:
            try:
                return httpx.get(server.url + "/livez", timeout=0.5).status_code == 200
            except httpx.TransportError:
                return False

        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(call, index) for index in range(8)]
            # SIGTERM only once the server has taken all eight (however slowly this machine sends them), so the
            # test proves the drain rather than the scheduler's speed.
            deadline = time.monotonic() + 30
            while sum(held := held_and_answered()) < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
            held_at_sigterm, answered_before = held
            assert held_at_sigterm + answered_before >= 8, f"the server never held all eight: {held}"
            os.killpg(server.process.pid, signal.SIGTERM)
            stopped_at = time.monotonic()
            while still_accepting() and time.monotonic() < stopped_at + 10:
                time.sleep(0.05)
            refused_at = time.monotonic()
            late, _ = call(99)
            answers = [future.result() for future in in_flight]
        server.process.wait(timeout=grace_s)
        exited_s = time.monotonic() - stopped_at

    statuses = [status for status, _ in answers]
    last_answer_at = max(at for _, at in answers)
    assert held_at_sigterm >= 1  # something was in flight when the signal came
    assert statuses == [200] * 8  # nothing in flight was dropped
    # New connections were refused while the requests in flight were still being answered, and a request sent
    # then was not taken on.
    assert refused_at < last_answer_at, (refused_at - stopped_at, last_answer_at - stopped_at)
    assert late != 200
    assert exited_s < grace_s
    print(
        f"SIGTERM with {held_at_sigterm:.0f} requests in flight ({answered_before:.0f} already answered): new "
        f"connections refused after {refused_at - stopped_at:.2f} s, all 8 answered 200 (the last after "
        f"{last_answer_at - stopped_at:.1f} s), exited after {exited_s:.1f} s (grace {grace_s} s)"
    )
