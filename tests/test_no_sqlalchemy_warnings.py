"""Code written for encode/databases sees no SQLAlchemy warning that databases did not
emit: each usage below runs with every warning recorded ("always", so none is hidden
by having been shown before), and the record must stay empty.

databases compiled with ``query.compile(dialect=...)`` and nothing else; dbaccess also
asks SQLAlchemy for each statement's cache key, where SQLAlchemy warns about custom
constructs written without ``inherit_cache`` (tested here; the ``cache_ok`` warning of
TypeDecorators has tests of its own). SQLAlchemy's cartesian-product linting runs only
when an Engine compiles, so neither library shows it.
"""

from __future__ import annotations

import datetime
import decimal
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression

from dbaccess import Database

from .conftest import notes, users

items = sa.Table(
    "dbaccess_warn_items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("ratio", sa.Float),
    sa.Column("created", sa.DateTime, default=datetime.datetime(2024, 1, 2, 3, 4, 5)),
    sa.Column("payload", sa.JSON),
    sa.Column("flag", sa.Boolean, default=False),
    sa.Column("user_id", sa.Integer),
)


@pytest.fixture
async def wdb(db: Database) -> Any:
    await db.execute(sa.schema.CreateTable(items))
    await db.execute_many(users.insert(), [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}])
    try:
        yield db
    finally:
        await db.execute(sa.schema.DropTable(items))


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


async def core_crud(db: Database) -> None:
    await db.execute(
        items.insert().values(
            name="a", price=decimal.Decimal("1.50"), ratio=0.5, payload={"x": [1]}, user_id=1
        )
    )
    await db.execute(items.insert(), {"name": "b", "price": decimal.Decimal("2.5")})
    await db.execute_many(items.insert(), [{"name": "c"}, {"name": "d", "user_id": 2}])
    rows = await db.fetch_all(
        items.select()
        .where(items.c.name.in_(["a", "b"]))
        .order_by(items.c.id.desc())
        .limit(5)
        .offset(0)
    )
    assert [row["name"] for row in rows] == ["b", "a"]
    one = await db.fetch_one(sa.select(items.c.name, items.c.price).where(items.c.name == "a"))
    assert one is not None and one.price == decimal.Decimal("1.50")
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(items)) == 4
    await db.execute(items.update().where(items.c.name == "a").values(name="z"))
    await db.execute(items.delete().where(items.c.name == "d"))
    assert [row.name async for row in db.iterate(sa.select(items).order_by(items.c.id))] == [
        "z",
        "b",
        "c",
    ]
    await db.execute(items.insert().values([{"name": "m1"}, {"name": "m2"}]))
    named = sa.select(items.c.id).where(items.c.name == sa.bindparam("n"))
    assert await db.fetch_val(named, {"n": "m2"}) is not None


async def cartesian_products(db: Database) -> None:
    await db.execute(items.insert(), {"name": "a"})
    # FROM items, users with no join: SQLAlchemy's Engine would warn when linting.
    rows = await db.fetch_all(sa.select(items.c.name, users.c.name.label("user")))
    assert len(rows) == 2
    rows = await db.fetch_all(sa.select(items.c.name).where(users.c.name == "ann"))
    assert [row.name for row in rows] == ["a"]


async def joins_subqueries_and_friends(db: Database) -> None:
    await db.execute_many(items.insert(), [{"name": "a", "user_id": 1}, {"name": "b"}])
    per_user = (
        sa.select(items.c.user_id, sa.func.count().label("n")).group_by(items.c.user_id).subquery()
    )
    query = sa.select(users.c.name, per_user.c.n).select_from(
        users.join(per_user, per_user.c.user_id == users.c.id)
    )
    assert [tuple(row.values()) for row in await db.fetch_all(query)] == [("ann", 1)]
    assert (
        len(await db.fetch_all(sa.select(users).where(users.c.id.in_(sa.select(items.c.user_id)))))
        == 1
    )
    alias = items.alias("other")
    assert len(await db.fetch_all(sa.select(alias.c.name).where(alias.c.user_id.is_(None)))) == 1
    assert len(await db.fetch_all(sa.union(sa.select(items.c.id), sa.select(users.c.id)))) == 2
    assert await db.fetch_val(sa.select(sa.exists().where(items.c.name == "a"))) in (True, 1)
    counted = (
        sa.select(sa.func.count(items.c.id)).where(items.c.user_id == users.c.id).scalar_subquery()
    )
    assert len(await db.fetch_all(sa.select(users.c.name, counted.label("n")))) == 2
    labels = sa.select(
        sa.case((items.c.id > 1, "big"), else_="small").label("size"),
        sa.cast(items.c.id, sa.String).label("text_id"),
        sa.literal("x").label("x"),
        sa.literal_column("1").label("one"),
    ).order_by(items.c.id)
    assert [row.size for row in await db.fetch_all(labels)] == ["small", "big"]
    grouped = (
        sa.select(items.c.name, sa.func.count(items.c.id))
        .group_by(items.c.name)
        .having(sa.func.count(items.c.id) > 0)
        .distinct()
    )
    assert len(await db.fetch_all(grouped)) == 2


