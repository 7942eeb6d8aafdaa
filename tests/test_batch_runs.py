"""Batch scoring runs on SQLite, in-process: full and incremental runs, reruns that write nothing, bad rows,
transient database errors, interruption and resume, model version changes, and the shard lock; and the CLI's exit
statuses (docs/batch.md), as a real process."""

import logging
import math
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from inference.batch.database import BatchDatabase
from inference.batch.scorer import BatchScorer, RunOptions
from inference.errors import RunInProgress
from inference.families.skills.family import load_skill_models
from inference.sharding import EVERYONE
from inference.storage import FAILED, INTERRUPTED, RUNNING, SUCCEEDED, rejected_rows, scoring_failures, scoring_runs
from tests.conftest import CANDIDATE
from tests.utils.batch import (
    count_rows,
    demo_database,
    expected_scores,
    load_students,
    run_batch,
    run_population,
    stored_assessments,
)
from tests.utils.prometheus import rows_dropped
from tests.utils.servers import free_port
from train.data.catalogue import SKILL_FEATURES, SKILLS
from train.data.population import DEMO_FEATURE_NAMES
from train.data.students import generate_students

N_STUDENTS = 1000


@pytest.fixture
def database(tmp_path):
    return demo_database(f"sqlite:///{tmp_path / 'batch.db'}")


@pytest.fixture
def population(database):
    return load_students(database, generate_students(N_STUDENTS, seed=31).feature_dicts())


def score(database, models, **options):
    options.setdefault("chunk_size", 128)
    options.setdefault("retry_backoff_s", 0.0)
    return BatchScorer(database, models, RunOptions(**options)).run()


def test_a_full_run_scores_every_student_for_every_skill_as_the_service_would(database, population, stable_models):
    summary = score(database, stable_models)
    assert summary.status == SUCCEEDED
    assert (summary.students_read, summary.assessments_written, summary.items_failed) == (1000, 7000, 0)
    stored = stored_assessments(database.engine)
    assert set(stored) == {(student, skill) for student in population for skill in SKILLS}
    expected = expected_scores(database.engine, stable_models)
    assert max(abs(stored[key].score - expected[key]) for key in expected) < 1e-9
    assert {row.model_version for row in stored.values()} == {"v1.0.0"}
    assert {row.run_id for row in stored.values()} == {summary.run_id}
    run = database.run(summary.run_id)
    assert (run.status, run.students_pending, run.students_read, run.assessments_written) == (
        SUCCEEDED,
        1000,
        1000,
        7000,
    )
    assert run.last_student_id == population[-1]
    assert run.duration_s > 0 and run.students_per_s > 0 and 0 < run.scoring_s < run.duration_s


def test_a_rerun_over_unchanged_data_writes_nothing(database, population, stable_models):
    first = score(database, stable_models)
    before = stored_assessments(database.engine)
    again = score(database, stable_models)
    assert (again.students_read, again.assessments_written, again.assessments_unchanged) == (1000, 0, 7000)
    incremental = score(database, stable_models, mode="incremental")
    assert (incremental.students_pending, incremental.students_read, incremental.assessments_written) == (0, 0, 0)
    after = stored_assessments(database.engine)
    assert {key: (row.run_id, row.scored_at) for key, row in after.items()} == {
        key: (first.run_id, row.scored_at) for key, row in before.items()
    }


@pytest.mark.clock
def test_incremental_scores_only_students_whose_features_changed(database, population, stable_models):
    score(database, stable_models)
    changed = population[100:110]
    later = datetime.now(UTC) + timedelta(seconds=1)
    features = database.student_features
    with database.engine.begin() as connection:
        connection.execute(
            update(features)
            .where(features.c.student_id.in_(changed))
            .values(novel_idea_count=features.c.novel_idea_count + 1, updated_at=later)
        )
        # Touched without a change: a candidate, but its assessments stay as they are.
        connection.execute(update(features).where(features.c.student_id == population[500]).values(updated_at=later))
    summary = score(database, stable_models, mode="incremental")
    assert summary.students_read == 11
    users = [skill for skill in SKILLS if "novel_idea_count" in SKILL_FEATURES[skill]]
    stored_now = stored_assessments_all(database)
    assert len(stored_now) == 7000 + 10 * len(users)  # the old features' assessments are kept beside the new
    fresh = {(row.student_id, row.skill) for row in stored_now if row.run_id == summary.run_id}
    assert {(student, skill) for student in changed for skill in users} <= fresh
    expected = expected_scores(database.engine, stable_models)
    latest = latest_per_student_skill(stored_now)
    assert max(abs(latest[key].score - expected[key]) for key in expected) < 1e-9
    assert score(database, stable_models, mode="incremental").students_read == 0


