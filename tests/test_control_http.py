"""Two real `bentoml serve` replicas sharing one PostgreSQL control store: one admin call changes both, of two
changes from the same revision one is refused, a restarted replica starts from the shared state, a replica
that loses the store keeps serving what it applied last and says so, and a reload that outlasts the call runs on
as an operation the other replica reports on."""

import json

import httpx
import psycopg
import pytest

from tests.utils.postgres import ADMIN_URL, throwaway_database
from tests.utils.requests import student_items
from tests.utils.servers import start_server, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]

TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef"}
CONVERGES_S = 15.0  # a change reaches the other replica within this (each polls the store once a second)
ALICE, BOB = ({"Authorization": f"Bearer {TOKENS[name]}"} for name in ("alice", "bob"))


def routes(http):
    body = http.get("/admin/routes", headers=ALICE).json()
    return body["revision"], {family: route["weights"] for family, route in body["routes"].items()}


def test_two_replicas_follow_one_control_store(trained_versions, session_dir):
    with throwaway_database() as url:
        env = {
            "INFERENCE_SKILLS_VERSION": "v1.0.0",
            "INFERENCE_FAMILIES": '["skills"]',
            "INFERENCE_ADMIN_TOKENS": json.dumps(TOKENS),
            "INFERENCE_CONTROL_URL": url,
        }
        logs = session_dir / "logs-control"
        with (
            start_server(logs, env=env) as first,
            start_server(logs, env=env) as second,
            httpx.Client(base_url=first.url, timeout=30) as a,
            httpx.Client(base_url=second.url, timeout=30) as b,
        ):
            assert routes(a) == routes(b) == (0, {"skills": {"v1.0.0": 100.0}})
            # One call on one replica: the other follows within seconds (it polls the store once a second).
            changed = a.put("/admin/routes/skills", json={"weights": {"v1.0.0": 80, "v1.1.0": 20}}, headers=ALICE)
            assert changed.status_code == 200, changed.text
            assert changed.json()["revision"] == 1 and changed.headers["etag"] == '"1"'
            canary = (1, {"skills": {"v1.0.0": 80.0, "v1.1.0": 20.0}})
            assert wait_until(lambda: routes(b) == canary, timeout=CONVERGES_S), routes(b)
            # The rollback through the other replica reaches the first.
            assert b.post("/admin/routes/skills/rollback", headers=BOB).status_code == 200
            assert wait_until(lambda: routes(a) == (2, {"skills": {"v1.0.0": 100.0}}), timeout=CONVERGES_S), routes(a)

            # Two changes based on the same revision, one per replica: the second is refused and changes nothing.
            won = a.put(
                "/admin/routes/skills",
                json={"weights": {"v1.0.0": 90, "v1.1.0": 10}},
                headers={**ALICE, "If-Match": '"2"'},
            )
            lost = b.put(
                "/admin/routes/skills",
                json={"weights": {"v1.0.0": 50, "v1.1.0": 50}},
                headers={**BOB, "If-Match": '"2"'},
            )
            assert won.status_code == 200, won.text
            assert lost.status_code == 409 and lost.json()["code"] == "conflict", lost.text
            assert "revision 3" in lost.json()["error"] and "alice" in lost.json()["error"]
            assert wait_until(
                lambda: routes(b) == (3, {"skills": {"v1.0.0": 90.0, "v1.1.0": 10.0}}), timeout=CONVERGES_S
            ), routes(b)

            audit = a.get("/admin/audit", headers=BOB).json()["changes"]
            assert [(entry["revision"], entry["changed_by"]) for entry in audit] == [
                (3, "alice"),
                (2, "bob"),
                (1, "alice"),
            ]
            assert audit[1]["action"] == "skills: rollback to v1.0.0"

            # A replica started now serves the shared route from its first request, not after a poll.
            with start_server(logs, env=env) as third, httpx.Client(base_url=third.url, timeout=30) as c:
                assert routes(c) == (3, {"skills": {"v1.0.0": 90.0, "v1.1.0": 10.0}})
                assert c.get("/health").json()["control"]["store"] == "postgresql"

            # The store goes away: both keep serving revision 3, and say so on /health and in /metrics.
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            assert wait_until(lambda: a.get("/health").json()["control"]["reachable"] is False, timeout=CONVERGES_S)
            health = a.get("/health")
            assert health.status_code == 200 and health.json()["control"]["revision"] == 3
            assert a.get("/health?detail=true", headers=ALICE).json()["control"]["error"]  # the reason: admins only
            assert a.post("/api/v1/skills/infer", json=student_items(1)[0]).status_code == 200
            assert routes(a)[1] == {"skills": {"v1.0.0": 90.0, "v1.1.0": 10.0}}
            assert "inference_control_store_up 0.0" in a.get("/metrics").text
            refused = a.post("/admin/routes/skills/rollback", headers=ALICE)
            assert refused.status_code == 503 and refused.json()["code"] == "control_store_unavailable"


