"""Batch scoring against a real PostgreSQL (a throwaway database per test), as real processes: the CLI end to
end, runs killed midway and resumed, four shards at once, a connection dropped mid-run, and bad stored values."""

import json
import logging
import math
import signal
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, literal, select, text, update

from inference.batch.database import BatchDatabase
from inference.batch.scorer import BatchScorer, RunOptions
from inference.sharding import Shard, shard_key
from inference.storage import (
    INTERRUPTED,
    SUCCEEDED,
    rejected_rows,
    scoring_failures,
    scoring_runs,
    shard_key_of,
    skill_assessments,
)
from tests.utils.batch import (
    batch_command,
    demo_database,
    expected_scores,
    feature_matrix,
    load_students,
    run_batch,
    run_population,
    stored_assessments,
)
from tests.utils.postgres import own_cluster, throwaway_database
from tests.utils.prometheus import rows_dropped
from train.data.catalogue import SKILL_FEATURES, SKILLS
from train.data.population import DEMO_FEATURE_NAMES
from train.data.students import generate_students

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url():
    with throwaway_database() as url:
        yield url


@pytest.fixture
def database(database_url):
    database = demo_database(database_url)
    yield database
    database.engine.dispose()  # the throwaway database is dropped next


def runs_of(database):
    with database.engine.connect() as connection:
        return connection.execute(select(scoring_runs).order_by(scoring_runs.c.run_id)).all()


def committed_students(database, run_id):
    with database.engine.connect() as connection:
        read = connection.execute(select(scoring_runs.c.students_read).where(scoring_runs.c.run_id == run_id))
        return read.scalar() or 0


