"""Plain SQL against a test database, behind the service's back."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg2


def execute(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Runs one statement (`%s` placeholders) and returns its rows, if any."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            cursor = connection.execute(sql.replace("%s", "?"), tuple(params))
            return cursor.fetchall() if cursor.description else []
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, tuple(params))
        return cursor.fetchall() if cursor.description else []


def execute_many(url: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    in_one_transaction(url, [(sql, rows)])


def in_one_transaction(url: str, steps: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
    """Runs each statement once per row of parameters, all committed together, so the service sees all of
    them or none."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            for sql, rows in steps:
                connection.executemany(sql.replace("%s", "?"), rows)
        return
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        for sql, rows in steps:
            cursor.executemany(sql, rows)
