"""The dual-mode requirement's go/no-go matrix: each criterion scored 0 up to its minimum, 1 from its target on and
linearly between, weighted 0.4 / 0.3 / 0.2 / 0.1, proceeding above 0.75 and waiting for data while a criterion has
none; and in process over HTTP, labelled intent feedback with the callers' satisfaction read back as the matrix,
beside this worker's cost and the ensemble's availability."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from inference.families.intent.spec import SPEC as INTENT_SPEC
from inference.families.intent.variants import CLASSIC, ENSEMBLE, VARIANTS
from inference.http.reads import read_routes
from inference.http.writes import write_routes
from inference.monitoring.cost import Charge, CostMeter, Prices
from inference.monitoring.drift import DriftMonitor
from inference.monitoring.feedback import Accuracy
from inference.monitoring.gonogo import (
    HOLD,
    NOT_ENOUGH_DATA,
    PROCEED,
    availability,
    cost_increase,
    criterion_score,
    ensemble_matrices,
    go_no_go,
)
from inference.monitoring.ground_truth import PredictionLog
from inference.monitoring.objectives import GO_NO_GO_CRITERIA, GO_NO_GO_PROCEED_ABOVE
from inference.monitoring.observer import Monitoring, Observer
from inference.serving.loader import Families
from inference.serving.protocol import LabelledAnswer
from inference.settings import Settings
from inference.storage import DeferredEngine, labelled_feedback

FEEDBACK, ACCURACY, DASHBOARD = "/api/v1/monitoring/feedback/intent", "/api/v1/monitoring/accuracy", "/dashboard"
AT_TARGET = {"accuracy": 0.15, "satisfaction": 9.0, "cost": 0.50, "stability": 0.999}
AT_MINIMUM = {"accuracy": 0.10, "satisfaction": 7.0, "cost": 1.00, "stability": 0.99}


def test_the_matrix_is_the_requirement_s_table():
    criteria = {criterion.name: criterion for criterion in GO_NO_GO_CRITERIA}
    assert {name: (c.minimum, c.target, c.weight) for name, c in criteria.items()} == {
        "accuracy": (0.10, 0.15, 0.4),
        "satisfaction": (7.0, 9.0, 0.3),
        "cost": (1.00, 0.50, 0.2),
        "stability": (0.99, 0.999, 0.1),
    }
    assert GO_NO_GO_PROCEED_ABOVE == 0.75


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("accuracy", 0.05, 0.0),  # below the minimum
        ("accuracy", 0.10, 0.0),  # at the minimum: "> 10%" is not met yet
        ("accuracy", 0.125, 0.5),
        ("accuracy", 0.15, 1.0),  # at the target
        ("accuracy", 0.40, 1.0),  # beyond it
        ("satisfaction", 6.0, 0.0),
        ("satisfaction", 7.0, 0.0),
        ("satisfaction", 8.5, 0.75),
        ("satisfaction", 9.0, 1.0),
        ("satisfaction", 10.0, 1.0),
        ("cost", 1.5, 0.0),  # 150% dearer: past the maximum increase
        ("cost", 1.0, 0.0),
        ("cost", 0.75, 0.5),  # lower is better: a target under the minimum
        ("cost", 0.5, 1.0),
        ("cost", -0.2, 1.0),  # cheaper than classic
        ("stability", 0.95, 0.0),
        ("stability", 0.99, 0.0),
        ("stability", 0.9945, 0.5),
        ("stability", 0.999, 1.0),
        ("stability", 1.0, 1.0),
    ],
)
def test_a_criterion_scores_0_up_to_its_minimum_1_from_its_target_and_linearly_between(name, value, expected):
    (criterion,) = [criterion for criterion in GO_NO_GO_CRITERIA if criterion.name == name]
    assert criterion_score(value, minimum=criterion.minimum, target=criterion.target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("measured", "score", "decision"),
    [
        (AT_TARGET, 1.0, PROCEED),
        (AT_MINIMUM, 0.0, HOLD),
        # Accuracy and satisfaction at target (0.7), cost a quarter of the way (0.05): 0.75 is not above 0.75.
        ({**AT_TARGET, "cost": 0.875, "stability": 0.99}, 0.75, HOLD),
        ({**AT_TARGET, "cost": 0.875}, 0.85, PROCEED),
        # Everything but cost at target: a doubled cost alone does not stop it (the formula has no veto).
        ({**AT_TARGET, "cost": 1.2}, 0.8, PROCEED),
        ({**AT_MINIMUM, "accuracy": 0.125, "satisfaction": 8.0}, 0.35, HOLD),
        ({**AT_TARGET, "satisfaction": None}, None, NOT_ENOUGH_DATA),
        ({name: value for name, value in AT_TARGET.items() if name != "stability"}, None, NOT_ENOUGH_DATA),
        ({}, None, NOT_ENOUGH_DATA),
    ],
)
def test_the_weighted_score_proceeds_above_0_75_and_waits_for_every_criterion(measured, score, decision):
    matrix = go_no_go("v1", measured)
    assert (matrix.score, matrix.decision) == (pytest.approx(score) if score is not None else None, decision)
    assert [entry.name for entry in matrix.criteria] == ["accuracy", "satisfaction", "cost", "stability"]
    for entry in matrix.criteria:  # a criterion with data is scored even while another has none
        assert (entry.score is None) == (measured.get(entry.name) is None)
        assert entry.value == measured.get(entry.name)


def test_cost_increase_is_the_ensemble_s_cost_per_request_over_classic_s():
    def intent(segment: str, requests: int, dollars: float) -> Charge:
        return Charge("intent", segment, requests, 0.0, 0.0, dollars)

    assert cost_increase([intent(CLASSIC, 100, 0.02), intent(ENSEMBLE, 10, 0.0035)]) == pytest.approx(0.75)
    assert cost_increase([intent(CLASSIC, 100, 0.02), intent(ENSEMBLE, 10, 0.001)]) == pytest.approx(-0.5)
    assert cost_increase([intent(CLASSIC, 100, 0.02), Charge("skills", ENSEMBLE, 10, 0, 0, 1.0)]) is None
    assert cost_increase([intent(CLASSIC, 0, 0.0), intent(ENSEMBLE, 10, 0.001)]) is None
    assert cost_increase([]) is None


def test_availability_is_the_share_of_the_ensemble_s_answers_it_gave_itself():
    assert availability(Counter(answered=995, ensemble_timeout=3, ensemble_unreachable=2)) == pytest.approx(0.995)
    assert availability(Counter(ensemble_overloaded=4)) == 0.0
    assert availability(Counter()) is None  # never chosen: no data
    assert availability(None) is None  # a scorer that keeps no outcomes


def test_each_intent_version_with_feedback_or_loaded_gets_a_matrix():
    accuracies = [
        Accuracy("intent", "v1", CLASSIC, 500, 0.80, 100, 6.0),
        Accuracy("intent", "v1", ENSEMBLE, 500, 0.92, 100, 9.0),
        Accuracy("textpair", "v1", "", 500, 0.9),
    ]
    matrices = ensemble_matrices(
        accuracies, cost_increase=0.5, outcomes={"v1": Counter(answered=1000), "v2": Counter(answered=10)}
    )
    assert [(matrix.model_version, matrix.decision) for matrix in matrices] == [
        ("v1", PROCEED),
        ("v2", NOT_ENOUGH_DATA),  # loaded, no feedback yet
    ]
    assert [entry.value for entry in matrices[0].criteria] == [pytest.approx(0.15), 9.0, 0.5, 1.0]
    assert matrices[0].score == pytest.approx(1.0)


# --- in process, over HTTP -----------------------------------------------------------------------------------


class LabelledIntent:
    """An intent version answering labelled items as a test sets it: the text names the variants that get it wrong
    (`classic-wrong`, `ensemble-wrong`). `outcomes`: what it counts of the ensemble's answers, None to count none (a
    scorer from before `ensemble_outcomes`)."""

    def __init__(self, outcomes: Counter[str] | None) -> None:
        if outcomes is not None:
            self.ensemble_outcomes = outcomes

    def answer_labelled(
        self, items: Sequence[Any], *, max_text_chars: int, first_index: int = 0
    ) -> list[LabelledAnswer]:
        return [
            LabelledAnswer(variant, item.intent, "wrong" if f"{variant}-wrong" in item.text else item.intent)
            for variant in VARIANTS
            for item in items
        ]


def labelled(count: int, *, classic_wrong: int, ensemble_wrong: int, ratings: Sequence[dict]) -> list[dict]:
    """`count` labelled queries, the first `classic_wrong` (and `ensemble_wrong`) answered wrong by that variant; the
    first items carry `ratings` (variant and satisfaction), the others none."""
    items = []
    for index in range(count):
        marks = [name for name, wrong in (("classic", classic_wrong), ("ensemble", ensemble_wrong)) if index < wrong]
        text = " ".join([f"query {index}", *(f"{mark}-wrong" for mark in marks)])
        items.append({"text": text, "intent": "informational", **(ratings[index] if index < len(ratings) else {})})
    return items


class Worker:
    """The write and read routes of one worker in process: an intent family of two versions (v1 counts the
    ensemble's outcomes, v2 does not), a cost meter on set counters and a SQLite database of its own."""

    def __init__(self, tmp_path: Any) -> None:
        self.engine = DeferredEngine(f"sqlite:///{tmp_path / 'feedback.db'}").open()
        self.cpu, self.now = 10.0, 100.0
        self.cost = CostMeter(
            Prices(cpu_hour=3.6, gib_hour=0.0),
            cpu_seconds=lambda: self.cpu,
            resident_bytes=lambda: 0,
            clock=lambda: self.now,
            export=False,
        )
        observer = Observer(drift=DriftMonitor(), predictions=PredictionLog(None), cost=self.cost)
        self.monitoring = Monitoring(
            observer,
            self.engine,
            psi_alert=0.2,
            correlation_alert_below=0.5,
            correlation_window_days=30,
            correlation_min_pairs=20,
            feedback_min_items=20,
        )
        outcomes = Counter(answered=995, ensemble_timeout=3, ensemble_overloaded=2)
        scorers = {"v1": LabelledIntent(outcomes), "v2": LabelledIntent(None)}
        families = Families(enabled=["intent"], versions={"intent": SimpleNamespace(scorers=scorers)})
        serving = SimpleNamespace(observer=observer, families=families, family=families.get)
        app = SimpleNamespace(settings=Settings(), monitoring=self.monitoring, serving=serving, shadows={})
        routes = [*write_routes([INTENT_SPEC], lambda: app), *read_routes(lambda: app)]
        self.asgi = Starlette(routes=routes)

    def serve(self, segment: str, requests: int, seconds_each: float) -> None:
        for _ in range(requests):
            self.cost.served("intent", segment, seconds_each)

    def charge(self, cpu_s: float) -> None:
        self.cpu += cpu_s
        self.now += 1.0
        self.cost.charge()

    def stored_rows(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(labelled_feedback)).scalar_one())

    def call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        async def request() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
                return await client.request(method, path, json=body)

        return asyncio.run(request())

    def recompute(self) -> None:
        """One round of the monitoring timer: the reads answer from the figures it computed last."""
        asyncio.run(self.monitoring.tick(statistics=True, share_drift=False))