def wait_until(condition, *, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(f"waited {timeout} s for {what}")


def scoring_midway(database, database_url, log, *, committed, runs_before=0, env=None):
    """A scorer process (chunks of 500) that has committed at least `committed` students of its run."""
    process = batch_command("score", "--chunk-size", "500", database_url=database_url, log=log, env=env)
    wait_until(lambda: len(runs_of(database)) > runs_before, what="the run to start")
    run_id = runs_of(database)[-1].run_id
    wait_until(lambda: committed_students(database, run_id) >= committed, what=f"{committed} students committed")
    return process, run_id


def assert_every_student_scored_once(database, students, models):
    stored = stored_assessments(database.engine)  # fails on a second row for a student and skill
    assert set(stored) == {(student, skill) for student in students for skill in SKILLS}
    expected = expected_scores(database.engine, models)
    assert max(abs(stored[key].score - expected[key]) for key in expected) < 1e-9
    return stored


def test_the_population_generator_and_the_cli_score_and_list_runs_on_postgres(database_url, database, stable_models):
    generated = run_population("--students", "1000", "--seed", "3", database_url=database_url)
    assert generated.returncode == 0, generated.stderr
    assert "wrote 1,000 students" in generated.stdout
    scored = run_batch("score", "--chunk-size", "300", database_url=database_url)
    assert scored.returncode == 0, scored.stdout
    assert "1,000 students read, 7,000 assessments written" in scored.stdout
    students = [f"student-{index:07d}" for index in range(1000)]
    assert_every_student_scored_once(database, students, stable_models)
    incremental = run_batch("score", "--mode", "incremental", database_url=database_url)
    assert "0 students read, 0 assessments written" in incremental.stdout
    rescored = run_population("--students", "1000", "--seed", "4", "--share", "0.1", database_url=database_url)
    changed = int(rescored.stdout.split("wrote ")[1].split(" ")[0])
    assert 60 < changed < 140
    incremental = run_batch("score", "--mode", "incremental", database_url=database_url)
    assert f"{changed:,} students read" in incremental.stdout
    listing = run_batch("runs", database_url=database_url)
    assert listing.returncode == 0
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["run", "mode", "shard", "status"]
    assert [line.split()[1] for line in lines[1:]] == ["incremental", "incremental", "full"]


def test_runs_killed_midway_are_resumed_and_end_with_exactly_one_assessment_each(
    database_url, database, stable_models, tmp_path
):
    students = load_students(database, generate_students(40_000, seed=41).feature_dicts())
    log = tmp_path / "batch.log"
    for killed in range(2):
        process, run_id = scoring_midway(database, database_url, log, committed=2000, runs_before=killed)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert committed_students(database, run_id) < 40_000, "the run ended before it could be killed"
    last = batch_command("score", "--chunk-size", "500", database_url=database_url, log=log)
    assert last.wait(timeout=300) == 0, log.read_text()[-3000:]
    runs = runs_of(database)
    assert [run.status for run in runs] == [INTERRUPTED, INTERRUPTED, SUCCEEDED]
    assert [run.resumed_from for run in runs] == [None, runs[0].run_id, runs[1].run_id]
    # A chunk in flight when killed was not committed, so it is counted once: by the run that committed it.
    assert sum(run.students_read for run in runs) == 40_000
    assert runs[2].students_read <= 40_000 - 4000  # each killed run committed at least two chunks
    assert_every_student_scored_once(database, students, stable_models)
    assert "students/s, ETA" in log.read_text()  # progress lines


def test_four_shards_running_at_once_cover_every_student_exactly_once(database_url, database, stable_models):
    students = load_students(database, generate_students(4000, seed=43).feature_dicts())
    processes = [
        batch_command("score", "--shard", f"{index}/4", "--chunk-size", "250", database_url=database_url)
        for index in range(4)
    ]
    outputs = [process.communicate(timeout=300)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    stored = assert_every_student_scored_once(database, students, stable_models)
    runs = {(run.shard_index, run.shard_count): run for run in runs_of(database)}
    assert set(runs) == {(index, 4) for index in range(4)}
    for (student, _), row in stored.items():
        assert Shard(runs_by_id(runs)[row.run_id], 4).contains(student)
    for (index, _), run in runs.items():
        assert run.students_read == sum(Shard(index, 4).contains(student) for student in students)


def runs_by_id(runs):
    return {run.run_id: index for (index, _), run in runs.items()}


def test_a_connection_dropped_mid_run_is_retried_and_nothing_is_lost_or_doubled(
    database_url, database, stable_models, tmp_path
):
    students = load_students(database, generate_students(30_000, seed=47).feature_dicts())
    log = tmp_path / "batch.log"
    process, _ = scoring_midway(database, database_url, log, committed=1000)

    def terminate_an_upsert_in_progress():
        with database.engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND query LIKE 'INSERT INTO skill_assessments%'"
                )
            ).scalar_one()

    wait_until(terminate_an_upsert_in_progress, what="an upsert to cut off")
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    output = log.read_text()
    assert "retrying in" in output
    assert runs_of(database)[-1].status == SUCCEEDED
    assert_every_student_scored_once(database, students, stable_models)


def test_a_postgresql_restart_mid_run_is_ridden_out_and_nothing_is_lost_or_doubled(stable_models, tmp_path):
    """docs/reliability.md, "Faults": the chunk in hand fails, is retried after a backoff, and the same run
    succeeds (no rerun)."""
    # Retries enough to outlast any restart (1 + 2 + 4 + 8 + 16 s of backoff): the restart's length is the
    # machine's, and whether the run rides it out must not depend on it.
    retries = {"INFERENCE_BATCH_RETRIES": "5"}
    with own_cluster() as cluster:
        database = demo_database(cluster.url)
        try:
            students = load_students(database, generate_students(40_000, seed=79).feature_dicts())
            log = tmp_path / "batch.log"
            process, run_id = scoring_midway(database, cluster.url, log, committed=2000, env=retries)
            assert committed_students(database, run_id) < 40_000, "the run ended before the restart"
            cluster.restart()  # every connection cut, the lock's and the writers' included
            returncode = process.wait(timeout=300)
            output = log.read_text()
            assert returncode == 0, output[-3000:]
            assert "retrying in" in output, output[-3000:]
            (run,) = runs_of(database)
            assert (run.run_id, run.status, run.students_read) == (run_id, SUCCEEDED, 40_000), output[-3000:]
            assert_every_student_scored_once(database, students, stable_models)
        finally:
            database.engine.dispose()


