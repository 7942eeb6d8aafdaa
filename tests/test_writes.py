"""A row the database refuses for its data is set aside, never a stop for the rows around it: the prediction log,
ratings and feedback on a real PostgreSQL and SQLite, bisection's cost in statements, transient failures that keep
every row for the next try, and rows that even rejected_rows refuses."""

import json
import logging
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import OperationalError

from inference.monitoring.feedback import store_feedback
from inference.monitoring.ground_truth import PredictionLog, store_ratings
from inference.monitoring.writes import insert_rows, printable, row_json, write_around_refusals
from inference.schemas import RatingsResponse
from inference.storage import DeferredEngine, engine_for, labelled_feedback, predictions, rejected_rows, teacher_ratings
from tests.utils.postgres import throwaway_database
from tests.utils.prometheus import rows_dropped
from tests.utils.servers import free_port

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture
def postgres():
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=DATABASES)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'writes.db'}"
    return request.getfixturevalue("postgres")


def refused_value(url):
    """A student_id the database refuses: PostgreSQL holds no NUL in text; SQLite holds anything but NULL here."""
    return "nul\x00student" if url.startswith("postgresql") else None


def count(engine, table):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def rejected(engine):
    with engine.connect() as connection:
        return connection.execute(select(rejected_rows).order_by(rejected_rows.c.id)).all()


def prediction(student_id):
    return {"student_id": student_id, "skill": "leadership", "model_version": "v1", "score": 0.5}


def test_a_refused_prediction_is_set_aside_and_counted_and_later_flushes_keep_writing(url):
    engine = engine_for(url)
    log = PredictionLog(engine)
    before = rows_dropped("predictions", "invalid_row")
    students = [f"s-{index}" for index in range(50)]
    students[17] = refused_value(url)
    for student_id in students:
        log.add(student_id, "leadership", "v1", 0.5)
    assert log.flush() == 49
    with engine.connect() as connection:
        written = connection.execute(select(predictions.c.student_id).order_by(predictions.c.id)).scalars().all()
    assert written == students[:17] + students[18:]
    (kept,) = rejected(engine)
    assert kept.table_name == "predictions"
    assert "NUL" in kept.reason or "NOT NULL" in kept.reason
    assert kept.row.isprintable() and json.loads(kept.row)["student_id"] == students[17]
    assert rows_dropped("predictions", "invalid_row") == before + 1
    for index in range(5):  # the log is not stuck on it
        log.add(f"later-{index}", "leadership", "v1", 0.5)
    assert log.flush() == 5 and log.dropped == 0
    assert count(engine, predictions) == 54 and count(engine, rejected_rows) == 1


def test_a_database_that_does_not_answer_keeps_every_row_for_the_next_flush(postgres):
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    log = PredictionLog(DeferredEngine(closed, timeout_s=1))
    before = rows_dropped("predictions", "invalid_row")
    for index in range(10):
        log.add(f"s-{index}", "leadership", "v1", 0.5)
    log.add("nul\x00student", "leadership", "v1", 0.5)
    with pytest.raises(OperationalError):
        log.flush()
    assert rows_dropped("predictions", "invalid_row") == before  # nothing was refused: the database never saw them
    log.engine = engine_for(postgres)
    assert log.flush() == 10
    assert count(log.engine, predictions) == 10 and count(log.engine, rejected_rows) == 1


def test_a_transient_error_while_isolating_a_refused_row_stores_nothing_and_the_retry_stores_each_row_once(postgres):
    """The statement timeout strikes a part written while the refused row is looked for: the whole transaction rolls
    back, the rows stay in the log, and the next flush writes each of them once."""
    engine = engine_for(postgres, timeout_s=1)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION slow_insert() RETURNS trigger AS $$ BEGIN "
                "IF NEW.student_id = 'slow' THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text("CREATE TRIGGER slow BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION slow_insert()")
        )
    log = PredictionLog(engine)
    students = [f"s-{index}" for index in range(20)]
    students[5], students[15] = "nul\x00student", "slow"  # the refused row is met first, the slow one while isolating
    for student_id in students:
        log.add(student_id, "leadership", "v1", 0.5)
    with pytest.raises(OperationalError, match="statement timeout"):
        log.flush()
    assert count(engine, predictions) == 0 and count(engine, rejected_rows) == 0
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER slow ON predictions"))
    assert log.flush() == 19
    with engine.connect() as connection:
        written = connection.execute(select(predictions.c.student_id).order_by(predictions.c.id)).scalars().all()
    assert written == students[:5] + students[6:]
    assert count(engine, rejected_rows) == 1


