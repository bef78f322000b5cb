"""Value conversion between Python and the driver, by SQLAlchemy column type.

SQLAlchemy's own dialect implementations do the work (``type.dialect_impl(dialect)``
and its public ``bind_processor`` / ``result_processor``). Two gaps are filled here so
that every type round-trips the same on every backend:

- tz-aware ``DateTime(timezone=True)`` values on MySQL and SQLite, which store no
  time zone: they are stored as UTC and come back as aware UTC datetimes, as they
  do from PostgreSQL;
- asyncpg numerics, whose SQLAlchemy processor needs the column's type oid, which
  asyncpg does not report with a result. asyncpg already returns ``float`` for float
  columns and ``Decimal`` for numeric ones, so a ``Float`` or ``Numeric`` column reads
  as SQLAlchemy's dialect would; only a ``Numeric(asdecimal=True)`` type over a float
  column (or ``Float(asdecimal=False)`` over a numeric one) is converted, by value.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine.interfaces import Dialect

__all__ = ["Processor", "bind_processor", "converter", "result_processor", "returns_atoms"]

Processor = Callable[[Any], Any]

_UTC = datetime.timezone.utc

# SQLite's datetime text written in C (dbaccess/_record.c) where it was compiled; the
# Python in _iso_datetime writes the same text (tests/test_record_internals.py checks).
_c_iso_text: Callable[[Processor, Any], Any] | None = None
if not os.environ.get("DBACCESS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):  # not compiled: the Python version
        _c_iso_text = importlib.import_module("dbaccess._record").iso_datetime_text


def bind_processor(type_: sqltypes.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """Return the function that turns a Python value into a driver value, or None."""
    impl = type_.dialect_impl(dialect)
    process: Processor | None = impl.bind_processor(dialect)
    if process is not None and _is_sqlite_datetime(impl):
        process = _iso_datetime(process)
    elif process is not None and type(impl).bind_processor is sqltypes.Boolean.bind_processor:
        process = _known_booleans(process)
    if _stores_naive_utc(type_, dialect):
        return _chain(_to_naive_utc, process)
    return process


#: Float and Numeric: SQLAlchemy 2.0 makes Float a Numeric, 2.1 makes both a NumericCommon
#: (a name 2.0 does not have).
_NUMERIC_TYPES = (sqltypes.Numeric, sqltypes.Float)


def result_processor(type_: sqltypes.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """Return the function that turns a driver value into a Python value, or None."""
    impl = type_.dialect_impl(dialect)
    process: Processor | None
    try:
        process = impl.result_processor(dialect, None)
    except (TypeError, sa_exc.InvalidRequestError):
        # asyncpg's numeric processors need the result's type oid (see module docs).
        if not isinstance(impl, _NUMERIC_TYPES):
            raise
        process = _numeric_by_value(impl)
    if _stores_naive_utc(type_, dialect):
        return _chain(process, _to_aware_utc)
    return process


#: Types whose result processors return atoms: values that hold no reference a cycle
#: could run through (numbers, text, bytes, datetimes, UUIDs, None).
_ATOMIC_TYPES = (
    sqltypes.Boolean,
    sqltypes.Date,
    sqltypes.DateTime,
    sqltypes.Float,  # not a Numeric since SQLAlchemy 2.1
    sqltypes.Integer,
    sqltypes.Interval,
    sqltypes.LargeBinary,
    sqltypes.Numeric,
    sqltypes.String,
    sqltypes.Time,
    sqltypes.Uuid,
)


def returns_atoms(type_: sqltypes.TypeEngine[Any]) -> bool:
    """Whether the values of a column of this type come back as atoms (see record.py).

    Not an Enum (its members are objects), a JSON or ARRAY type (the driver or the
    processor makes dicts and lists), a TypeDecorator or any other type, whose values
    may be containers. A column of no known type (raw SQL) counts as atoms: its values
    are the driver's, which make_all() looks at one by one.
    """
    if isinstance(type_, sqltypes.NullType):
        return True
    if isinstance(type_, sqltypes.Interval):  # a TypeDecorator of SQLAlchemy's own
        return True
    return isinstance(type_, _ATOMIC_TYPES) and not isinstance(
        type_, (sqltypes.Enum, sqltypes.TypeDecorator)
    )


def converter(
    pairs: Sequence[tuple[int, Processor]],
) -> Callable[[Sequence[Any]], list[Any]]:
    """A function that copies a row (or a tuple of arguments) into a list, applying
    each processor to the value at its position."""
    # One or two converted values are the common case (a datetime, a boolean, a JSON
    # document): written out, they convert a row about a third faster than the loop.
    if len(pairs) == 1:
        ((first, process),) = pairs

        def convert_one(row: Sequence[Any]) -> list[Any]:
            values = list(row)
            values[first] = process(values[first])
            return values

        return convert_one
    if len(pairs) == 2:
        (first, process_first), (second, process_second) = pairs

        def convert_two(row: Sequence[Any]) -> list[Any]:
            values = list(row)
            values[first] = process_first(values[first])
            values[second] = process_second(values[second])
            return values

        return convert_two

    def convert(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for position, process in pairs:
            values[position] = process(values[position])
        return values

    return convert


_PROBE = datetime.datetime(2001, 2, 3, 4, 5, 6, 7)


def _is_sqlite_datetime(impl: sqltypes.TypeEngine[Any]) -> bool:
    # SQLite's own DATETIME, not a subclass that writes its text another way.
    return (
        isinstance(impl, sqlite.DATETIME)
        and type(impl).bind_processor is sqlite.DATETIME.bind_processor
    )


def _iso_datetime(process: Processor) -> Processor:
    """SQLite stores datetimes as text, which SQLAlchemy writes with a %-format of a dict
    (about 1.6 µs a value). When its output is ISO 8601 with microseconds (the default
    storage format; the probe checks it), a naive datetime's text is written here: in C
    where dbaccess/_record.c was built, else by ``datetime.isoformat`` in a third of the
    dialect's time. The dialect's own function handles every other value (subclasses,
    dates, aware datetimes) and every other storage format."""
    try:
        iso = process(_PROBE) == _PROBE.isoformat(" ", "microseconds")
    except Exception:  # a processor that cannot take a datetime: leave it alone
        iso = False
    if not iso:
        return process
    if _c_iso_text is not None:  # the same text, written in C
        return functools.partial(_c_iso_text, process)
    datetime_type = datetime.datetime

    def to_iso_text(value: Any) -> Any:
        if type(value) is datetime_type and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return process(value)

    return to_iso_text


def _known_booleans(process: Processor) -> Processor:
    """SQLAlchemy's Boolean checks and converts each value in two Python calls (about
    0.3 µs); True and False, nearly every value bound, convert the same every time."""
    as_true, as_false = process(True), process(False)

    def to_driver(value: Any) -> Any:
        if value is True:
            return as_true
        if value is False:
            return as_false
        return process(value)  # None, 0 and 1, and the values the type refuses

    return to_driver


def _stores_naive_utc(type_: sqltypes.TypeEngine[Any], dialect: Dialect) -> bool:
    return (
        dialect.name != "postgresql"
        and isinstance(type_, sqltypes.DateTime)
        and bool(type_.timezone)
    )


def _chain(first: Processor | None, second: Processor | None) -> Processor | None:
    if first is None or second is None:
        return first or second

    def process(value: Any) -> Any:
        return second(first(value))

    return process


def _to_naive_utc(value: Any) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value


def _to_aware_utc(value: Any) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value


def _numeric_by_value(impl: sqltypes.Numeric[Any] | sqltypes.Float[Any]) -> Processor | None:
    natural = isinstance(impl, sqltypes.Float) != bool(impl.asdecimal)
    if natural:  # Float -> float, Numeric -> Decimal: what asyncpg returns already
        return None
    if impl.asdecimal:
        scale = impl.scale

        def to_decimal(value: Any) -> Any:
            if isinstance(value, float):
                text = repr(value) if scale is None else f"{value:.{scale}f}"
                return decimal.Decimal(text)
            return value

        return to_decimal

    def to_float(value: Any) -> Any:
        if isinstance(value, decimal.Decimal):
            return float(value)
        return value

    return to_float