def test_the_ensemble_flag_reaches_every_replica_header_callers_included(text_reports, session_dir):
    with throwaway_database() as url:
        env = {
            "INFERENCE_FAMILIES": '["intent"]',
            "INFERENCE_ADMIN_TOKENS": json.dumps(TOKENS),
            "INFERENCE_CONTROL_URL": url,
            "CACHE_URL": "none://",
        }
        logs = session_dir / "logs-control-intent"
        ensemble = {"X-Model-Preference": "ensemble"}

        def variant(http, headers=None, user_id=None):
            body = {"text": "cheap flights to paris", **({"user_id": user_id} if user_id else {})}
            return http.post("/api/classify", json=body, headers=headers or {}).json()["variant"]

        with (
            start_server(logs, env=env) as first,
            start_server(logs, env=env) as second,
            httpx.Client(base_url=first.url, timeout=30) as a,
            httpx.Client(base_url=second.url, timeout=30) as b,
        ):
            assert variant(b, ensemble) == "ensemble"
            off = a.put("/admin/intent/ensemble", json={"enabled": False}, headers=ALICE)
            assert off.status_code == 200, off.text
            assert off.json()["ensemble"] == {
                "enabled": False,
                "rollout_percentage": 10.0,
                "allowed_users": [],
                "fallback": "classic",
            }
            # The kill switch: on the other replica too, and for callers who ask for the ensemble by header.
            assert wait_until(lambda: variant(b, ensemble) == "classic", timeout=CONVERGES_S)
            assert "ensemble_disabled" in b.get("/metrics").text
            beta = {"enabled": True, "rollout_percentage": 0, "allowed_users": ["beta-1"]}
            assert b.put("/admin/intent/ensemble", json=beta, headers=BOB).status_code == 200
            assert wait_until(lambda: variant(a, user_id="beta-1") == "ensemble", timeout=CONVERGES_S)
            assert {variant(a, user_id=f"user-{i}") for i in range(20)} == {"classic"}
            assert routes_controls(a) == {**beta, "rollout_percentage": 0.0, "fallback": "classic"}
            bad = a.put("/admin/intent/ensemble", json={"rollout_percentage": 150}, headers=ALICE)
            assert bad.status_code == 400 and "rollout_percentage" in bad.json()["error"]
            assert a.put("/admin/intent/ensemble", json={"speed": 1}, headers=ALICE).status_code == 400
            # A replica started now applies the flag before its first answer.
            with start_server(logs, env=env) as third, httpx.Client(base_url=third.url, timeout=30) as c:
                assert variant(c, user_id="beta-1") == "ensemble" and variant(c, user_id="user-3") == "classic"
            actions = [entry["action"] for entry in a.get("/admin/audit", headers=ALICE).json()["changes"]]
            assert actions[0].startswith("intent: ensemble {'enabled': True, 'rollout_percentage': 0")


def routes_controls(http):
    return http.get("/admin/routes", headers=ALICE).json()["controls"]["intent"]["ensemble"]


def test_a_slow_reload_answers_202_and_its_operation_is_followed_through_the_other_replica(
    trained_versions, session_dir
):
    # v1.1.0 takes 6 s to load: longer than the admin wait (1 s) and the request timeout (5 s).
    with throwaway_database() as url:
        env = {
            "INFERENCE_SKILLS_VERSION": "v1.0.0",
            "INFERENCE_FAMILIES": '["skills"]',
            "INFERENCE_ADMIN_TOKENS": json.dumps(TOKENS),
            "INFERENCE_CONTROL_URL": url,
            "INFERENCE_ADMIN_WAIT_S": "1",
            "INFERENCE_INJECT_FAULTS": json.dumps({"load:skills:v1.1.0": "delay_ms=6000"}),
        }
        logs = session_dir / "logs-control-operations"
        with (
            start_server(logs, env=env) as first,
            start_server(logs, env=env) as second,
            httpx.Client(base_url=first.url, timeout=30) as a,
            httpx.Client(base_url=second.url, timeout=30) as b,
        ):
            started = a.post("/admin/models/reload", json={"family": "skills", "version": "v1.1.0"}, headers=ALICE)
            assert started.status_code == 202, started.text
            running = started.json()["operation"]
            assert running["status"] == "running" and running["action"] == "skills: reload v1.1.0"
            assert running["started_by"] == "alice" and running["result"] is None
            location = started.headers["location"]
            assert location == f"/admin/operations/{running['id']}"

            def read(http):
                answer = http.get(location, headers={**BOB, "Connection": "close"})
                assert answer.status_code == 200, answer.text
                return answer.json()["operation"]

            seen = read(b)  # the other replica reads it from the store
            assert seen["id"] == running["id"] and seen["status"] in ("running", "succeeded")
            assert seen["updated_s_ago"] is not None and seen["updated_s_ago"] < 30
            assert wait_until(lambda: read(b)["status"] != "running", timeout=60)
            done = read(b)
            assert done["status"] == "succeeded" and done["error"] is None, done
            assert done["result"] == {"route": {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}, "revision": 1}
            assert {**read(a), "updated_s_ago": None} == {**done, "updated_s_ago": None}  # the same record
            reloaded = (1, {"skills": {"v1.1.0": 100.0}})
            assert wait_until(lambda: routes(a) == reloaded and routes(b) == reloaded, timeout=60)
            assert [entry["action"] for entry in a.get("/admin/audit", headers=BOB).json()["changes"]] == [
                "skills: reload v1.1.0"
            ]
