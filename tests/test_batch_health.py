"""The nightly batch scorer's health, read from its record of runs for the alerts: the last success, whether the
latest run failed, the latest success's duration against the usual (the median of the successes before it)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from inference.monitoring.batch_runs import batch_health
from inference.monitoring.observer import Monitoring, Observer
from inference.storage import engine_for, scoring_runs


class Gauges:
    def __init__(self):
        self.set = {}

    def gauge(self, name, value, **labels):
        self.set[(name, tuple(sorted(labels.items())))] = value


def run(mode, status, finished_hours_ago, duration_s, now):
    finished = now - timedelta(hours=finished_hours_ago)
    return {
        "mode": mode,
        "shard_index": 0,
        "shard_count": 1,
        "status": status,
        "model_versions": {},
        "worker": "test",
        "started_at": finished - timedelta(seconds=duration_s or 0),
        "heartbeat_at": finished,
        "finished_at": None if status == "running" else finished,
        "duration_s": duration_s,
    }


def test_the_health_of_each_mode_comes_from_its_latest_runs(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'runs.db'}")
    now = datetime.now(UTC)
    nights = [run("incremental", "succeeded", 24 * day + 2, 600.0 + 10 * day, now) for day in range(1, 9)]
    with engine.begin() as connection:
        connection.execute(
            insert(scoring_runs),
            [
                *nights,
                run("incremental", "succeeded", 2, 1500.0, now),  # last night: 2.5x the usual
                run("incremental", "failed", 1, 30.0, now),  # then a retry that failed
                run("incremental", "running", 0, None, now),  # one running now is not finished: not counted
                run("full", "succeeded", 24 * 40, 7200.0, now),
            ],
        )
    health = {entry.mode: entry for entry in batch_health(engine)}
    incremental, full = health["incremental"], health["full"]
    assert incremental.last_run_failed is True and full.last_run_failed is False
    assert abs(incremental.last_success_at - (now - timedelta(hours=2))) < timedelta(seconds=1)
    assert incremental.last_duration_s == 1500.0
    assert incremental.usual_duration_s == 640.0  # the median of the 7 successes before the latest: 610..670
    assert full.usual_duration_s is None  # one run: no usual yet

    gauges = Gauges()
    monitoring = Monitoring(
        Observer(metrics=gauges),
        engine,
        psi_alert=0.2,
        correlation_alert_below=0.5,
        correlation_window_days=30,
        correlation_min_pairs=20,
    )
    monitoring.batch_runs()
    assert gauges.set[("inference_batch_last_run_failed", (("mode", "incremental"),))] == 1.0
    assert gauges.set[("inference_batch_usual_duration_seconds", (("mode", "incremental"),))] == 640.0
    assert ("inference_batch_usual_duration_seconds", (("mode", "full"),)) not in gauges.set
    stamp = gauges.set[("inference_batch_last_success_timestamp_seconds", (("mode", "full"),))]
    assert abs(stamp - (now - timedelta(days=40)).timestamp()) < 1


def test_no_run_yet_exports_nothing(tmp_path):
    assert batch_health(engine_for(f"sqlite:///{tmp_path / 'empty.db'}")) == []