@pytest.fixture
def worker(tmp_path):
    return Worker(tmp_path)


def test_labelled_feedback_with_satisfaction_is_read_back_as_the_go_no_go_matrix(worker):
    # Classic right on 80% of the items, the ensemble on 92%: 15% better, the accuracy's target. Callers shown the
    # ensemble rate it 8 on average (7 and 9), those shown classic 6.
    ratings = [{"variant": ENSEMBLE, "satisfaction": 7 + 2 * (index % 2)} for index in range(30)]
    ratings += [{"variant": CLASSIC, "satisfaction": 6} for _ in range(30)]
    ratings += [{"variant": ENSEMBLE} for _ in range(10)]  # the variant shown, no rating: counts for accuracy only
    items = labelled(100, classic_wrong=20, ensemble_wrong=8, ratings=ratings)
    posted = worker.call("POST", FEEDBACK, {"items": items})
    assert posted.status_code == 200, posted.text
    assert posted.json()["scored_by"] == ["v1/classic", "v1/ensemble", "v2/classic", "v2/ensemble"]
    # The ensemble's requests cost 1.75 times classic's (charged by their time): 75% dearer, halfway to the target.
    worker.serve(CLASSIC, 40, 0.001)
    worker.serve(ENSEMBLE, 10, 0.00175)
    worker.charge(cpu_s=0.575)  # 0.4 CPU-seconds to classic's 40 requests, 0.175 to the ensemble's 10

    body = worker.call("GET", ACCURACY).json()
    rated = {
        (entry["model_version"], entry["variant"]): (entry["items"], entry["rated"], entry["satisfaction"])
        for entry in body["accuracy"]
    }
    assert rated == {
        ("v1", CLASSIC): (100, 30, 6.0),
        ("v1", ENSEMBLE): (100, 30, 8.0),
        ("v2", CLASSIC): (100, 30, 6.0),
        ("v2", ENSEMBLE): (100, 30, 8.0),
    }
    assert [entry["decision"] for entry in body["ensemble"]] == ["go", "go"]  # the accuracy rule alone, as before
    v1, v2 = body["go_no_go"]
    criteria = {entry["name"]: entry for entry in v1["criteria"]}
    assert {name: (entry["value"], entry["score"]) for name, entry in criteria.items()} == {
        "accuracy": (pytest.approx(0.15), 1.0),
        "satisfaction": (8.0, 0.5),
        "cost": (pytest.approx(0.75), 0.5),
        "stability": (pytest.approx(0.995), pytest.approx(0.5556, abs=1e-4)),
    }
    assert (criteria["cost"]["minimum"], criteria["cost"]["target"], criteria["cost"]["weight"]) == (1.0, 0.5, 0.2)
    assert v1["score"] == pytest.approx(0.4 + 0.3 * 0.5 + 0.2 * 0.5 + 0.1 * 0.5556, abs=1e-4)
    assert (v1["model_version"], v1["decision"], v1["proceed_above"]) == ("v1", HOLD, 0.75)
    # v2 keeps no outcomes of the ensemble: its stability has no data, and the matrix waits for it.
    assert (v2["model_version"], v2["score"], v2["decision"]) == ("v2", None, NOT_ENOUGH_DATA)
    assert [entry["score"] for entry in v2["criteria"]] == [1.0, 0.5, 0.5, None]

    # 30 more callers shown the ensemble rate it 10 (accuracy as before): a mean of 9, the target, and v1 proceeds.
    more = labelled(50, classic_wrong=10, ensemble_wrong=4, ratings=[{"variant": ENSEMBLE, "satisfaction": 10}] * 30)
    assert worker.call("POST", FEEDBACK, {"items": more}).status_code == 200
    worker.recompute()
    v1, _ = worker.call("GET", ACCURACY).json()["go_no_go"]
    assert [entry["score"] for entry in v1["criteria"]] == [1.0, 1.0, 0.5, pytest.approx(0.5556, abs=1e-4)]
    assert (v1["score"], v1["decision"]) == (pytest.approx(0.8556, abs=1e-4), PROCEED)

    page = worker.call("GET", DASHBOARD).text
    assert "Go/no-go matrix of the ensemble" in page and "intent v1: score 0.856" in page and ">proceed</span>" in page
    assert "<td>satisfaction</td><td>9.0/10</td><td>7.0/10</td><td>9.0/10</td>" in page
    assert "<td>cost</td><td>+75%</td><td>+100%</td><td>+50%</td>" in page
    # Cost per 1,000 requests per family and variant, at 0.001 per CPU-second; and CPU ms per request.
    assert "<td>intent</td><td>classic</td><td>40</td><td>0.01</td><td>10.000</td>" in page
    assert "<td>intent</td><td>ensemble</td><td>10</td><td>0.0175</td><td>17.500</td>" in page


