"""Plain Core SELECTs are recognised by their shape (dbaccess/shapes.py) instead of
SQLAlchemy's cache key: the same SQL and arguments as the cache-key path, the right
rows for every literal, and anything the shape does not cover declined to that path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database
from dbaccess.binding import bind
from dbaccess.compiler import Compiler
from dbaccess.shapes import shape_of

from .test_types_without_cache_ok import Prefixed

shaped = sa.MetaData()
items = sa.Table(
    "dbaccess_shaped",
    shaped,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(40), nullable=True),
    sa.Column("score", sa.Float, nullable=False),
)
ROWS = [
    {"id": n, "name": None if n % 4 == 0 else f"item {n}", "score": n * 1.5} for n in range(1, 21)
]


@pytest.fixture
async def table(database: Database) -> AsyncIterator[Database]:
    await database.drop_all(shaped)
    await database.create_all(shaped)
    await database.execute_many(items.insert(), ROWS)
    yield database
    await database.drop_all(shaped)


def where(*criteria: Any) -> sa.Select[Any]:
    return sa.select(items).where(*criteria).order_by(items.c.id)


#: (name, query for a literal, the expected ids for it in Python); each is run with two
#: literals, so that a second query of the shape is served what the first compiled.
RECOGNISED: list[tuple[str, Callable[[Any], Any], Callable[[Any], list[int]]]] = [
    ("equal", lambda n: where(items.c.id == n), lambda n: [n]),
    ("greater", lambda n: where(items.c.id > n), lambda n: list(range(n + 1, 21))),
    (
        "and",
        lambda n: where(items.c.id > n, items.c.score < 2 * n),
        lambda n: [i for i in range(1, 21) if i > n and i * 1.5 < 2 * n],
    ),
    (
        "or",
        lambda n: where(sa.or_(items.c.id == n, items.c.id == n + 1)),
        lambda n: [n, n + 1],
    ),
    (
        "not",
        lambda n: where(~(items.c.id <= n)),
        lambda n: list(range(n + 1, 21)),
    ),
    (
        "is-null",
        lambda n: where(items.c.name.is_(None), items.c.id > n),
        lambda n: [i for i in range(n + 1, 21) if i % 4 == 0],
    ),
    (
        "like",
        lambda n: where(items.c.name.like(f"item {n}%")),
        lambda n: [i for i in range(1, 21) if i % 4 and str(i).startswith(str(n))],
    ),
    (
        "like-escape",
        lambda n: where(items.c.name.like(f"item {n}!%", escape="!")),
        lambda n: [],
    ),
    (
        "order-limit-offset",
        lambda n: sa.select(items).order_by(items.c.id.desc()).limit(n).offset(1),
        lambda n: list(range(19, 19 - n, -1)),
    ),
    (
        "columns",
        lambda n: sa.select(items.c.id, items.c.score).where(items.c.id == n),
        lambda n: [n],
    ),
    (
        "float-literal",
        lambda n: where(items.c.score >= n * 1.5 + 0.25),
        lambda n: list(range(n + 1, 21)),
    ),
]


@pytest.mark.parametrize(("case", "build", "expect"), RECOGNISED, ids=[c[0] for c in RECOGNISED])
async def test_a_recognised_shape_gives_the_rows_of_each_literal(
    table: Database, case: str, build: Callable[[Any], Any], expect: Callable[[Any], list[int]]
) -> None:
    for n in (3, 5, 3):
        query = build(n)
        assert shape_of(query) is not None, "not recognised"
        rows = await table.fetch_all(query)
        assert [row["id"] for row in rows] == expect(n), n
        if case == "columns":
            assert [tuple(row._mapping.values()) for row in rows] == [(n, n * 1.5)]


@pytest.mark.parametrize(("case", "build", "expect"), RECOGNISED, ids=[c[0] for c in RECOGNISED])
def test_the_shape_path_compiles_as_the_cache_key_path(
    database_url: str, case: str, build: Callable[[Any], Any], expect: Any
) -> None:
    dialect = Database(database_url)._engine.compiler.dialect  # the backend's, unconnected
    shaped_compiler, keyed_compiler = Compiler(dialect), Compiler(dialect)
    for n in (3, 7):
        query = build(n)
        fast = shaped_compiler.compile(query, None)
        statement, extracted = keyed_compiler._core_statement(build(n), {})
        sql, args = bind(statement, {}, extracted)
        assert (fast.sql, list(fast.args)) == (sql, list(args))
    assert len(shaped_compiler._shape_cache) == 1  # both literals: one shape
    assert not shaped_compiler._core_cache  # the cache key was never needed


class Tagged(sa.types.TypeDecorator[str]):
    impl = sa.String
    cache_ok = True


DECLINED: list[tuple[str, Callable[[], Any]]] = [
    ("in-list", lambda: sa.select(items).where(items.c.id.in_([1, 2]))),
    ("named-parameter", lambda: sa.select(items).where(items.c.id == sa.bindparam("wanted"))),
    ("function", lambda: sa.select(sa.func.count()).select_from(items)),
    ("label", lambda: sa.select(items.c.id.label("n"))),
    ("group-by", lambda: sa.select(items.c.name).group_by(items.c.name)),
    ("distinct", lambda: sa.select(items.c.name).distinct()),
    ("join", lambda: sa.select(items).join(items.alias(), sa.true())),
    ("execution-options", lambda: sa.select(items).execution_options(stream_results=True)),
    ("for-update", lambda: sa.select(items).with_for_update()),
    ("type-decorator", lambda: sa.select(items).where(items.c.name == sa.literal("x", Tagged))),
    (
        "without-cache-ok",
        lambda: sa.select(items).where(items.c.name == sa.literal("x", Prefixed("p"))),
    ),
    ("text", lambda: sa.text("SELECT 1")),
    ("insert", lambda: items.insert()),
]


@pytest.mark.parametrize(("case", "build"), DECLINED, ids=[c[0] for c in DECLINED])
def test_what_the_shape_does_not_cover_is_declined(case: str, build: Callable[[], Any]) -> None:
    assert shape_of(build()) is None


async def test_a_column_added_to_the_table_later_is_selected(database: Database) -> None:
    grown = sa.Table(
        "dbaccess_shaped_grown",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    )
    await database.drop_all(grown.metadata)
    await database.create_all(grown.metadata)
    try:
        await database.execute(grown.insert(), {"id": 1})
        query = sa.select(grown).where(grown.c.id == 1)
        assert [tuple(r._mapping.values()) for r in await database.fetch_all(query)] == [(1,)]
        await database.execute("ALTER TABLE dbaccess_shaped_grown ADD COLUMN extra INTEGER")
        grown.append_column(sa.Column("extra", sa.Integer))
        rows = await database.fetch_all(sa.select(grown).where(grown.c.id == 1))
        assert [tuple(r._mapping.values()) for r in rows] == [(1, None)]
        assert list(rows[0]._mapping) == ["id", "extra"]
    finally:
        await database.drop_all(grown.metadata)