def test_shard_keys_computed_by_postgresql_equal_pythons(database):
    ids = [f"student-{index:07d}" for index in range(500)] + ["ü-ñ", "x" * 128, ""]
    with database.engine.connect() as connection:
        computed = [connection.execute(select(shard_key_of(literal(student_id)))).scalar_one() for student_id in ids]
    assert computed == [shard_key(student_id) for student_id in ids]


def test_stored_nan_and_infinity_are_failed_items_naming_the_feature(database, stable_models):
    rows = generate_students(20, seed=5).feature_dicts()
    rows[2]["novel_idea_count"] = math.nan
    rows[4]["help_given_per_week"] = math.inf
    ids = load_students(database, rows)
    with database.engine.begin() as connection:  # NaN is written as NULL by the loader; store a real NaN
        connection.execute(
            text("UPDATE student_features SET novel_idea_count = 'NaN' WHERE student_id = :id"), {"id": ids[2]}
        )
    summary = BatchScorer(database, stable_models, RunOptions(retry_backoff_s=0)).run()
    with database.engine.connect() as connection:
        failures = connection.execute(select(scoring_failures)).all()
        assessments = connection.execute(select(func.count()).select_from(skill_assessments)).scalar_one()
    nan_skills = {skill for skill in SKILLS if "novel_idea_count" in SKILL_FEATURES[skill]}
    inf_skills = {skill for skill in SKILLS if "help_given_per_week" in SKILL_FEATURES[skill]}
    assert {(f.student_id, f.skill) for f in failures} == {(ids[2], s) for s in nan_skills} | {
        (ids[4], s) for s in inf_skills
    }
    assert {f.message for f in failures if f.student_id == ids[2]} == {
        "features.novel_idea_count: expected a finite number, got nan"
    }
    assert {f.message for f in failures if f.student_id == ids[4]} == {
        "features.help_given_per_week: expected a finite number, got inf"
    }
    assert assessments == 20 * 7 - len(failures) == summary.assessments_written


def test_a_chunk_written_after_one_that_failed_is_not_committed_so_the_rerun_leaves_no_gap(database, stable_models):
    students = load_students(database, generate_students(1000, seed=53).feature_dicts())

    waited = []
    fourth_held = threading.Event()

    class ThirdChunkFails(BatchDatabase):
        """The third chunk fails for good, once the fourth has done its upsert and waits to commit."""

        def write_chunk(self, scored, *, run_id, before_commit, **options):
            first = scored.chunk.student_ids[0]
            if first == students[200]:
                assert fourth_held.wait(timeout=60), "the fourth chunk never reached its commit"
                raise ValueError("a bug, not a transient error")

            def wait_and_note():
                waited.append(first)
                if first == students[300]:
                    fourth_held.set()
                before_commit()

            return super().write_chunk(scored, run_id=run_id, before_commit=wait_and_note, **options)

    assert database.concurrent_writers == 2
    options = RunOptions(chunk_size=100, retry_backoff_s=0)
    with pytest.raises(ValueError, match="a bug"):
        BatchScorer(ThirdChunkFails(database.engine, DEMO_FEATURE_NAMES), stable_models, options).run()
    assert students[300] in waited  # the fourth chunk was written and held back, not just never started
    stored = stored_assessments(database.engine)
    assert {student for student, _ in stored} == set(students[:200])
    failed_run = runs_of(database)[-1]
    assert (failed_run.status, failed_run.last_student_id, failed_run.students_read) == ("failed", students[199], 200)
    rerun = BatchScorer(database, stable_models, options).run()
    assert rerun.resumed_from == failed_run.run_id and rerun.students_read == 800
    assert_every_student_scored_once(database, students, stable_models)