def test_ratings_and_feedback_with_a_refused_row_store_the_others(url):
    engine = engine_for(url)
    now = datetime.now(UTC)
    ratings = [
        {"student_id": f"s-{index}", "skill": "leadership", "rating": 3.0, "rated_at": now} for index in range(8)
    ]
    ratings[2]["student_id"] = refused_value(url)
    stored = store_ratings(engine, ratings)
    assert stored.stored == 7 and [(row.index, row.quarantined) for row in stored.rejected] == [(2, True)]
    answer = RatingsResponse(stored=stored.stored, rejected=[row.index for row in stored.rejected])
    assert answer.model_dump() == {"stored": 7, "rejected": [2]}  # what the ratings route answers
    assert count(engine, teacher_ratings) == 7
    feedback = [
        {
            "family": "intent",
            "model_version": "v1",
            "variant": "classic",
            "label": label,
            "predicted": "navigational",
            "correct": 0,
            "received_at": now,
        }
        for label in ("transactional", "x" * 300 if url.startswith("postgresql") else None, "informational")
    ]
    result = store_feedback(engine, feedback)
    assert result.stored == 2 and [row.index for row in result.rejected] == [1]
    assert count(engine, labelled_feedback) == 2
    kept = {row.table_name: row for row in rejected(engine)}
    assert set(kept) == {"teacher_ratings", "labelled_feedback"}
    assert json.loads(kept["labelled_feedback"].row)["label"] == feedback[1]["label"]


def test_sqlite_rows_written_in_one_statement_are_stored_as_sqlalchemys_insert_stores_them(tmp_path):
    """The prediction log's flush binds its rows to SQLite as one JSON array (the interpreter lock let go once, not
    per row): each value must land with the type and text SQLAlchemy's own INSERT gives it, and read back equal."""
    now = datetime.now(UTC)
    rows = [
        {"student_id": "s-1", "skill": "leadership", "model_version": "v1", "score": 0.1 + 0.2, "predicted_at": now},
        {"student_id": 'qu"ote\\ é 学 \n', "skill": "x", "model_version": "v2", "score": 1.0, "predicted_at": now},
        {"student_id": "s-3", "skill": "x", "model_version": "v3", "score": np.float32(0.25), "predicted_at": now},
        {"student_id": "s-4", "skill": "x", "model_version": "v4", "score": 7, "predicted_at": now},
    ]
    stored = {}
    for way in ("insert_rows", "sqlalchemy"):
        engine = engine_for(f"sqlite:///{tmp_path / way}.db")
        if way == "insert_rows":
            assert insert_rows(engine, predictions, rows).stored == len(rows)
        else:
            with engine.begin() as connection:
                connection.execute(insert(predictions), rows)
        with engine.connect() as connection:
            raw = "SELECT student_id, typeof(score), score, predicted_at, typeof(predicted_at) FROM predictions ORDER BY id"
            stored[way] = (
                connection.exec_driver_sql(raw).all(),
                connection.execute(select(predictions).order_by(predictions.c.id)).all(),
            )
    assert stored["insert_rows"] == stored["sqlalchemy"]
    assert [row.predicted_at for row in stored["insert_rows"][1]] == [now.replace(tzinfo=None)] * len(rows)


