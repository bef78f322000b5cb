"""The two binding paths (dbaccess/binding.py) give the same arguments: the fast one,
which takes each parameter's value by its name and converts it by its type, and the
general one through SQLAlchemy's construct_params(), for any values, on each backend's
dialect. The cases where the fast path gives way (a missing value, a value its type
refuses) give way to the general path's answer, not to a different one.
"""

from __future__ import annotations

import copy
import datetime
import decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbaccess import Database, DBAccessError
from dbaccess.binding import bind
from dbaccess.compiler import Compiler
from dbaccess.statement import Statement

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # database_url only names the backend whose dialect compiles: no state to reset.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
    st.binary(max_size=10),
    st.datetimes(),
    st.dates(),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**6, min_value=-(10**6)
    ),
)

table = sa.Table(
    "dbaccess_bound",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
    sa.Column("score", sa.Float),
    sa.Column("flag", sa.Boolean),
    sa.Column("at", sa.DateTime),
    sa.Column("amount", sa.Numeric(12, 2)),
    sa.Column("doc", sa.JSON),
)
row_values = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(min_value=1, max_value=2**31 - 1),
        "name": st.one_of(st.none(), st.text(max_size=40)),
        "score": st.floats(allow_nan=False, allow_infinity=False),
        "flag": st.booleans(),
        "at": st.datetimes(),
        "amount": st.decimals(places=2, min_value=-(10**6), max_value=10**6),
        "doc": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    },
)


def general(statement: Statement) -> Statement:
    """The same statement without its fast path: bind() takes the general one."""
    slow = copy.copy(statement)
    slow.binder = None
    return slow


def outcome(statement: Statement, values: dict[str, Any]) -> Any:
    try:
        sql, args = bind(statement, values, None)
    except DBAccessError as exc:
        return type(exc)
    # psycopg's Json wrapper has no equality of its own: compare what it wraps.
    return sql, [arg.obj if type(arg).__name__ in ("Json", "Jsonb") else arg for arg in args]


def compiler(database_url: str) -> Compiler:
    return Database(database_url)._engine.compiler  # the backend's dialect, unconnected


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(["a", "b", "c_1", "Dé"]), scalars, max_size=4))
def test_raw_sql(database_url: str, values: dict[str, Any]) -> None:
    sql = "SELECT " + ", ".join(f":{name}" for name in values) if values else "SELECT 1"
    statement = compiler(database_url).compile(sql, values).statement
    assert statement.binder is not None  # raw SQL takes the fast path
    assert outcome(statement, values) == outcome(general(statement), values)


@SETTINGS
@given(shape=row_values, values=row_values)
def test_core_insert(database_url: str, shape: dict[str, Any], values: dict[str, Any]) -> None:
    # Compiled for the keys of one row, bound with another's: missing keys, extra keys
    # and values of other types than the first row's included.
    statement = compiler(database_url).compile(table.insert(), shape).statement
    if statement.binder is None:
        pytest.skip("no fast path for this statement")
    assert outcome(statement, values) == outcome(general(statement), values)


@pytest.mark.parametrize(
    "value", [decimal.Decimal("1.25"), datetime.datetime(2026, 12, 3, 7, 30), "x", 3, None]
)
def test_a_value_the_column_type_converts(database_url: str, value: Any) -> None:
    column = "amount" if isinstance(value, decimal.Decimal) else "at"
    values = {"id": 1, column: value}
    # Compiled for the keys with no value to refuse; bound with the value (refused or not).
    statement = compiler(database_url).compile(table.insert(), {"id": 1, column: None}).statement
    assert statement.binder is not None
    assert outcome(statement, values) == outcome(general(statement), values)