def test_sigterm_commits_the_chunk_in_hand_records_the_run_as_interrupted_and_exits_3(
    database_url, database, stable_models, tmp_path
):
    students = load_students(database, generate_students(40_000, seed=59).feature_dicts())
    log = tmp_path / "batch.log"
    process, _ = scoring_midway(database, database_url, log, committed=1000)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 3, log.read_text()[-3000:]
    (run,) = runs_of(database)
    assert run.status == INTERRUPTED and 1000 <= run.students_read < 40_000
    assert run.last_student_id == max(student for student, _ in stored_assessments(database.engine))
    assert "SIGTERM: stopping after the current chunk" in log.read_text()
    rerun = run_batch("score", "--chunk-size", "5000", database_url=database_url)
    assert rerun.returncode == 0 and f"resuming run {run.run_id}" in rerun.stdout
    assert_every_student_scored_once(database, students, stable_models)


def test_ids_of_any_length_and_alphabet_survive_the_binary_copy(database, stable_models):
    ids = ["", "a", "ü", "日本語", "x" * 128, "é" * 64, "tab\there", "line\nbreak", "back\\slash", "quote'\"s"]
    rows = generate_students(len(ids), seed=67).feature_dicts()
    database.upsert_students(ids, feature_matrix(rows), updated_at=datetime.now(UTC))
    summary = BatchScorer(database, stable_models, RunOptions(chunk_size=4, retry_backoff_s=0)).run()
    assert summary.assessments_written == len(ids) * 7
    assert_every_student_scored_once(database, ids, stable_models)


def test_student_ids_longer_than_the_assessments_column_are_set_aside_and_every_other_student_is_scored(
    database, stable_models
):
    """A team's own student_features may hold ids of any length; skill_assessments and scoring_failures hold 128
    characters. Such a student is kept in rejected_rows, counted, and read again by later runs; the others are
    scored. One is mid-chunk, the other alone in the last chunk: the run's checkpoint is its prefix."""
    with database.engine.begin() as connection:
        connection.execute(text('ALTER TABLE student_features ALTER COLUMN student_id TYPE text COLLATE "C"'))
    students = load_students(database, generate_students(199, seed=83).feature_dicts())
    long_ids = [students[50] + "x" * 200, students[198] + "y" * 200]  # each sorts right after its prefix
    database.upsert_students(
        long_ids, feature_matrix(generate_students(2, seed=84).feature_dicts()), updated_at=datetime.now(UTC)
    )
    before = rows_dropped("skill_assessments", "invalid_row")
    summary = BatchScorer(database, stable_models, RunOptions(chunk_size=100, retry_backoff_s=0)).run()
    assert summary.status == SUCCEEDED and summary.students_read == 201
    assert (summary.assessments_written, summary.items_refused, summary.items_failed) == (199 * 7, 14, 14)
    assert set(stored_assessments(database.engine)) == {(student, skill) for student in students for skill in SKILLS}
    with database.engine.connect() as connection:
        kept = connection.execute(select(rejected_rows).order_by(rejected_rows.c.id)).all()
        failures = connection.execute(select(func.count()).select_from(scoring_failures)).scalar_one()
    assert failures == 0  # scoring_failures cannot hold the id either
    assert [json.loads(row.row)["student_id"] for row in kept] == long_ids
    assert {row.table_name for row in kept} == {"skill_assessments"}
    assert "StringDataRightTruncation" in kept[0].reason
    assert {entry["skill"] for entry in json.loads(kept[0].row)["assessments"]} == set(SKILLS)
    assert rows_dropped("skill_assessments", "invalid_row") == before + 14
    (run,) = runs_of(database)
    assert run.last_student_id == long_ids[1][:128]
    # Resumed from that checkpoint, a run reads the last student again, and only it.
    with database.engine.begin() as connection:
        connection.execute(update(scoring_runs).values(status=INTERRUPTED))
    resumed = BatchScorer(database, stable_models, RunOptions(retry_backoff_s=0)).run()
    assert (resumed.resumed_from, resumed.students_read, resumed.items_refused) == (run.run_id, 1, 7)
    incremental = BatchScorer(database, stable_models, RunOptions(mode="incremental", retry_backoff_s=0)).run()
    assert incremental.students_read == 2 and incremental.items_refused == 14


