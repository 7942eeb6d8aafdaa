"""Security properties against a real server: no request can make the service unpickle or load what the client
names, secrets (admin token, database password) never reach the log, the admin API takes only its token, and
browsers get no CORS grant unless one is configured."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import httpx
import pytest

from tests.utils.requests import student_items
from tests.utils.servers import start_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

TOKEN = "tok-SECRET-4711-guarded-admin-token"
PASSWORD = "pw-SECRET-0815"


class Trap:
    """Unpickling this creates `path`: proof that a body was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


@pytest.fixture(scope="module")
def guarded(trained_versions, session_dir):
    env = {
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_ADMIN_TOKEN": TOKEN,
        "DATABASE_URL": f"postgresql+psycopg://inference:{PASSWORD}@127.0.0.1:1/inference?connect_timeout=1",
        "INFERENCE_LOG_LEVEL": "DEBUG",
    }
    with start_server(session_dir / "logs-security", env=env) as server:
        yield server


def test_no_content_type_makes_the_service_unpickle_a_body(guarded, tmp_path):
    marker = tmp_path / "unpickled"
    body = pickle.dumps({"student_id": "s", "skill": "leadership", "features": Trap(marker)})
    for content_type in ("application/vnd.bentoml+pickle", "multipart/form-data", "application/octet-stream"):
        response = httpx.post(
            guarded.url + "/api/v1/skills/infer", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type", response.text
    assert not marker.exists()


def test_a_reload_names_a_version_of_the_store_never_a_path(guarded, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for version in ("../../../../etc/passwd", str(tmp_path), "v1.0.0/../../x"):
        response = httpx.post(
            guarded.url + "/admin/models/reload",
            json={"family": "skills", "version": version},
            headers=auth,
            timeout=60,
        )
        assert 400 <= response.status_code < 500, response.text
    answer = httpx.post(guarded.url + "/api/v1/skills/infer", json=student_items(1, seed=3)[0], timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == "v1.0.0"


def test_the_admin_api_takes_its_token_only(guarded):
    url = guarded.url + "/admin/routes"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        assert httpx.get(url, headers=headers).status_code == 401, headers
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_no_cors_grant_without_configured_origins(guarded):
    preflight = httpx.options(
        guarded.url + "/api/v1/skills/infer",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_secrets_never_reach_the_log(guarded):
    # Everything above ran: a failed database connection at start, admin calls with good and bad tokens.
    httpx.post(guarded.url + "/api/v1/monitoring/ratings", json={"ratings": []})
    # The database was tried (off the event loop, once the worker served) and its failure logged.
    log = guarded.wait_for_log("database not usable at start", timeout=30)
    assert TOKEN not in log and PASSWORD not in log
