"""The tools bring an existing database up to the schema: a feature new to the catalogue becomes a nullable column
of student_features, a missing index is created; a missing NOT NULL column is an error naming it."""

import subprocess
import sys

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, inspect

from inference.errors import SchemaMismatch
from inference.storage import engine_for, migrate, skill_assessments, student_features
from tests.utils.postgres import throwaway_database


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
            Column(column.name, column.type, nullable=column.nullable)
            for column in table.columns
            if column.name != without
        ),
    )
    engine = create_engine(url)
    older.create(engine)
    engine.dispose()


def test_a_missing_feature_column_and_index_are_added_to_an_existing_table(empty_database_url):
    create_older_table(empty_database_url, student_features, without="novel_idea_count")
    engine = engine_for(empty_database_url)
    try:
        inspector = inspect(engine)
        assert "novel_idea_count" in {column["name"] for column in inspector.get_columns("student_features")}
        assert "ix_student_features_updated_at" in {
            index["name"] for index in inspector.get_indexes("student_features")
        }
        with engine.begin() as connection:
            assert migrate(connection) == []  # idempotent
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
    # A server's workers start together and each creates the schema: the losers of the race must not fail.
    code = "import sys; from inference.storage import engine_for; engine_for(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], errors