@pytest.mark.parametrize(
    ("rating", "error"),
    [
        ({"variant": ENSEMBLE, "satisfaction": 0}, "items[1].satisfaction: Input should be greater than or equal to 1"),
        ({"variant": ENSEMBLE, "satisfaction": 11}, "items[1].satisfaction: Input should be less than or equal to 10"),
        ({"variant": ENSEMBLE, "satisfaction": 7.5}, "items[1].satisfaction: Input should be a valid integer"),
        ({"variant": ENSEMBLE, "satisfaction": "7"}, "items[1].satisfaction: Input should be a valid integer"),
        ({"satisfaction": 8}, "items[1].variant: required with satisfaction"),
        ({"variant": "default", "satisfaction": 8}, "items[1].variant: Input should be 'classic' or 'ensemble'"),
    ],
)
def test_a_satisfaction_outside_1_to_10_or_without_its_variant_is_a_400_naming_the_field(worker, rating, error):
    items = labelled(2, classic_wrong=0, ensemble_wrong=0, ratings=[{"variant": CLASSIC, "satisfaction": 5}, rating])
    refused = worker.call("POST", FEEDBACK, {"items": items})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"].startswith(error), refused.json()
    assert refused.json()["code"] == "invalid_request"
    assert worker.stored_rows() == 0  # nothing of the request stored