def test_loading_a_student_id_postgresql_cannot_hold_sets_it_aside_and_loads_the_others(database):
    ids = ["s-1", "s-\x00-2", "s-3", "x" * 129]
    result = database.upsert_students(
        ids, feature_matrix(generate_students(4, seed=85).feature_dicts()), updated_at=datetime.now(UTC)
    )
    assert result.stored == 2 and [row.index for row in result.rejected] == [1, 3]
    with database.engine.connect() as connection:
        kept = connection.execute(select(rejected_rows.c.table_name, rejected_rows.c.row)).all()
    assert {table for table, _ in kept} == {"student_features"}
    assert sorted(json.loads(row)["student_id"] for _, row in kept) == sorted([ids[1], ids[3]])
    assert database.count_students() == 2


def test_a_student_whose_updated_at_python_cannot_read_is_reported_and_does_not_block_the_shard(
    database, stable_models, caplog
):
    students = load_students(database, generate_students(300, seed=71).feature_dicts())
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE student_features SET updated_at = 'infinity' WHERE student_id = :id"), {"id": students[150]}
        )
    with caplog.at_level(logging.WARNING, logger="inference"):
        summary = BatchScorer(database, stable_models, RunOptions(chunk_size=100, retry_backoff_s=0)).run()
    assert summary.status == SUCCEEDED and summary.students_read == 299
    assert "1 students of shard 0/1 are left out" in caplog.text and students[150] in caplog.text
    assert runs_of(database)[-1].students_skipped == 1
    assert {student for student, _ in stored_assessments(database.engine)} == set(students) - {students[150]}
    assert BatchScorer(database, stable_models, RunOptions(mode="incremental")).run().students_read == 0


def advisory_locks_held(database):
    with database.engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        ).scalar_one()


def test_a_run_whose_shard_lock_was_lost_stops_when_another_takes_over(database_url, database, stable_models, tmp_path):
    students = load_students(database, generate_students(40_000, seed=73).feature_dicts())
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first, first_run = scoring_midway(database, database_url, first_log, committed=1000)
    # Frozen, so it can neither finish before the second run takes over nor notice the takeover early.
    first.send_signal(signal.SIGSTOP)
    try:
        assert committed_students(database, first_run) < 40_000, "the first run ended before it could be stopped"
        assert advisory_locks_held(database) == 1
        with database.engine.connect() as connection:
            # Its connections go away, the shard lock's among them; its writes in flight roll back, so the second
            # run waits on none of them.
            connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        wait_until(lambda: advisory_locks_held(database) == 0, what="the shard lock to be released")
        second = batch_command("score", "--chunk-size", "500", database_url=database_url, log=second_log)
        assert second.wait(timeout=300) == 0, second_log.read_text()[-3000:]
    finally:
        first.send_signal(signal.SIGCONT)
    # Its next commit finds the run taken over: it stops instead of writing alongside.
    assert first.wait(timeout=300) == 1, first_log.read_text()[-3000:]
    assert "another run of its shard took over" in first_log.read_text()
    runs = runs_of(database)
    assert runs[-1].resumed_from == first_run and runs[-1].status == SUCCEEDED
    assert_every_student_scored_once(database, students, stable_models)
