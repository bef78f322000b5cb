"""Custom types written without ``cache_ok`` (as many written for encode/databases are):
dbaccess emits no SQLAlchemy warning for them, as databases did not, and never serves
a statement compiled for another instance of the type: a query that holds one is
compiled anew on each call, as it was in databases.
"""

from __future__ import annotations

import warnings
from typing import Any

import sqlalchemy as sa

from dbaccess import Database


class Prefixed(sa.types.TypeDecorator[str]):
    """Prefixes what it binds with its own state: no cache_ok, as in many apps."""

    impl = sa.String

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else self.prefix + value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return value


class Marked(sa.types.UserDefinedType[str]):
    """A user-defined type without cache_ok, converting both ways by its mark."""

    def __init__(self, mark: str) -> None:
        self.mark = mark

    def get_col_spec(self, **kw: Any) -> str:
        return "VARCHAR(40)"

    def bind_processor(self, dialect: Any) -> Any:
        return lambda value: value.upper()

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        mark = self.mark
        return lambda value: None if value is None else value + mark


async def test_type_decorator_without_cache_ok(database: Database) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for prefix in ("a:", "b:", "a:", "c:"):
            query = sa.select(sa.cast(sa.literal("x", Prefixed(prefix)), sa.String(20)))
            assert await database.fetch_val(query) == f"{prefix}x"
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


async def test_user_defined_type_without_cache_ok(database: Database) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mark in ("!", "?", "!"):
            value = sa.type_coerce(sa.literal("x"), Marked(mark)).label("v")
            row = await database.fetch_one(sa.select(value))
            assert row is not None and row["v"] == f"X{mark}"
            bound = sa.select(sa.cast(sa.literal("y", Marked(mark)), sa.String(20)))
            assert await database.fetch_val(bound) == "Y"
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
