"""The guard (inference/serving/guard.py): a cost or latency spike of the intent ensemble lowers its rollout
percentage by a step, within the floor, not within the cooldown, not on a handful of requests, and never raises
it; of two workers seeing the same spike one acts; and over HTTP, a slow ensemble ends with a lower share that the
admin audit says `guard` set, and why."""

from __future__ import annotations

import asyncio
from collections import deque

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from inference.app import build
from inference.families import get_family
from inference.families.registry import configured
from inference.http.admin import admin_routes
from inference.http.scoring import scoring_routes
from inference.monitoring.cost import GIB, CostMeter, Prices
from inference.monitoring.observer import Observer
from inference.serving.cache import MemoryCache
from inference.serving.control import FileControl
from inference.serving.guard import COST, GUARD_ACTOR, LATENCY, Guard, GuardLimits, Measured, decide
from inference.serving.loader import Families, FamilyLoader
from inference.serving.manager import ModelManager
from inference.serving.versions import TrafficSplit, VersionedFamily
from inference.settings import Settings

LIMITS = GuardLimits(
    cost_per_1k=1.0, p95_ms=250.0, floor_percentage=1.0, step=0.5, cooldown_s=300.0, window_s=60.0, min_answers=100
)
HEALTHY = Measured(dollars=0.0002, charged=500, p95_ms=120.0, timed=500)
SLOW = Measured(dollars=0.0002, charged=500, p95_ms=400.0, timed=500)
COSTLY = Measured(dollars=1.5, charged=500, p95_ms=120.0, timed=500)  # 3 per 1k requests


def test_a_latency_spike_halves_the_share_and_says_why():
    lowering = decide(10.0, SLOW, LIMITS, since_change_s=None)
    assert lowering is not None and (lowering.to, lowering.reason) == (5.0, LATENCY)
    assert lowering.describe() == (
        "latency P95 400 ms over 500 requests, above the ceiling 250 ms: rollout_percentage 10 -> 5"
    )


def test_a_cost_spike_halves_the_share():
    lowering = decide(10.0, COSTLY, LIMITS, since_change_s=None)
    assert lowering is not None and (lowering.to, lowering.reason, lowering.measured) == (5.0, COST, 3.0)


def test_healthy_figures_leave_the_share_alone():
    assert decide(10.0, HEALTHY, LIMITS, since_change_s=None) is None


def test_a_handful_of_slow_or_costly_requests_moves_nothing():
    few = Measured(dollars=0.03, charged=10, p95_ms=4000.0, timed=99)
    assert decide(10.0, few, LIMITS, since_change_s=None) is None


def test_the_share_stops_at_the_floor_and_a_share_at_or_under_it_is_left_alone():
    last = decide(1.5, SLOW, LIMITS, since_change_s=None)
    assert last is not None and last.to == 1.0
    assert decide(1.0, SLOW, LIMITS, since_change_s=None) is None
    assert decide(0.5, COSTLY, LIMITS, since_change_s=None) is None


def test_no_action_within_the_cooldown_of_the_shares_last_change():
    assert decide(10.0, SLOW, LIMITS, since_change_s=299.0) is None
    assert decide(10.0, SLOW, LIMITS, since_change_s=300.0) is not None


# --- the guard of one worker over the control store, with fakes: no models, a clock the test moves -----------------


class FlagScorer:
    """An intent version as the manager sees it: its `ensemble` flag, applied from the control store."""

    def __init__(self) -> None:
        self.flag = {"enabled": True, "rollout_percentage": 10.0, "allowed_users": ["beta-1"], "fallback": "classic"}

    def model_names(self):
        return ["intent-fake"]

    def controls(self):
        return {"ensemble": dict(self.flag)}

    def control(self, name):
        return dict(self.flag)

    def apply_control(self, controls):
        self.flag = dict(controls["ensemble"])

    def close(self):
        pass


class Clock:
    """The monotonic clock, and the process's CPU-seconds the cost meter reads: both moved by the test."""

    def __init__(self) -> None:
        self.now, self.cpu = 1000.0, 0.0

    def __call__(self) -> float:
        return self.now


def worker(control, clock):
    """A worker serving intent, its observer (with a cost meter on fake counters) and its guard."""
    families = Families(
        enabled=["intent"],
        versions={"intent": VersionedFamily("intent", {"v1.0.0": FlagScorer()}, TrafficSplit(stable="v1.0.0"))},
    )
    loader = FamilyLoader(Settings(families=["intent"]), get_family)
    manager = ModelManager(families, loader, control, MemoryCache(ttl_s=60), retire_after_s=0, clock=clock)
    manager.adopt_shared_state()
    # 0.001 per CPU-second, memory free: what a request costs is its share of the CPU-seconds the test adds.
    meter = CostMeter(
        Prices(cpu_hour=3.6, gib_hour=0.0),
        cpu_seconds=lambda: clock.cpu,
        resident_bytes=lambda: GIB,
        clock=clock,
        export=False,
    )
    observer = Observer(cost=meter)
    guard = Guard(manager, observer, LIMITS, family="intent", segment="ensemble", control="ensemble", clock=clock)
    return manager, observer, guard


def slow_answers(observer, clock, count=200, seconds=0.4):
    ended = observer.segment_latencies.setdefault(("intent", "ensemble"), deque(maxlen=2000))
    ended.extend((clock.now, seconds) for _ in range(count))


def share(manager):
    return manager.controls()["intent"]["ensemble"]["rollout_percentage"]


