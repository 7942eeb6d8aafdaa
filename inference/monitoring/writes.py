"""Writing rows so that a row the database refuses does not take the others with it.

A row the database refuses for its data (text PostgreSQL cannot hold, a value too long or out of range, NULL in a
NOT NULL column, a value the driver cannot encode) is refused again at every retry, and with it every row written
beside it. `insert_rows` writes a batch in one transaction; when the database refuses it for a row's data, it finds
the refused rows by bisection (each part in a savepoint: a few statements per refused row, not one per row), writes
the others, keeps each refused row in `rejected_rows` with the database's reason and counts it in
`inference_rows_dropped_total{reason="invalid_row"}`. Any other error (connection lost, timeout, database locked)
is raised with nothing written, for the caller to try the whole batch again later.

`write_isolating`, `write_around_refusals` and `quarantine` are the same mechanism for writers whose write is not a
plain INSERT (the batch scorer's COPY).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import numpy as np
import orjson
import psycopg
import psycopg.sql
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, Table, insert

from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import count_rows_dropped
from inference.storage import rejected_rows

logger = logging.getLogger(LOGGER_NAME)

T = TypeVar("T")

# The reasons of inference_rows_dropped_total: kept in rejected_rows, or refused even there (logged, then lost).
INVALID_ROW, UNSTORABLE = "invalid_row", "unstorable"
MAX_REASON_CHARS = 1000
_LOGGED_ROW_CHARS = 500
# SQLSTATE of a value too big for its index (among others): the row's fault, though psycopg calls it operational.
_PROGRAM_LIMIT_EXCEEDED = "54000"
# A thread converting rows lets go of the interpreter lock this often, for this long: a thread that wants the lock
# (the event loop, while the prediction log is flushed) otherwise waits up to the switch interval, 5 ms, for it.
_ROWS_BETWEEN_YIELDS = 128
_YIELD_S = 0.0001


@dataclass(frozen=True)
class RejectedRow:
    index: int  # the row's position in the rows given
    reason: str  # the database's (or driver's) error, printable
    quarantined: bool = True  # kept in rejected_rows; False: refused there too, only logged and counted (unstorable)


@dataclass(frozen=True)
class WriteResult:
    stored: int
    rejected: tuple[RejectedRow, ...] = ()


def is_refused_row(error: BaseException) -> bool:
    """Whether `error` is the database or its driver refusing the data itself: the same rows would be refused at
    every retry. False for everything else (connection lost, timeout, lock, a statement the server cannot run)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated or error.orig is None:
            return False
        error = error.orig
    elif isinstance(error, sqlalchemy.exc.StatementError):
        return True  # SQLAlchemy could not convert a value for the driver (a float column given "abc")
    if isinstance(error, UnicodeEncodeError | OverflowError):
        return True  # a string the driver cannot encode (a lone surrogate), a number it cannot hold
    if isinstance(error, psycopg.Error):
        if isinstance(error, psycopg.DataError | psycopg.IntegrityError):
            return True  # SQLSTATE classes 22 and 23, and text with NUL, which psycopg refuses before sending
        if isinstance(error, psycopg.ProgrammingError) and error.sqlstate is None:
            return str(error).startswith("cannot adapt")  # a value of a type psycopg has no dumper for
        return error.sqlstate == _PROGRAM_LIMIT_EXCEEDED
    if isinstance(error, sqlite3.DataError | sqlite3.IntegrityError):
        return True
    if isinstance(error, sqlite3.ProgrammingError):
        return str(error).startswith("Error binding parameter")  # a value of a type SQLite cannot store
    return False


