"""The monitoring reads answer from the figures the timer computed last: a burst of reads costs the database one
round at most (the first, shared by every reader waiting for it), each answer says when its figures were computed,
and while the database is away the reads keep the last figures, or answer 503 when there never were any. In
process, the SQL statements counted on the engine itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy import event, insert
from starlette.applications import Starlette

from inference.http.reads import read_routes
from inference.monitoring.drift import DriftMonitor
from inference.monitoring.ground_truth import PredictionLog
from inference.monitoring.observer import Monitoring, Observer
from inference.serving.loader import Families
from inference.settings import Settings
from inference.storage import DeferredEngine, labelled_feedback, predictions, teacher_ratings

CORRELATION, ACCURACY, DASHBOARD = "/api/v1/monitoring/correlation", "/api/v1/monitoring/accuracy", "/dashboard"


class Switchable:
    """An engine that can be taken away: while `away`, every use fails as an unreachable database does."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.away = False
        self.attempts_while_away = 0

    def __getattr__(self, name: str) -> Any:
        if self.away:
            self.attempts_while_away += 1
            raise sqlalchemy.exc.OperationalError("connect", {}, ConnectionRefusedError("database away"))
        return getattr(self.engine, name)


class Statements:
    """SQL statements run on an engine, counted as the driver receives them."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._counted)

    def _counted(self, *args: Any) -> None:
        self.count += 1


@pytest.fixture
def database(tmp_path):
    engine = DeferredEngine(f"sqlite:///{tmp_path / 'monitoring.db'}").open()  # the schema made before counting
    now = datetime.now(UTC)
    with engine.begin() as connection:
        rows = [(f"s-{index}", 1 + index % 5, index % 5 / 5 + 0.05) for index in range(40)]
        connection.execute(
            insert(teacher_ratings),
            [
                {"student_id": student, "skill": "leadership", "rating": rating, "rated_at": now, "received_at": now}
                for student, rating, _ in rows
            ],
        )
        connection.execute(
            insert(predictions),
            [
                {"student_id": s, "skill": "leadership", "model_version": "v1.0.0", "score": p, "predicted_at": now}
                for s, _, p in rows
            ],
        )
        connection.execute(
            insert(labelled_feedback),
            [
                {
                    "family": "textpair",
                    "model_version": "v1.0.0",
                    "variant": "",
                    "label": "1",
                    "predicted": "1" if index % 10 else "0",
                    "correct": int(index % 10 != 0),
                    "received_at": now,
                }
                for index in range(150)
            ],
        )
    return engine


def reads_app(engine: Any) -> tuple[Starlette, Monitoring]:
    """The read routes over a worker's monitoring, on `engine`; nothing else of a worker."""
    observer = Observer(drift=DriftMonitor(), predictions=PredictionLog(None))
    monitoring = Monitoring(
        observer,
        engine,
        psi_alert=0.2,
        correlation_alert_below=0.5,
        correlation_window_days=30,
        correlation_min_pairs=20,
    )
    serving = SimpleNamespace(observer=observer, families=Families(enabled=[]))
    app = SimpleNamespace(settings=Settings(), monitoring=monitoring, serving=serving, shadows={})
    return Starlette(routes=read_routes(lambda: app)), monitoring


async def burst(asgi: Starlette, path: str, count: int = 100) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://reads") as client:
        return await asyncio.gather(*(client.get(path) for _ in range(count)))


def test_a_burst_of_reads_costs_one_database_round_and_then_none(database):
    # What one computation of each costs, on a monitoring of its own.
    statements = Statements(database)
    _, alone = reads_app(database)
    alone.correlations()
    correlation_round = statements.count
    alone.accuracy()
    accuracy_round = statements.count - correlation_round
    assert correlation_round >= 1 and accuracy_round >= 1

    asgi, monitoring = reads_app(database)

    async def scenario() -> None:
        before = statements.count
        first = await burst(asgi, CORRELATION)  # before the timer's first round: one computation for all
        assert statements.count - before == correlation_round
        assert {response.status_code for response in first} == {200}
        bodies = {response.text for response in first}
        assert len(bodies) == 1  # one computation: the same figures, the same computed_at
        (body,) = [response.json() for response in first[:1]]
        (leadership,) = [entry for entry in body["correlations"] if entry["source"] == "served"]
        assert leadership["pairs"] == 40 and leadership["pearson_r"] > 0.9
        computed_at = datetime.fromisoformat(body["computed_at"])
        assert datetime.now(UTC) - computed_at < timedelta(seconds=30)

        before = statements.count
        accuracy = await burst(asgi, ACCURACY)
        assert statements.count - before == accuracy_round
        assert {response.json()["accuracy"][0]["items"] for response in accuracy} == {150}

        before = statements.count
        again = [*await burst(asgi, CORRELATION), *await burst(asgi, ACCURACY), *await burst(asgi, DASHBOARD, 20)]
        assert statements.count == before  # the kept figures: not one statement
        assert all(response.status_code == 200 for response in again)
        assert {response.json()["computed_at"] for response in again[:100]} == {body["computed_at"]}

        await monitoring.tick(statistics=True)  # the timer's round replaces them
        later = (await burst(asgi, CORRELATION, 1))[0].json()
        assert datetime.fromisoformat(later["computed_at"]) > computed_at

    asyncio.run(scenario())


def test_while_the_database_is_away_the_reads_keep_the_last_figures(database):
    engine = Switchable(database)
    asgi, monitoring = reads_app(engine)

    async def scenario() -> None:
        kept = (await burst(asgi, CORRELATION, 1))[0].json()
        engine.away = True
        await monitoring.tick(statistics=True)  # fails: logged, tried again next time
        during = await burst(asgi, CORRELATION, 10)
        assert {response.status_code for response in during} == {200}
        assert {response.json()["computed_at"] for response in during} == {kept["computed_at"]}
        assert during[0].json()["correlations"] == kept["correlations"]

    asyncio.run(scenario())


def test_with_no_figures_yet_and_the_database_away_a_read_is_a_503_and_readers_share_one_attempt(database):
    engine = Switchable(database)
    engine.away = True
    asgi, _ = reads_app(engine)

    async def scenario() -> list[httpx.Response]:
        return await burst(asgi, CORRELATION, 20)

    answers = asyncio.run(scenario())
    assert {response.status_code for response in answers} == {503}
    assert {response.json()["code"] for response in answers} == {"storage_unavailable"}
    assert engine.attempts_while_away == 1  # one attempt for the twenty readers waiting on it