def test_incremental_reads_students_updated_since_the_last_finished_run_less_the_lookback(database, stable_models):
    """The watermark: an incremental run reads the range of the updated_at index after the last finished run's
    start less the lookback, not every student. A change stamped within the lookback (a writer whose stamps trail
    its commits) is scored; one stamped before it is left to the next full run (docs/batch.md)."""
    long_ago = datetime.now(UTC) - timedelta(days=3)
    students = load_students(database, generate_students(300, seed=5).feature_dicts(), updated_at=long_ago)
    assert score(database, stable_models, mode="incremental").students_read == 300  # no finished run: everyone
    full = score(database, stable_models)
    assert full.students_read == 300
    started = database.run(full.run_id).started_at.replace(tzinfo=UTC)
    stamps = {
        students[0]: started + timedelta(seconds=5),  # after the run: scored
        students[1]: started - timedelta(minutes=10),  # committed late, within the lookback: scored
        students[2]: long_ago + timedelta(hours=1),  # stamped before the lookback: left to the next full run
    }
    features = database.student_features
    with database.engine.begin() as connection:
        for student, stamp in stamps.items():
            connection.execute(
                update(features)
                .where(features.c.student_id == student)
                .values(help_given_per_week=func.coalesce(features.c.help_given_per_week, 0) + 1, updated_at=stamp)
            )
    incremental = score(database, stable_models, mode="incremental", lookback_s=3600)
    assert (incremental.students_pending, incremental.students_read) == (2, 2)
    fresh = {row.student_id for row in stored_assessments_all(database) if row.run_id == incremental.run_id}
    assert fresh == {students[0], students[1]}
    assert score(database, stable_models, mode="incremental").students_read == 0
    full_again = score(database, stable_models)
    assert students[2] in {
        row.student_id for row in stored_assessments_all(database) if row.run_id == full_again.run_id
    }


def stored_assessments_all(database):
    from inference.storage import skill_assessments

    with database.engine.connect() as connection:
        return connection.execute(select(skill_assessments)).all()


def latest_per_student_skill(rows):
    latest = {}
    for row in sorted(rows, key=lambda row: row.features_updated_at):
        latest[row.student_id, row.skill] = row
    return latest


def test_bad_rows_are_recorded_as_failed_items_and_the_rest_is_scored(database, stable_models):
    rows = generate_students(50, seed=4).feature_dicts()
    rows[3] = {**rows[3], "words_per_response": 5000.0}  # out of range for communication and creativity
    rows[7] = {}  # no features at all
    ids = load_students(database, rows)
    with database.engine.begin() as connection:  # SQLite keeps text written into a REAL column
        connection.exec_driver_sql(
            "UPDATE student_features SET task_completion_rate = 'n/a' WHERE student_id = ?", (ids[9],)
        )
        # Text Python's float() would take: a request with it gets a 400, so must this row.
        connection.exec_driver_sql(
            "UPDATE student_features SET leadership_roles_taken = '1_0' WHERE student_id = ?", (ids[11],)
        )
    summary = score(database, stable_models)
    assert summary.status == SUCCEEDED
    with database.engine.connect() as connection:
        failures = connection.execute(select(scoring_failures)).all()
    by_student = {}
    for failure in failures:
        by_student.setdefault(failure.student_id, {})[failure.skill] = failure
    assert set(by_student) == {ids[3], ids[7], ids[9], ids[11]}
    assert "expected a number, got str '1_0'" in next(iter(by_student[ids[11]].values())).message
    assert {failure.code for failure in by_student[ids[7]].values()} == {"empty_features"}
    assert len(by_student[ids[7]]) == 7
    out_of_range = by_student[ids[3]]
    assert set(out_of_range) == {skill for skill in SKILLS if "words_per_response" in SKILL_FEATURES[skill]}
    assert "features.words_per_response: 5000 is outside the valid range" in next(iter(out_of_range.values())).message
    assert "expected a number, got str 'n/a'" in next(iter(by_student[ids[9]].values())).message
    assert summary.items_failed == len(failures)
    assert summary.assessments_written == 50 * 7 - len(failures)
    # Failed items are not retried until the student's features change, and a full rerun records nothing new.
    assert score(database, stable_models, mode="incremental").students_read == 0
    rerun = score(database, stable_models)
    assert (rerun.items_failed, rerun.failures_recorded, rerun.assessments_written) == (len(failures), 0, 0)
    assert count_rows(database.engine, scoring_failures) == len(failures)


