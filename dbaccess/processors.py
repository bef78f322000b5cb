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

import datetime
import decimal
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes
from sqlalchemy.engine.interfaces import Dialect

__all__ = ["Processor", "bind_processor", "result_processor"]

Processor = Callable[[Any], Any]

_UTC = datetime.timezone.utc


def bind_processor(type_: sqltypes.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """Return the function that turns a Python value into a driver value, or None."""
    impl = type_.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if _stores_naive_utc(type_, dialect):
        return _chain(_to_naive_utc, process)
    return process


def result_processor(type_: sqltypes.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """Return the function that turns a driver value into a Python value, or None."""
    impl = type_.dialect_impl(dialect)
    process: Processor | None
    try:
        process = impl.result_processor(dialect, None)
    except (TypeError, sa_exc.InvalidRequestError):
        # asyncpg's numeric processors need the result's type oid (see module docs).
        if not isinstance(impl, sqltypes.NumericCommon):
            raise
        process = _numeric_by_value(impl)
    if _stores_naive_utc(type_, dialect):
        return _chain(process, _to_aware_utc)
    return process


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


def _numeric_by_value(impl: sqltypes.NumericCommon[Any]) -> Processor | None:
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
