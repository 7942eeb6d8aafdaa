"""Public /health says what is wrong, never why: no error text, host, user or path, whatever the server reports
(a control store refusing its user, a family that failed to load). The reasons are for an admin token only, on
/health?detail=true."""

from __future__ import annotations

import httpx
import pytest

from tests.utils.servers import start_server

pytestmark = pytest.mark.server

ADMIN_TOKEN = "health-privacy-admin-token-0123456789"
USER = "health-privacy-user"  # a PostgreSQL role that does not exist: the store refuses it, naming it
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def troubled(session_dir):
    """A server whose control store refuses its user, serving one family at a version the store lacks (nothing to
    train: the family fails to load, the server stays up and unready)."""
    env = {
        "INFERENCE_FAMILIES": '["textpair"]',
        "INFERENCE_TEXTPAIR_VERSION": "v9.9.9",
        "INFERENCE_CONTROL_URL": f"postgresql+psycopg://{USER}@{HOST}:5432/postgres?connect_timeout=2",
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with start_server(session_dir / "logs-health-privacy", env=env, wait_ready=False) as server:
        yield server


def health(server, *, detail: bool = False, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.get(server.url + "/health" + ("?detail=true" if detail else ""), headers=headers, timeout=30)


def test_public_health_names_no_host_user_or_reason(troubled):
    for answer in (
        health(troubled),
        health(troubled, detail=True),  # asking is not enough
        health(troubled, detail=True, authorization="Bearer not-the-admin-token-0123456789"),
        health(troubled, detail=True, authorization=ADMIN_TOKEN),  # not a bearer header
    ):
        assert answer.status_code == 503, answer.text  # the family is not loaded
        body = answer.json()
        assert body["status"] == "unavailable" and body["timestamp"]
        assert body["control"] == {"store": "postgresql", "revision": None, "reachable": False}
        (family,) = body["families"]
        assert family["family"] == "textpair" and family["loaded"] is False and family["error"] is None
        for secret in (USER, HOST, "5432", "v9.9.9", "FATAL", "/"):
            assert secret not in answer.text.replace(body["timestamp"], ""), secret
    models = httpx.get(troubled.url + "/api/v1/models", timeout=30)
    assert models.json()["families"][0]["error"] is None and USER not in models.text


def test_the_admin_detail_gives_the_reasons(troubled):
    answer = health(troubled, detail=True, authorization=f"Bearer {ADMIN_TOKEN}")
    assert answer.status_code == 503
    body = answer.json()
    control = body["control"]
    assert control["reachable"] is False and control["unreachable_for_s"] >= 0
    assert USER in control["error"] and HOST in control["error"]
    (family,) = body["families"]
    assert family["loaded"] is False and "v9.9.9" in family["error"]
