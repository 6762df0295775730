"""Fixed SQL for the hot paths, where building each statement anew costs more than running it.

Statements are written with `?` placeholders and quoted identifiers, which SQLite and PostgreSQL both
read; the placeholder becomes the engine's own when the statement is first used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import peewee
from psycopg2.extras import execute_batch

from webhook_service.store.models import database

T = TypeVar("T")

# Peewee's own logger, which logs each statement execute_sql runs: the batches below bypass it.
_log = logging.getLogger("peewee")


def columns(names: Iterable[str]) -> str:
    """A quoted, comma-separated column list."""
    return ", ".join('"' + name + '"' for name in names)


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`. (peewee's `chunked` pads each chunk to `size` and then pops the
    padding one item at a time: a claim of 8 rows paid for 400 pops.)"""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """`rows` as one list a column: PostgreSQL takes a batch of rows as arrays to unnest, one parameter a column,
    so the statement is parsed and planned once for all of them."""
    return [list(column) for column in zip(*rows, strict=True)]


def any_of(values: Sequence[Any]) -> tuple[str, Any]:
    """What follows a column to match any of `values`, and its one parameter: the statement's text stays the
    same whatever their number, so it is prepared once."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        return "IN (SELECT value FROM json_each(?))", json.dumps(list(values))
    return "= ANY(?)", list(values)


@lru_cache(maxsize=64)
def _for_engine(text: str, param: str) -> str:
    return text if param == "?" else text.replace("?", param)


def execute(text: str, params: Sequence[Any] = ()) -> Any:
    """Runs one statement; returns the DB-API cursor."""
    db = database.obj
    assert db is not None
    return db.execute_sql(_for_engine(text, db.param), params)  # type: ignore[no-untyped-call]


def execute_many(text: str, rows: Iterable[Sequence[Any]]) -> None:
    """Runs one statement for each row, in as few round trips as the driver allows."""
    db = database.obj
    assert db is not None
    statement = _for_engine(text, db.param)
    values = list(rows)
    _log.debug((statement, values))
    # A raw cursor bypasses execute_sql, which turns driver errors into peewee's: without this, a lost or
    # cancelled statement would escape as a psycopg2 error that nothing above knows for the database's.
    with peewee.__exception_wrapper__:  # type: ignore[attr-defined]  # missing from peewee's stubs
        cursor = db.cursor()  # type: ignore[no-untyped-call]
        if isinstance(db, peewee.PostgresqlDatabase):
            # psycopg2's executemany sends the rows one statement at a time.
            execute_batch(cursor, statement, values, page_size=500)
        else:
            cursor.executemany(statement, values)