def test_a_student_the_database_refuses_is_recorded_as_unstorable_and_the_rest_is_scored(
    database, population, stable_models
):
    """A rule of the database (here a trigger) refuses one student's assessments: that chunk is written around the
    student, found by bisection in a few savepoints, not one per student; its items are failures `unstorable`."""
    (refused,) = load_students(database, generate_students(1, seed=5).feature_dicts(), prefix="refused")
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse_assessment BEFORE INSERT ON skill_assessments "
            "WHEN NEW.student_id LIKE 'refused-%' BEGIN SELECT RAISE(ABORT, 'refused by a rule'); END"
        )
    savepoints = []
    event.listen(database.engine, "savepoint", lambda *arguments: savepoints.append(arguments[1]))
    before = rows_dropped("skill_assessments", "invalid_row")
    summary = score(database, stable_models, chunk_size=2048)  # one chunk of 1,001 students
    assert summary.status == SUCCEEDED
    assert (summary.students_read, summary.assessments_written) == (1001, 7000)
    assert (summary.items_failed, summary.items_refused) == (7, 7)
    assert 0 < len(savepoints) <= 2 * math.ceil(math.log2(1001)) + 2
    with database.engine.connect() as connection:
        failures = connection.execute(select(scoring_failures)).all()
    assert {(failure.student_id, failure.code) for failure in failures} == {(refused, "unstorable")}
    assert len(failures) == 7 and "refused by a rule" in failures[0].message
    assert count_rows(database.engine, rejected_rows) == 0
    assert rows_dropped("skill_assessments", "invalid_row") == before + 7
    assert set(stored_assessments(database.engine)) == {(student, skill) for student in population for skill in SKILLS}
    # Not read again until its features change, like any failed item; good chunks take the path without savepoints.
    assert score(database, stable_models, mode="incremental").students_read == 0
    savepoints.clear()
    assert score(database, stable_models).items_refused == 7 and len(savepoints) > 0
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse_assessment")
    savepoints.clear()
    assert score(database, stable_models).assessments_written == 7 and savepoints == []


class FlakyDatabase(BatchDatabase):
    """Writes fail transiently `failures` times, at the `at`-th chunk."""

    def __init__(self, engine, *, failures, at=1):
        super().__init__(engine, DEMO_FEATURE_NAMES)
        self.failures, self.at, self.writes = failures, at, 0

    def write_chunk(self, scored, *, run_id, **options):
        self.writes += 1
        if self.writes >= self.at and self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().write_chunk(scored, run_id=run_id, **options)


def test_transient_write_errors_are_retried_and_logged_with_the_student_ids(
    database, population, stable_models, caplog
):
    flaky = FlakyDatabase(database.engine, failures=3, at=2)
    with caplog.at_level(logging.WARNING, logger="inference"):
        summary = score(flaky, stable_models)
    assert summary.status == SUCCEEDED and summary.assessments_written == 7000
    retries = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
    assert len(retries) == 3
    assert f"({population[128]} .. {population[255]})" in retries[0]
    assert "attempt 1 of 4" in retries[0] and "database is locked" in retries[0]
    assert len(stored_assessments(database.engine)) == 7000


def test_a_run_whose_database_stays_down_fails_and_the_rerun_resumes_where_it_stopped(
    database, population, stable_models, caplog
):
    flaky = FlakyDatabase(database.engine, failures=4, at=3)
    with pytest.raises(sqlite3.OperationalError), caplog.at_level(logging.ERROR, logger="inference"):
        score(flaky, stable_models)
    failed_run = database.recent_runs(1)[0]
    assert failed_run.status == FAILED and "database is locked" in failed_run.error
    assert failed_run.last_student_id == population[255]  # two chunks committed
    assert f"({population[256]} .. {population[383]}) failed, not retried further" in caplog.text
    assert "256 students read" in caplog.text and "stopped by OperationalError: database is locked" in caplog.text
    resumed = score(database, stable_models)
    assert resumed.resumed_from == failed_run.run_id
    assert resumed.students_read == 1000 - 256
    assert len(stored_assessments(database.engine)) == 7000


