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

from inference.artifacts import read_metadata
from inference.catalogue import SKILLS
from inference.registry import save_to_store, skill_model_name
from tests.utils.prometheus import metric_total
from tests.utils.requests import delete_from_store, student_items
from tests.utils.servers import PROJECT_ROOT, start_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

INFER = "/api/v1/skills/infer"
TOKEN = "fault-drill-token"
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
        assert "database not usable at start" in server.log()
        item = student_items(1, seed=5)[0]
        assert httpx.post(server.url + INFER, json=item, timeout=30).status_code == 200
        rating = {"student_id": "s-1", "skill": "leadership", "rating": 4, "rated_at": "2026-11-20T10:00:00Z"}
        stored = httpx.post(server.url + "/api/v1/monitoring/ratings", json={"ratings": [rating]}, timeout=30)
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

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(0.5)
            reload = httpx.post(
                server.url + "/admin/models/reload",
                json={"family": "skills", "version": corrupt_version},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=120,
            )
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join()
        assert reload.status_code == 409 and reload.json()["code"] == "reload_failed", reload.text
        assert "model.json" in reload.json()["error"]
        assert len(answers) > 20
        assert {response.status_code for response in answers} == {200}
        assert {response.json()["model_version"] for response in answers} == {"v1.0.0"}
        routes = httpx.get(server.url + "/admin/routes", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert routes["routes"]["skills"]["stable"] == "v1.0.0"


def test_a_slow_model_times_out_quickly_while_the_other_families_answer_and_fallbacks_count(
    trained_versions, text_reports, session_dir
):
    env = {
        "INFERENCE_REQUEST_TIMEOUT_S": "1",
        "INFERENCE_INJECT_FAULTS": '{"textpair": "delay_ms=3000", "intent-ensemble": "delay_ms=3000"}',
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
            time.sleep(0.2)  # the text-pair batcher is now stuck in the slow model
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

        assert all(status in (503, 504) and elapsed < 2.0 for status, elapsed in outcomes), outcomes
        assert all(response.status_code == 200 for response in skills) and skills_s < 2.0
        assert classic.status_code == 200 and classic.json()["fallback"] is False
        assert ensemble.status_code == 200 and ensemble.json()["fallback"] is True
        assert ensemble.json()["variant"] == "classic"
        assert metric_total(url, "inference_fallbacks_total", family="intent", reason="ensemble_timeout") >= 1


def test_sigterm_under_load_finishes_the_requests_in_flight_and_exits_within_the_grace_period(
    trained_versions, text_reports, session_dir
):
    deployment = yaml.safe_load((PROJECT_ROOT / "k8s/base/deployment.yaml").read_text())
    grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    env = {"INFERENCE_FAMILIES": '["textpair"]', "INFERENCE_INJECT_FAULTS": '{"textpair": "delay_ms=700"}'}
    with start_server(session_dir / "logs-sigterm", env=env) as server:
        body = {"text1": "the cat sat", "text2": "a cat was sitting"}

        def call(index: int) -> int:
            try:
                return httpx.post(server.url + "/predict", json={**body, "text1": f"{index}"}, timeout=60).status_code
            except httpx.TransportError:
                return -1

        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(call, index) for index in range(8)]
            time.sleep(0.3)  # all eight sent; the slow model answers them over the next seconds
            os.killpg(server.process.pid, signal.SIGTERM)
            stopped_at = time.monotonic()
            time.sleep(0.3)
            late = call(99)
            statuses = [future.result() for future in in_flight]
        server.process.wait(timeout=grace_s)
        exited_s = time.monotonic() - stopped_at

    assert statuses == [200] * 8  # nothing in flight was dropped
    assert late != 200  # a request after SIGTERM is not taken on
    assert exited_s < grace_s
    print(f"SIGTERM with 8 requests in flight: all answered 200, exited after {exited_s:.1f} s (grace {grace_s} s)")