def refusal_reason(error: BaseException) -> str:
    """The error's class and first line, printable and bounded: what a person reading rejected_rows needs."""
    cause = error.orig if isinstance(error, sqlalchemy.exc.StatementError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return printable(f"{type(cause).__name__}: {lines[0] if lines else ''}")[:MAX_REASON_CHARS]


def insert_rows(engine: Engine, table: Table, rows: Sequence[Mapping[str, object]]) -> WriteResult:
    """Insert `rows` into `table` in one transaction. Rows the database refuses for their data are found, kept in
    `rejected_rows` and counted, and the others written (see the module's docstring); any other error is raised
    with nothing written."""
    rows = list(rows)

    def write(connection: Connection, positions: range) -> int:
        part = rows if len(positions) == len(rows) else [rows[i] for i in positions]
        if connection.dialect.name == "postgresql" and _copyable(table, part):
            _copy(connection, table, part)
        elif connection.dialect.name == "sqlite" and _copyable(table, part):
            _insert_json(connection, table, part)
        else:
            connection.execute(insert(table), part)
        return len(positions)

    written, rejected = write_isolating(engine, table.name, len(rows), write, rows.__getitem__)
    return WriteResult(sum(written), rejected)


def _copyable(table: Table, rows: Sequence[Mapping[str, object]]) -> bool:
    """Whether COPY writes `rows` as INSERT would: every column with a default computed in Python is given."""
    given = rows[0].keys() if rows else ()
    return all(column.default is None or column.name in given for column in table.columns)


def _copy(connection: Connection, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """PostgreSQL's COPY FROM STDIN on the transaction's own connection: 3 µs of CPU per prediction-log row against
    18 µs for SQLAlchemy's executemany INSERT (measured, docs/performance.md), most of which holds the GIL the
    event loop needs; let go of every `_ROWS_BETWEEN_YIELDS` rows. A refused row fails the whole COPY, as it fails an INSERT: the caller isolates it the same
    way."""
    columns = [column.name for column in table.columns if column.name in rows[0]]
    statement = psycopg.sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg.sql.Identifier(table.name), psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns))
    )
    try:
        with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for part in _slices_letting_go(rows):
                for row in part:
                    copy.write_row([row[column] for column in columns])
    except psycopg.Error as err:  # raised as SQLAlchemy raises the driver's errors of an INSERT
        raise sqlalchemy.exc.DBAPIError.instance(f"COPY {table.name}", None, err, psycopg.Error) from err


def _slices_letting_go(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """`rows` in slices of `_ROWS_BETWEEN_YIELDS`, the interpreter lock let go for `_YIELD_S` between two."""
    for start in range(0, len(rows), _ROWS_BETWEEN_YIELDS):
        if start:
            time.sleep(_YIELD_S)
        yield rows[start : start + _ROWS_BETWEEN_YIELDS]


def _insert_json(connection: Connection, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """SQLite: the rows as one JSON array bound to one INSERT ... SELECT over json_each. Python's sqlite3 lets go of
    the interpreter lock around each row's step of an executemany and takes it back after: a flush thread writing
    2,000 rows that way traded the lock with the event loop 2,000 times a second, ran 100 us of CPU per row instead
    of 7 and held up requests for milliseconds (docs/performance.md). One statement lets go of it once. Values go
    through the columns' own conversions first, as SQLAlchemy's INSERT does; a value JSON cannot carry (a number
    too large, an unknown type) is left to that INSERT, whose error names it."""
    columns = [column for column in table.columns if column.name in rows[0]]
    processors = [column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect) for column in columns]
    values = []
    for part in _slices_letting_go(rows):
        values.extend(
            [value if process is None else process(value) for value, process in zip(row, processors, strict=True)]
            for row in ([row[column.name] for column in columns] for row in part)
        )
    try:
        payload = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except orjson.JSONEncodeError:
        connection.execute(insert(table), rows)
        return
    names = ", ".join(f'"{column.name}"' for column in columns)
    extracts = ", ".join(f"json_extract(value, '$[{index}]')" for index in range(len(columns)))
    connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({names}) SELECT {extracts} FROM json_each(?) ORDER BY key', (payload,)
    )


def write_isolating(
    engine: Engine,
    table_name: str,
    count: int,
    write: Callable[[Connection, range], T],
    row_of: Callable[[int], Mapping[str, object]],
) -> tuple[list[T], tuple[RejectedRow, ...]]:
    """Call `write(connection, range(count))` in one transaction. When the database refuses it for a row's data,
    call `write` again, in a new transaction, on the parts that are not refused (`write_around_refusals`), and keep
    `row_of(position)` of each refused position in `rejected_rows` as a row of `table_name`, counted and logged once
    committed. Returns what the committed calls of `write` returned, and the rejected rows. Any other error is
    raised, its transaction rolled back."""
    if not count:
        return [], ()
    try:
        with engine.begin() as connection:
            return [write(connection, range(count))], ()
    except Exception as err:
        if not is_refused_row(err):
            raise
    with engine.begin() as connection:
        written, refused = write_around_refusals(
            connection, count, lambda positions: write(connection, positions), refused_whole=True
        )
        kept = quarantine(connection, table_name, [(row_of(index), reason) for index, reason in refused.items()])
    rejected = tuple(
        RejectedRow(index, reason, quarantined)
        for (index, reason), quarantined in zip(refused.items(), kept, strict=True)
    )
    report_rejections(table_name, rejected)
    return written, rejected