def test_a_value_json_cannot_carry_is_refused_by_sqlite_and_the_others_written(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'big.db'}")
    now = datetime.now(UTC)
    rows = [
        {"student_id": f"s-{index}", "skill": "x", "model_version": "v1", "score": 0.5, "predicted_at": now}
        for index in range(10)
    ]
    rows[4] = {**rows[4], "student_id": "lone \ud800 surrogate"}  # not UTF-8: neither JSON nor SQLite take it
    result = insert_rows(engine, predictions, rows)
    assert result.stored == 9 and [row.index for row in result.rejected] == [4]
    assert "UnicodeEncodeError" in result.rejected[0].reason


@pytest.mark.parametrize("refused", [1, 4])
def test_finding_the_refused_rows_costs_a_logarithmic_number_of_statements(url, refused):
    engine = engine_for(url)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *arguments: statements.append(arguments[2]))
    rng = np.random.default_rng(refused)
    for n in (64, 4096):
        rows = [{**prediction(f"s-{index}"), "predicted_at": datetime.now(UTC)} for index in range(n)]
        bad = rng.choice(n, size=refused, replace=False)
        for index in bad:
            rows[index]["student_id"] = refused_value(url)
        statements.clear()
        result = insert_rows(engine, predictions, rows)
        assert result.stored == n - refused and sorted(row.index for row in result.rejected) == sorted(bad)
        # Per refused row, per halving: at most two parts tried, each a SAVEPOINT, an INSERT and its RELEASE or
        # ROLLBACK TO (4096 rows, one refused: about 60 statements; one per row would be 4096).
        assert len(statements) <= refused * (6 * math.log2(n) + 12), (n, len(statements))
    assert count(engine, predictions) == 64 + 4096 - 2 * refused


def test_parts_written_around_a_refused_row_roll_back_with_their_transaction(url):
    """The caller's transaction holds the parts: a failure after them (or while writing them) leaves nothing. On
    SQLite this needs the transaction opened before the first savepoint (see `_begin_for_savepoints`)."""
    engine = engine_for(url)
    rows = [{**prediction(f"s-{index}"), "predicted_at": datetime.now(UTC)} for index in range(10)]
    rows[7]["student_id"] = refused_value(url)
    with pytest.raises(RuntimeError), engine.begin() as connection:
        # As `insert_rows` after the whole was refused: the first half is written (and its savepoint released) first.
        written, refused = write_around_refusals(
            connection,
            len(rows),
            lambda part: connection.execute(insert(predictions), [rows[i] for i in part]),
            refused_whole=True,
        )
        assert len(written) >= 2 and list(refused) == [7]
        raise RuntimeError("a failure after the parts were written")
    assert count(engine, predictions) == 0


def test_a_row_that_rejected_rows_refuses_too_is_logged_and_counted_as_unstorable(postgres, caplog):
    engine = engine_for(postgres)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE rejected_rows ADD CONSTRAINT nothing_kept CHECK (table_name = '')"))
    before = {reason: rows_dropped("predictions", reason) for reason in ("invalid_row", "unstorable")}
    rows = [{**prediction(f"s-{index}"), "predicted_at": datetime.now(UTC)} for index in range(6)]
    rows[3]["student_id"] = "nul\x00student"
    with caplog.at_level(logging.ERROR, logger="inference"):
        result = insert_rows(engine, predictions, rows)
    assert result.stored == 5 and [(row.index, row.quarantined) for row in result.rejected] == [(3, False)]
    assert rows_dropped("predictions", "unstorable") == before["unstorable"] + 1
    assert rows_dropped("predictions", "invalid_row") == before["invalid_row"]
    assert "could not be kept in rejected_rows either" in caplog.text and "nul\\u0000student" in caplog.text
    assert count(engine, predictions) == 5


def test_a_row_is_kept_as_printable_json_that_reads_back_as_it_was():
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {"student_id": "a\x00b\ud800\u200b\x7fé日本", "score": math.nan, "at": moment, "count": np.int64(3)}
    kept = row_json(row)
    assert kept.isprintable()
    assert json.loads(kept) == {**row, "score": "nan", "at": moment.isoformat(), "count": 3}
    assert printable("tab\there") == "tab\\there" and printable("é日本") == "é日本"
