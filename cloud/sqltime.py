"""Portable time arithmetic in SQL: UTC day and hour of a time column, a time plus minutes.

SQLite keeps ``DateTime`` columns as UTC text, ``2026-11-28 10:15:00.123000`` (always six
fractional digits: SQLAlchemy writes them so, and so does ingest's SqliteWriter), and compares
them as text; PostgreSQL has ``timestamptz``. Each construct compiles to what each dialect needs
and yields the same answer on both: the day as ``YYYY-MM-DD`` text, the hour as
``YYYY-MM-DD HH:00:00`` text (both UTC), and a time shifted by a number of minutes that still
compares correctly with the column's other values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class utc_day(FunctionElement[str]):  # lower case: an SQL function
    """The UTC calendar day of a time column, ``YYYY-MM-DD``."""

    type = String()
    inherit_cache = True


class utc_hour(FunctionElement[str]):
    """The start of the UTC hour of a time column, ``YYYY-MM-DD HH:00:00``."""

    type = String()
    inherit_cache = True


class plus_minutes(FunctionElement[Any]):
    """A time column plus a whole number of minutes (a bound parameter)."""

    inherit_cache = True

    def __init__(self, column: Any, minutes: int) -> None:
        super().__init__(column, literal(minutes, Integer))
        self.type = column.type


def _args(compiler: SQLCompiler, element: FunctionElement[Any], **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses.clauses]


@compiles(utc_day, "sqlite")
def _day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(compiler, element, **kw)
    return f"substr({column}, 1, 10)"


@compiles(utc_day)
def _day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(compiler, element, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_hour, "sqlite")
def _hour_sqlite(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(compiler, element, **kw)
    return f"(substr({column}, 1, 13) || ':00:00')"


@compiles(utc_hour)
def _hour_postgresql(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(compiler, element, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:00:00')"


@compiles(plus_minutes, "sqlite")
def _plus_sqlite(element: plus_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    column, minutes = _args(compiler, element, **kw)
    # strftime's %f has milliseconds ("SS.SSS"): pad to the stored six digits so that text
    # comparison with stored times holds (times arrive with millisecond precision).
    return f"(strftime('%Y-%m-%d %H:%M:%f', {column}, '+' || {minutes} || ' minutes') || '000')"


@compiles(plus_minutes)
def _plus_postgresql(element: plus_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    column, minutes = _args(compiler, element, **kw)
    return f"(({column}) + make_interval(mins => {minutes}))"
