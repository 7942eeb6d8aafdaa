"""Groups in the ensemble flag: `allowed_users` names user ids or groups of them, the groups kept in the control
store (PUT /admin/intent/groups); a group's members get the ensemble, and emptying the group takes them out. The
service's routes in process, over HTTP."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette

from inference.app import build
from inference.families.registry import configured
from inference.http.admin import admin_routes
from inference.http.scoring import scoring_routes
from inference.settings import Settings

TOKEN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_group_named_in_allowed_users_lets_its_members_in(text_reports, tmp_path):
    settings = Settings(
        intent_version="v1.0.0",
        families=["intent"],
        intent_ensemble_budget_ms=10_000.0,
        database_url=f"sqlite:///{tmp_path / 'inference.db'}",
    )
    app = build(settings, state_dir=tmp_path / "state")
    routes = [
        *scoring_routes([configured(settings)["intent"]], lambda: app),
        *admin_routes({"alice": TOKEN}, lambda: app.manager, wait_s=5.0),
    ]

    async def scenario():
        transport = httpx.ASGITransport(app=Starlette(routes=routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://intent") as http:

            async def variant(user: str, text: str) -> str:
                answer = await http.post("/api/classify", json={"text": text, "user_id": user})
                assert answer.status_code == 200, answer.text
                return answer.json()["variant"]

            try:
                flag = {"rollout_percentage": 0, "allowed_users": ["beta_testers", "u-solo"]}
                assert (await http.put("/admin/intent/ensemble", json=flag, headers=AUTH)).status_code == 200
                before = [await variant(user, "cheap flights to rome") for user in ("u-1", "u-solo", "u-3")]
                put = await http.put(
                    "/admin/intent/groups", json={"groups": {"beta_testers": ["u-1", "u-2"]}}, headers=AUTH
                )
                members = [await variant(user, "cheap flights to oslo") for user in ("u-1", "u-2", "u-3")]
                emptied = await http.put("/admin/intent/groups", json={"groups": {"beta_testers": []}}, headers=AUTH)
                after = await variant("u-1", "cheap flights to lima")
                bad = await http.put("/admin/intent/groups", json={"groups": {"beta testers!": ["u-1"]}}, headers=AUTH)
                state = (await http.get("/admin/routes", headers=AUTH)).json()["controls"]["intent"]
                audit = (await http.get("/admin/audit", headers=AUTH)).json()["changes"]
                return before, put, members, emptied, after, bad, state, audit
            finally:
                await app.close()

    before, put, members, emptied, after, bad, state, audit = asyncio.run(scenario())
    assert before == ["classic", "ensemble", "classic"]  # "beta_testers" is no user: no group yet
    assert put.status_code == 200 and put.json()["groups"] == {"beta_testers": ["u-1", "u-2"]}
    assert members == ["ensemble", "ensemble", "classic"]
    assert emptied.status_code == 200 and after == "classic"
    assert bad.status_code == 400 and "groups" in bad.json()["error"]
    assert state["groups"] == {} and state["ensemble"]["allowed_users"] == ["beta_testers", "u-solo"]
    assert audit[0]["changed_by"] == "alice" and audit[0]["action"].startswith("intent: groups")