def test_a_stopped_run_is_recorded_as_interrupted_and_resumed_by_the_next(database, population, stable_models):
    stop = threading.Event()

    class StopAfterTwoChunks(BatchDatabase):
        writes = 0

        def write_chunk(self, scored, *, run_id, **options):
            self.writes += 1
            if self.writes == 2:
                stop.set()
            return super().write_chunk(scored, run_id=run_id, **options)

    options = RunOptions(chunk_size=100, retry_backoff_s=0.0)
    first = BatchScorer(
        StopAfterTwoChunks(database.engine, DEMO_FEATURE_NAMES), stable_models, options, stop=stop
    ).run()
    assert first.status == INTERRUPTED
    assert 200 <= first.students_read < 1000
    second = score(database, stable_models, chunk_size=100)
    assert second.resumed_from == first.run_id
    assert first.students_read + second.students_read == 1000
    assert len(stored_assessments(database.engine)) == 7000
    restarted = score(database, stable_models, chunk_size=100, restart=True)
    assert restarted.resumed_from is None and restarted.students_read == 1000


def test_a_resumed_run_keeps_the_watermark_of_the_run_it_resumed(database, population, stable_models):
    """Students before the checkpoint were read by the stopped run: changes since its start are the next run's."""
    stop = threading.Event()

    class StopAfterOneChunk(BatchDatabase):
        def write_chunk(self, scored, *, run_id, **options):
            stop.set()
            return super().write_chunk(scored, run_id=run_id, **options)

    options = RunOptions(chunk_size=100, retry_backoff_s=0.0)
    first = BatchScorer(StopAfterOneChunk(database.engine, DEMO_FEATURE_NAMES), stable_models, options, stop=stop).run()
    second = score(database, stable_models, chunk_size=100)
    assert second.resumed_from == first.run_id
    first_run, second_run = database.run(first.run_id), database.run(second.run_id)
    assert first_run.features_watermark == first_run.started_at < second_run.started_at
    assert second_run.features_watermark == first_run.started_at
    assert database.incremental_since(EVERYONE).replace(tzinfo=None) == first_run.started_at.replace(tzinfo=None)


def test_a_new_model_version_rescoring_replaces_scores_and_never_resumes_the_old_versions_run(
    database, population, stable_models
):
    candidate = load_skill_models(dict.fromkeys(SKILLS, CANDIDATE))
    with database.engine.begin() as connection:  # a run of v1.0.0 whose process died
        connection.execute(
            scoring_runs.insert().values(
                mode="full",
                shard_index=0,
                shard_count=1,
                status=RUNNING,
                model_versions=dict.fromkeys(SKILLS, "v1.0.0"),
                worker="test",
                started_at=datetime.now(UTC),
                heartbeat_at=datetime.now(UTC),
                last_student_id=population[500],
                students_pending=1000,
                students_read=0,
                assessments_written=0,
                assessments_unchanged=0,
                items_failed=0,
            )
        )
    summary = score(database, candidate)
    assert summary.resumed_from is None and summary.students_read == 1000
    abandoned = database.recent_runs(2)[1]
    assert abandoned.status == INTERRUPTED and "ended without finishing" in abandoned.error
    stored = stored_assessments(database.engine)
    assert {row.model_version for row in stored.values()} == {CANDIDATE}
    expected = expected_scores(database.engine, candidate)
    assert max(abs(stored[key].score - expected[key]) for key in expected) < 1e-9


def test_a_second_run_of_the_same_shard_is_refused_while_the_first_holds_it(database, population, stable_models):
    with database.shard_lock(RunOptions().shard), pytest.raises(RunInProgress, match="shard 0/1"):
        score(database, stable_models)
    assert count_rows(database.engine, scoring_runs) == 0


def test_a_run_that_cannot_start_says_why_in_the_log(database, population, stable_models, caplog):
    class Unreachable(BatchDatabase):
        def count_pending(self, **_):
            raise RuntimeError("the count failed")

    with caplog.at_level(logging.ERROR, logger="inference"), pytest.raises(RuntimeError):
        score(Unreachable(database.engine, DEMO_FEATURE_NAMES), stable_models)
    assert "the run could not start: the count failed" in caplog.text
    assert "Traceback" in caplog.text  # an unexpected error comes with where it happened


