"""The skills training table from the service's database, in the format `python -m train skills --data` reads:

    python -m train.export --out ratings.parquet               # DATABASE_URL names the database
    python -m train.export --out ratings.csv --format csv

One row per student and skill rated: `student_id`, `skill`, the student's numeric columns of `student_features`
(their current values: the table keeps no history) and `rating`, the student's latest teacher rating of that skill
as `POST /api/v1/monitoring/ratings` stored it. Latest means rated last (`rated_at`), and of two given at the same
time, the one received last: the rule of the service's correlation (`inference/monitoring/ground_truth.py`), without
its window. Ratings of students without a `student_features` row are left out, and counted.

Both tables are read as the database holds them (reflected), so the export follows whatever features the table
has. Exit status: 0 written, 1 nothing to export or no database, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    Numeric,
    Select,
    Table,
    create_engine,
    exists,
    func,
    inspect,
    select,
)
from sqlalchemy.exc import OperationalError

from inference.settings import get_settings
from train.datasets import PARQUET_SUFFIXES, RATING, SKILL, STUDENT_ID

FEATURES_TABLE, RATINGS_TABLE = "student_features", "teacher_ratings"
NOT_FEATURES = (STUDENT_ID, "updated_at")
FORMATS = ("csv", "parquet")
ROWS_PER_BATCH = 50_000


class NothingToExport(Exception):
    pass


def feature_columns(features: Table) -> tuple[list[Column], list[str]]:
    """The numeric columns of `student_features` other than its key (the features), and the names of the others
    left out."""
    numeric, other = [], []
    for column in features.columns:
        if column.name in NOT_FEATURES:
            continue
        if isinstance(column.type, Float | Numeric | Integer):
            numeric.append(column)
        else:
            other.append(column.name)
    return numeric, other


def latest_ratings(ratings: Table) -> Select:
    """The id of each student's latest rating per skill: rated last, then received last (the higher id)."""
    ranked = select(
        ratings.c.id,
        func.row_number()
        .over(
            partition_by=(ratings.c.student_id, ratings.c.skill),
            order_by=(ratings.c.rated_at.desc(), ratings.c.id.desc()),
        )
        .label("newest_first"),
    ).subquery()
    return select(ranked.c.id).where(ranked.c.newest_first == 1)


def training_rows(features: Table, ratings: Table, columns: list[Column]) -> Select:
    latest = latest_ratings(ratings)
    return (
        select(features.c.student_id, ratings.c.skill, *columns, ratings.c.rating)
        .join(ratings, ratings.c.student_id == features.c.student_id)
        .where(ratings.c.id.in_(latest))
        .order_by(features.c.student_id, ratings.c.skill)
    )


def unmatched_ratings(features: Table, ratings: Table) -> Select:
    """How many latest ratings name a student without features."""
    has_features = exists().where(features.c.student_id == ratings.c.student_id)
    return select(func.count()).where(ratings.c.id.in_(latest_ratings(ratings)), ~has_features)


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(STUDENT_ID, pa.string()),
            pa.field(SKILL, pa.string()),
            *(pa.field(column.name, pa.float64()) for column in columns),
            pa.field(RATING, pa.float64()),
        ]
    )


def record_batches(engine: Engine, query: Select, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The query's rows, ROWS_PER_BATCH at a time (streamed: the table need not fit in memory)."""
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_BATCH).execute(query)
        for rows in result.partitions():
            values = list(zip(*rows, strict=True))
            arrays = [
                pa.array(column, type=field.type)
                if field.type == pa.string()
                else pa.array([None if value is None else float(value) for value in column], type=field.type)
                for column, field in zip(values, schema, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def export(engine: Engine, out: Path, file_format: str) -> tuple[int, dict[str, int], int, list[str]]:
    """Write the training table to `out`; returns the rows written, rows per skill, the ratings left out for
    want of features, and the non-numeric columns of student_features left out."""
    inspector = inspect(engine)
    for name in (FEATURES_TABLE, RATINGS_TABLE):
        if not inspector.has_table(name):
            raise NothingToExport(f"the database has no table {name}")
    features = Table(FEATURES_TABLE, MetaData(), autoload_with=engine)
    ratings = Table(RATINGS_TABLE, MetaData(), autoload_with=engine)
    columns, left_out = feature_columns(features)
    if not columns:
        raise NothingToExport(f"{FEATURES_TABLE} has no numeric feature columns")
    schema = arrow_schema(columns)
    partial = out.with_name(f".{out.name}.partial")
    per_skill: dict[str, int] = {}
    writer = pa_csv.CSVWriter(partial, schema) if file_format == "csv" else pq.ParquetWriter(partial, schema)
    try:
        with writer:
            for batch in record_batches(engine, training_rows(features, ratings, columns), schema):
                writer.write_batch(batch)
                for skill in batch.column(1).to_pylist():
                    per_skill[skill] = per_skill.get(skill, 0) + 1
        if not per_skill:
            raise NothingToExport(f"no teacher rating is of a student with a {FEATURES_TABLE} row")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    with engine.connect() as connection:
        unmatched = int(connection.execute(unmatched_ratings(features, ratings)).scalar_one())
    return sum(per_skill.values()), per_skill, unmatched, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument(
        "--format", choices=FORMATS, help="default: parquet for a .parquet or .pq file, csv for anything else"
    )
    args = parser.parse_args(argv)
    file_format = args.format or ("parquet" if args.out.name.lower().endswith(PARQUET_SUFFIXES) else "csv")
    # A plain engine: the export reads, and creates or migrates nothing.
    engine = create_engine(get_settings().database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        rows, per_skill, unmatched, left_out = export(engine, args.out, file_format)
    except NothingToExport as err:
        print(f"error: nothing to export from {where}: {err}", file=sys.stderr)
        return 1
    except OperationalError as err:
        print(f"error: cannot read {where}: {err.orig or err}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    skills = ", ".join(f"{skill} {count}" for skill, count in sorted(per_skill.items()))
    print(f"wrote {rows} rows of {len(per_skill)} skills ({skills}) from {where} to {args.out}")
    if unmatched:
        print(f"left out {unmatched} latest ratings of students without a {FEATURES_TABLE} row")
    if left_out:
        print(f"left out the non-numeric columns {left_out} of {FEATURES_TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