def write_around_refusals(
    connection: Connection, count: int, write: Callable[[range], T], *, refused_whole: bool = False
) -> tuple[list[T], dict[int, str]]:
    """Call `write(positions)` on parts of range(count), each in a savepoint of the caller's transaction, so that
    every position the database does not refuse is written once: a refused part is split in halves until each
    refused position stands alone. Returns what the successful calls returned, and the refused positions with the
    database's reason. `refused_whole`: the whole range was just refused (in a transaction rolled back since), so it
    is split without trying it again.

    About 2 log2(count) calls per refused position; with none refused, one call. An error that is not a refusal
    propagates, and the caller's transaction must then be rolled back (it holds the parts written so far)."""
    _begin_for_savepoints(connection)
    written: list[T] = []
    refused: dict[int, str] = {}
    _write_part(connection, range(count), write, written, refused, known_refused=refused_whole)
    return written, refused


def _write_part(
    connection: Connection,
    part: range,
    write: Callable[[range], T],
    written: list[T],
    refused: dict[int, str],
    *,
    known_refused: bool,
) -> bool:
    """Write `part`, or its halves when it is refused; whether anything of it was refused."""
    if not part:
        return False
    if not known_refused or len(part) == 1:  # a single row is tried even so: its own error is its reason
        try:
            with connection.begin_nested():
                result = write(part)
        except Exception as err:
            if not is_refused_row(err):
                raise
            if len(part) == 1:
                refused[part[0]] = refusal_reason(err)
                return True
        else:
            written.append(result)
            return False
    middle = len(part) // 2
    first_half_refused = _write_part(connection, part[:middle], write, written, refused, known_refused=False)
    # The part was refused: when its first half was not, the refused rows are in the second one.
    _write_part(connection, part[middle:], write, written, refused, known_refused=not first_half_refused)
    return True


def _begin_for_savepoints(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        # Python's sqlite3 opens its transaction at the first INSERT, not at a SAVEPOINT: a savepoint released before
        # then is a transaction of its own and commits, whatever the caller's transaction does afterwards.
        connection.exec_driver_sql("BEGIN")


def quarantine(connection: Connection, table_name: str, rows: Sequence[tuple[Mapping[str, object], str]]) -> list[bool]:
    """Keep `rows` (each a row the database refused for `table_name`, and the reason) in `rejected_rows`, in the
    caller's transaction; per row, whether it was kept. A row rejected_rows refuses too is logged as an error."""
    if not rows:
        return []
    now = datetime.now(UTC)
    records = [
        {
            "table_name": table_name,
            "reason": printable(reason)[:MAX_REASON_CHARS],
            "row": row_json(row),
            "rejected_at": now,
        }
        for row, reason in rows
    ]
    _, refused = write_around_refusals(
        connection,
        len(records),
        lambda positions: connection.execute(insert(rejected_rows), records[positions.start : positions.stop]),
    )
    for index, reason in refused.items():
        logger.error(
            "%s: a row the database refused could not be kept in rejected_rows either (%s); it is lost: %s",
            table_name,
            reason,
            records[index]["row"][:_LOGGED_ROW_CHARS],
        )
    return [index not in refused for index in range(len(records))]


def report_rejections(table_name: str, rejected: Sequence[RejectedRow]) -> None:
    """Count rejected rows in inference_rows_dropped_total and say so in the log; once they are committed."""
    if not rejected:
        return
    kept = sum(row.quarantined for row in rejected)
    count_rows_dropped(table_name, INVALID_ROW, kept)
    count_rows_dropped(table_name, UNSTORABLE, len(rejected) - kept)
    logger.warning(
        "%s: rows refused by the database: %d (kept in rejected_rows: %d), the others written; the first for %s",
        table_name,
        len(rejected),
        kept,
        rejected[0].reason,
    )


def row_json(row: Mapping[str, object]) -> str:
    """`row` as JSON with every character that is not printable escaped (`\\u0000`): text any database holds."""
    return printable(json.dumps(_plain(row), ensure_ascii=False, default=_fallback))


def printable(text: str) -> str:
    """`text` with each character that is not printable written as its JSON escape (NUL as `\\u0000`)."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else json.dumps(character)[1:-1] for character in text)


def _plain(value: Any) -> Any:
    """JSON-ready: not-a-number as text (JSON has none), containers taken apart; other types go to `_fallback`."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _fallback(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _plain(value.item())
    return repr(value)