@pytest.mark.clock
def test_an_incremental_rerun_after_an_interrupted_one_misses_no_student_changed_meanwhile(
    database, population, stable_models
):
    score(database, stable_models)
    change_features(database, population[500:], bump=1)  # 500 students changed
    stop = threading.Event()

    class StopAfterOneChunk(BatchDatabase):
        def write_chunk(self, scored, *, run_id, **options):
            stop.set()
            return super().write_chunk(scored, run_id=run_id, **options)

    options = RunOptions(mode="incremental", chunk_size=100, retry_backoff_s=0.0)
    first = BatchScorer(StopAfterOneChunk(database.engine, DEMO_FEATURE_NAMES), stable_models, options, stop=stop).run()
    assert first.status == INTERRUPTED and first.students_read in (100, 200)  # the stop lands after a chunk or two
    change_features(database, population[:1], bump=2)  # before the stopped run's checkpoint
    second = score(database, stable_models, mode="incremental", chunk_size=100)
    assert second.resumed_from is None and second.students_read == 500 - first.students_read + 1
    assert database.count_pending(mode="incremental", shard=RunOptions().shard, after=None) == 0
    latest = latest_per_student_skill(stored_assessments_all(database))
    expected = expected_scores(database.engine, stable_models)
    assert max(abs(latest[key].score - expected[key]) for key in expected) < 1e-9


def change_features(database, students, *, bump):
    later = datetime.now(UTC) + timedelta(seconds=bump)
    features = database.student_features
    with database.engine.begin() as connection:
        connection.execute(
            update(features)
            .where(features.c.student_id.in_(students))
            .values(help_given_per_week=func.coalesce(features.c.help_given_per_week, 0) + bump, updated_at=later)
        )


# --- the CLI's exit statuses (docs/batch.md, "Commands"), as a real process


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["score", "--shard", "4/4"], "argument --shard: shard 4/4: expected 0 <= index < count"),
        (["score", "--chunk-size", "0"], "argument --chunk-size: expected at least 1, got 0"),
        (["score", "--mode", "sometimes"], "argument --mode: invalid choice: 'sometimes'"),
        # Demo students come from `python -m train.data.population`, not from the runtime's tool.
        (["generate", "--students", "10"], "argument COMMAND: invalid choice: 'generate'"),
    ],
)
def test_the_cli_exits_2_on_bad_arguments_naming_the_argument(arguments, complaint, tmp_path):
    run = run_batch(*arguments, database_url=f"sqlite:///{tmp_path / 'batch.db'}", timeout=60)
    assert run.returncode == 2, run.stdout
    assert complaint in run.stdout and "usage: python -m inference.batch" in run.stdout
    assert not (tmp_path / "batch.db").exists()  # refused before touching the database


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ([], "the following arguments are required: --students"),
        (["--students", "0"], "argument --students: expected at least 1, got 0"),
        (["--students", "10", "--share", "1.5"], "argument --share: expected a share in (0, 1], got 1.5"),
    ],
)
def test_the_population_generator_exits_2_on_bad_arguments_naming_the_argument(arguments, complaint, tmp_path):
    run = run_population(*arguments, database_url=f"sqlite:///{tmp_path / 'batch.db'}", timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert complaint in run.stderr and "usage: python -m train.data.population" in run.stderr
    assert not (tmp_path / "batch.db").exists()


def test_the_cli_exits_4_while_another_run_holds_the_shards_lock(database, population, trained_versions):
    url = str(database.engine.url)
    with database.shard_lock(EVERYONE):  # what a run of shard 0/1 in another process holds: a lock file
        refused = run_batch("score", database_url=url, timeout=120)
    assert refused.returncode == 4, refused.stdout
    assert "another run of shard 0/1 holds its lock" in refused.stdout
    assert count_rows(database.engine, scoring_runs) == 0
    released = run_batch("score", database_url=url, timeout=300)
    assert released.returncode == 0, released.stdout[-3000:]
    assert "1,000 students read, 7,000 assessments written" in released.stdout


def test_the_cli_exits_1_naming_the_cause_when_the_database_cannot_be_reached():
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/inference"  # nothing listens there
    run = run_batch("score", database_url=nowhere, timeout=120)
    assert run.returncode == 1, run.stdout
    assert "ERROR cannot reach the database: connection failed" in run.stdout
    assert "Traceback" not in run.stdout