def test_of_two_workers_seeing_one_spike_one_lowers_the_share_and_the_other_waits_the_cooldown(tmp_path):
    control, clock = FileControl(tmp_path / "state"), Clock()
    (first, first_seen, first_guard), (second, second_seen, second_guard) = (
        worker(control, clock),
        worker(control, clock),
    )
    slow_answers(first_seen, clock)
    slow_answers(second_seen, clock)

    lowered = asyncio.run(first_guard.check())
    assert lowered is not None and share(first) == 5.0
    # The second has not applied the change yet: it measured under 10, finds 5 stored, and writes nothing.
    assert asyncio.run(second_guard.check()) is None
    asyncio.run(second.apply_shared_state())
    assert share(second) == 5.0
    [entry] = control.audit()
    assert entry["changed_by"] == GUARD_ACTOR and entry["state"]["controls"]["intent"]["ensemble"] == {
        "enabled": True,
        "rollout_percentage": 5.0,
        "allowed_users": ["beta-1"],  # the flag's other fields untouched
        "fallback": "classic",
    }

    # Still slow under the new share: nothing within the cooldown, on either worker; after it, one step more,
    # again by one worker only.
    clock.now += 200
    slow_answers(first_seen, clock)
    slow_answers(second_seen, clock)
    assert asyncio.run(first_guard.check()) is None and asyncio.run(second_guard.check()) is None
    clock.now += 101
    slow_answers(first_seen, clock)
    slow_answers(second_seen, clock)
    again = asyncio.run(first_guard.check())
    assert again is not None and (again.share, again.to) == (5.0, 2.5)
    assert asyncio.run(second_guard.check()) is None
    assert [entry["changed_by"] for entry in control.audit()] == [GUARD_ACTOR, GUARD_ACTOR]


def test_a_cost_spike_is_priced_from_the_meter_and_an_operator_raise_gets_the_cooldown_too(tmp_path):
    control, clock = FileControl(tmp_path / "state"), Clock()
    manager, observer, guard = worker(control, clock)
    for _ in range(200):
        observer.cost.served("intent", "ensemble", 0.01)
    clock.now, clock.cpu = clock.now + 10, clock.cpu + 600  # 0.6 for 200 requests: 3 per 1,000
    observer.cost.charge()
    lowered = asyncio.run(guard.check())
    assert lowered is not None and lowered.reason == COST and lowered.measured == pytest.approx(3.0)

    asyncio.run(manager.set_control("intent", "ensemble", {"rollout_percentage": 20.0}, actor="alice"))
    clock.now += 400
    for _ in range(200):
        observer.cost.served("intent", "ensemble", 0.01)
    clock.cpu += 600
    observer.cost.charge()
    assert asyncio.run(guard.check()) is None  # saw the operator's change now: the cooldown starts
    assert share(manager) == 20.0
    assert [entry["changed_by"] for entry in control.audit()] == ["alice", GUARD_ACTOR]


# --- over HTTP: the service's routes in process, the intent ensemble slowed by fault injection -------------------

TOKEN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_slow_ensemble_has_its_share_lowered_by_the_guard_as_the_admin_api_reads_it(text_reports, tmp_path):
    settings = Settings(
        intent_version="v1.0.0",
        families=["intent"],
        inject_faults={"intent-ensemble": "delay_ms=80"},  # the synthetic spike: every ensemble call 80 ms slower
        intent_ensemble_budget_ms=2000.0,  # the slowed ensemble still answers, however busy the machine
        ensemble_guard_p95_ms=40.0,
        ensemble_guard_min_answers=20,
        database_url=f"sqlite:///{tmp_path / 'inference.db'}",
    )
    app = build(settings, state_dir=tmp_path / "state")
    assert app.ready() and app.guard is not None
    routes = [
        *scoring_routes([configured(settings)["intent"]], lambda: app),
        *admin_routes({"alice": TOKEN}, lambda: app.manager, wait_s=5.0),
    ]
    acted_before = REGISTRY.get_sample_value(
        "inference_guard_actions_total", {"family": "intent", "segment": "ensemble", "reason": LATENCY}
    )

    async def scenario():
        transport = httpx.ASGITransport(app=Starlette(routes=routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://intent") as http:
            try:
                before = (await http.get("/admin/routes", headers=AUTH)).json()["controls"]["intent"]["ensemble"]
                assert await app.guard.check() is None  # no answers yet: nothing to judge
                for index in range(25):
                    text = {"text": f"cheap flights to city {index}"}
                    answer = await http.post("/api/v2/classify/ensemble", json=text)
                    assert answer.status_code == 200 and answer.json()["variant"] == "ensemble", answer.text
                await app.monitoring.tick(statistics=False, share_drift=False)  # the monitoring timer's round: cost
                lowered = await app.guard.check()
                after = (await http.get("/admin/routes", headers=AUTH)).json()["controls"]["intent"]["ensemble"]
                audit = (await http.get("/admin/audit", headers=AUTH)).json()["changes"]
                again = await app.guard.check()  # within the cooldown
                return before, lowered, after, audit, again
            finally:
                await app.close()

    before, lowered, after, audit, again = asyncio.run(scenario())
    assert app.serving.observer.cost.spent("intent", "ensemble", since=0.0)[1] == 25  # charged on the tick
    assert lowered is not None and lowered.reason == LATENCY and lowered.measured > 40.0
    assert before["rollout_percentage"] == 10.0 and after == {**before, "rollout_percentage": 5.0}
    action = audit[0]["action"]
    assert audit[0]["changed_by"] == "guard" and action.startswith("intent: ensemble {")
    assert "; latency P95 " in action and action.endswith("above the ceiling 40 ms: rollout_percentage 10 -> 5")
    assert again is None
    acted = REGISTRY.get_sample_value(
        "inference_guard_actions_total", {"family": "intent", "segment": "ensemble", "reason": LATENCY}
    )
    assert acted == (acted_before or 0.0) + 1
