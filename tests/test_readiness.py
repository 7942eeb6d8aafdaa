"""A service whose models cannot load stays alive, reports unready (the reason in its log and, behind the admin
token, on /health), and answers 503."""

import httpx
import pytest

from tests.utils.servers import start_server

pytestmark = pytest.mark.server
ADMIN_TOKEN = "readiness-admin-token-0123456789abcdef"


def test_a_missing_model_version_leaves_the_service_unready_with_a_clear_log_line(
    trained_versions, text_reports, session_dir
):
    env = {"INFERENCE_SKILLS_VERSION": "v9.9.9", "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN}
    with start_server(session_dir / "logs-unready", env=env, wait_ready=False) as server:
        log = server.wait_for_log("the skills family failed to load, the service stays unready", timeout=10)
        assert "skill-communication:v9.9.9 is not in the model store" in log
        assert httpx.get(server.url + "/livez").status_code == 200
        readiness = httpx.get(server.url + "/readyz")
        assert readiness.status_code == 503 and readiness.headers["content-type"].startswith("text/plain")
        response = httpx.post(
            server.url + "/api/v1/skills/infer",
            json={"student_id": "s", "skill": "leadership", "features": {"leadership_roles_taken": 2}},
        )
        assert response.status_code == 503
        assert response.json()["code"] == "models_not_ready"
        assert "failed to load" in response.json()["error"] and "v9.9.9" not in response.json()["error"]
        assert server.process.poll() is None, "the server must not exit or crash-loop"
        # The other families load and serve; /health says which is missing, and to an admin why.
        classified = httpx.post(server.url + "/api/classify", json={"text": "cheap flights to paris"})
        assert classified.status_code == 200, classified.text
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503
        skills = next(entry for entry in health.json()["families"] if entry["family"] == "skills")
        assert skills["loaded"] is False and "v9.9.9" not in str(skills)
        detail = httpx.get(
            server.url + "/health", params={"detail": "true"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        skills = next(entry for entry in detail.json()["families"] if entry["family"] == "skills")
        assert skills["loaded"] is False and "v9.9.9" in skills["error"]
