"""The tools bring an existing database up to the schema: a feature new to the served models becomes a nullable
column of student_features, a missing index is created; a missing NOT NULL column is an error naming it. Feature
names are any text, quoted wherever SQL names them."""

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, insert, inspect, select

from inference.errors import SchemaMismatch
from inference.monitoring.feedback import feedback_accuracy, feedback_row, store_feedback
from inference.storage import (
    engine_for,
    ensure_student_features,
    labelled_feedback,
    migrate,
    skill_assessments,
    student_features_table,
)
from tests.utils.postgres import throwaway_database

# Names a team's models may use: sklearn's wine data set has the first; the rest are what SQL must quote.
FEATURES = ("od280/od315_of_diluted_wines", "mean radius", "Alcohol", 'share "in" %', "order")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with throwaway_database() as url:
        yield url


def create_older_table(url, table, *, without):
    """`table` as an older release created it: without the column `without` and without its indexes."""
    older = Table(
        table.name,
        MetaData(),
        *(
            Column(column.name, column.type, nullable=column.nullable, primary_key=column.primary_key)
            for column in table.columns
            if column.name != without
        ),
    )
    engine = create_engine(url)
    older.create(engine)
    engine.dispose()
    return older


def columns_of(engine, table_name):
    return [column["name"] for column in inspect(engine).get_columns(table_name)]


def test_a_missing_feature_column_and_index_are_added_to_an_existing_table(empty_database_url):
    create_older_table(empty_database_url, student_features_table(FEATURES), without="od280/od315_of_diluted_wines")
    engine = engine_for(empty_database_url)
    try:
        table = ensure_student_features(engine, FEATURES)
        assert set(FEATURES) <= set(columns_of(engine, "student_features"))
        assert "ix_student_features_updated_at" in {
            index["name"] for index in inspect(engine).get_indexes("student_features")
        }
        with engine.begin() as connection:
            assert migrate(connection, [table]) == []  # idempotent
            connection.execute(
                insert(table).values(
                    {
                        "student_id": "s-1",
                        "updated_at": datetime(2026, 11, 24, tzinfo=UTC),
                        **{name: float(index) for index, name in enumerate(FEATURES)},
                    }
                )
            )
            stored = connection.execute(select(*(table.c[name] for name in FEATURES))).one()
        assert list(stored) == [float(index) for index in range(len(FEATURES))]
    finally:
        engine.dispose()


def test_the_features_table_is_created_for_the_names_given_and_keeps_columns_it_was_not_given(empty_database_url):
    engine = engine_for(empty_database_url)
    try:
        assert "student_features" not in inspect(engine).get_table_names()  # the service's schema has none
        ensure_student_features(engine, FEATURES[:2])
        assert columns_of(engine, "student_features") == ["student_id", *FEATURES[:2], "updated_at"]
        ensure_student_features(engine, FEATURES[1:])  # another model set: its columns added, none removed
        assert columns_of(engine, "student_features") == ["student_id", *FEATURES[:2], "updated_at", *FEATURES[2:]]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("names", "complaint"),
    [
        (["words", "updated_at"], "a feature cannot be named 'updated_at', the name of the table's own column"),
        (["x" * 64], "is longer than a column name can be (63 bytes in UTF-8)"),
    ],
)
def test_feature_names_no_column_can_hold_are_refused_naming_them(names, complaint):
    with pytest.raises(SchemaMismatch) as raised:
        student_features_table(names)
    assert complaint in raised.value.message


def test_features_differing_only_in_case_are_refused_on_sqlite(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'case.db'}")
    with pytest.raises(SchemaMismatch, match="features 'Alcohol' and 'alcohol' differ only in case"):
        ensure_student_features(engine, ["Alcohol", "alcohol"])
    engine.dispose()


def test_labelled_feedback_of_an_older_release_gains_the_satisfaction_column_and_keeps_its_rows(empty_database_url):
    older = create_older_table(empty_database_url, labelled_feedback, without="satisfaction")
    received = datetime.now(UTC)
    row = feedback_row("intent", "v1", "ensemble", "informational", "informational", received)
    del row["satisfaction"]  # a row an older release stored
    release = create_engine(empty_database_url)
    with release.begin() as connection:
        connection.execute(insert(older).values(row))
    release.dispose()
    engine = engine_for(empty_database_url)
    try:
        assert "satisfaction" in columns_of(engine, "labelled_feedback")
        rated = feedback_row("intent", "v1", "ensemble", "informational", "navigational", received, satisfaction=9)
        assert store_feedback(engine, [rated]).stored == 1
        (accuracy,) = feedback_accuracy(engine, window_days=1, min_items=1)
        assert (accuracy.items, accuracy.accuracy, accuracy.rated, accuracy.satisfaction) == (2, 0.5, 1, 9.0)
    finally:
        engine.dispose()


def test_a_missing_not_null_column_is_an_error_naming_it(empty_database_url):
    create_older_table(empty_database_url, skill_assessments, without="features_updated_at")
    engine = create_engine(empty_database_url)
    try:
        with (
            engine.begin() as connection,
            pytest.raises(SchemaMismatch, match="skill_assessments has no column features_updated_at"),
        ):
            migrate(connection)
    finally:
        engine.dispose()


def test_processes_creating_the_schema_at_the_same_time_all_succeed(empty_database_url):
    # A server's workers, or a sharded run's, start together and each creates the schema (the features table
    # with its columns included): the losers of the race must not fail.
    code = (
        "import sys; from inference.storage import engine_for, ensure_student_features; "
        f"ensure_student_features(engine_for(sys.argv[1]), {FEATURES!r})"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], errors