async def text_and_raw_sql(db: Database) -> None:
    await db.execute("INSERT INTO dbaccess_warn_items (name) VALUES (:name)", {"name": "raw"})
    rows = await db.fetch_all(
        sa.text("SELECT name FROM dbaccess_warn_items WHERE name = :n").bindparams(n="raw")
    )
    assert [row.name for row in rows] == ["raw"]
    typed = sa.text("SELECT id, name FROM dbaccess_warn_items").columns(items.c.id, items.c.name)
    assert [row[items.c.name] for row in await db.fetch_all(typed)] == ["raw"]
    assert (
        await db.fetch_val("SELECT count(*) FROM dbaccess_warn_items WHERE id > :id", {"id": 0})
        == 1
    )


async def ddl(db: Database) -> None:
    table = sa.Table(
        "dbaccess_warn_ddl", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True)
    )
    await db.execute(sa.schema.CreateTable(table))
    await db.execute(sa.schema.DropTable(table))


USAGES: dict[str, Callable[[Database], Awaitable[None]]] = {
    "core crud": core_crud,
    "cartesian products": cartesian_products,
    "joins, subqueries and friends": joins_subqueries_and_friends,
    "text and raw sql": text_and_raw_sql,
    "ddl": ddl,
}


@pytest.mark.parametrize("usage", list(USAGES))
async def test_common_usage_emits_no_warning(wdb: Database, usage: str) -> None:
    with no_warnings():
        await USAGES[usage](wdb)


def custom_constructs() -> tuple[Any, Any]:
    """A FunctionElement and a ColumnElement compiled by @compiles, without
    inherit_cache, as SQLAlchemy's own recipes wrote them before 1.4. New classes on
    each call: SQLAlchemy warns about a class only the first time it meets it."""

    class plus(expression.FunctionElement[int]):  # lower case, as SQL functions are
        type = sa.Integer()
        name = "plus"

        def __init__(self, column: Any, amount: int) -> None:
            self.amount = amount  # rendered into the SQL: two amounts, two statements
            super().__init__(column)

    @compiles(plus)
    def _plus(element: Any, compiler: Any, **kw: Any) -> str:
        return f"({compiler.process(element.clauses, **kw)} + {int(element.amount)})"

    class Upper(expression.ColumnElement[str]):
        type = sa.String()

        def __init__(self, column: Any) -> None:
            self.column = column

    @compiles(Upper)
    def _upper(element: Any, compiler: Any, **kw: Any) -> str:
        return f"UPPER({compiler.process(element.column, **kw)})"

    return plus, Upper


async def test_custom_constructs_without_inherit_cache_emit_no_warning(db: Database) -> None:
    await db.execute(notes.insert(), {"id": 5, "text": "hello", "completed": False})
    plus, upper = custom_constructs()
    with no_warnings():
        for _ in range(2):
            assert await db.fetch_val(sa.select(plus(notes.c.id, 1))) == 6
            assert await db.fetch_val(sa.select(plus(notes.c.id, 10))) == 15
            one = await db.fetch_one(sa.select(upper(notes.c.text)).select_from(notes))
            assert one is not None and one[0] == "HELLO"
            rows = await db.fetch_all(sa.select(notes.c.id).where(plus(notes.c.id, 2) == 7))
            assert [row.id for row in rows] == [5]


async def test_an_uncacheable_construct_is_compiled_for_each_call(db: Database) -> None:
    """No cache key, so no cache entry: the second amount gets its own SQL."""
    await db.execute(notes.insert(), {"id": 5, "text": "hello", "completed": False})
    plus, _ = custom_constructs()
    with no_warnings():
        results = [await db.fetch_val(sa.select(plus(notes.c.id, n))) for n in (1, 2, 3, 1)]
    assert results == [6, 7, 8, 6]


async def test_the_warning_is_left_alone_outside_dbaccess(database: Database) -> None:
    """dbaccess silences SQLAlchemy only while it asks for a cache key: the caller's own
    use of SQLAlchemy warns as it always did."""
    plus, _ = custom_constructs()
    await database.fetch_val(sa.select(plus(sa.literal(1), 1)))  # met by dbaccess first
    _, upper = custom_constructs()
    with pytest.warns(sa.exc.SAWarning, match="inherit_cache"):
        sa.select(upper(sa.literal("x")))._generate_cache_key()
