"""``transaction_mode``: how a SQLite transaction begins.

``auto`` (the default) begins DEFERRED when the transaction's first statement reads
(SELECT, VALUES, EXPLAIN, WITH ... SELECT) and IMMEDIATE otherwise; ``deferred``,
``immediate`` and ``exclusive`` force one BEGIN. It is a URL or keyword option of the
database and a keyword of ``transaction()``. The BEGIN sent is read from SQLite's
own trace of the statements it runs. Elsewhere the option is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import ConfigurationError, Database, InterfaceError, NotSupportedError

from .conftest import create_tables, notes
from .test_options import with_options

INSERT = notes.insert().values(text="x", completed=False)


@pytest.fixture
def sqlite_url(dialect: str, database_url: str) -> str:
    if dialect != "sqlite":
        pytest.skip("transaction_mode is a SQLite option (tested below on the others)")
    return database_url


@asynccontextmanager
async def traced(db: Database) -> AsyncIterator[list[str]]:
    """Hold one connection for the block, and collect the statements SQLite runs on it."""
    async with db.connection() as connection:
        statements: list[str] = []
        raw = connection.raw_connection
        await raw.set_trace_callback(statements.append)
        try:
            yield statements
        finally:
            await raw.set_trace_callback(None)


async def read(db: Database) -> None:
    await db.fetch_all(sa.select(notes))


async def write(db: Database) -> None:
    await db.execute(INSERT)


def begins(statements: list[str]) -> list[str]:
    return [sql for sql in statements if sql.startswith("BEGIN")]


async def first_begin(db: Database, first: Any, **options: Any) -> str:
    """The BEGIN of a transaction whose first statement is ``first(db)``."""
    async with traced(db) as statements, db.transaction(**options):
        await first(db)
    (begin,) = begins(statements)
    return begin


FIRST_STATEMENTS: list[tuple[str, Any, str]] = [
    ("core select", lambda db: db.fetch_all(sa.select(notes)), "BEGIN DEFERRED"),
    ("raw select", lambda db: db.fetch_one("SELECT * FROM dbaccess_notes"), "BEGIN DEFERRED"),
    ("fetch_val", lambda db: db.fetch_val("select count(*) from dbaccess_notes"), "BEGIN DEFERRED"),
    (
        "commented select",
        lambda db: db.fetch_all("-- why\n/* a note */ SELECT 1 UNION SELECT 2"),
        "BEGIN DEFERRED",
    ),
    ("values", lambda db: db.fetch_all("VALUES (1), (2)"), "BEGIN DEFERRED"),
    (
        "cte select",
        lambda db: db.fetch_all("WITH t AS (SELECT 1 AS a) SELECT a FROM t"),
        "BEGIN DEFERRED",
    ),
    ("core insert", lambda db: db.execute(INSERT), "BEGIN IMMEDIATE"),
    (
        "raw update",
        lambda db: db.execute("UPDATE dbaccess_notes SET text = 'y'"),
        "BEGIN IMMEDIATE",
    ),
    (
        "cte insert",
        lambda db: db.execute(
            "WITH t AS (SELECT 'z' AS x) INSERT INTO dbaccess_notes (text, completed) "
            "SELECT x, 0 FROM t"
        ),
        "BEGIN IMMEDIATE",
    ),
    (
        "execute_many",
        lambda db: db.execute_many(notes.insert(), [{"text": "a", "completed": False}]),
        "BEGIN IMMEDIATE",
    ),
    ("ddl", lambda db: db.execute("CREATE TABLE dbaccess_mode_t (x INTEGER)"), "BEGIN IMMEDIATE"),
    # A mention of a write counts as one: it only costs the IMMEDIATE lock.
    (
        "select naming a write",
        lambda db: db.fetch_all("WITH t AS (SELECT 'delete' AS a) SELECT a FROM t"),
        "BEGIN IMMEDIATE",
    ),
]


@pytest.mark.parametrize(
    ("first", "expected"),
    [case[1:] for case in FIRST_STATEMENTS],
    ids=[case[0] for case in FIRST_STATEMENTS],
)
async def test_auto_chooses_the_begin_from_the_first_statement(
    sqlite_url: str, first: Any, expected: str
) -> None:
    async with Database(sqlite_url) as db:
        await create_tables(db)
        assert await first_begin(db, first) == expected


async def test_auto_begins_deferred_for_an_iteration(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:
        await create_tables(db)
        await db.execute(INSERT)
        async with traced(db) as statements, db.transaction():
            rows = [row async for row in db.iterate(sa.select(notes))]
        assert len(rows) == 1
        assert begins(statements) == ["BEGIN DEFERRED"]


async def test_a_nested_transaction_first_is_a_savepoint_of_an_immediate_one(
    sqlite_url: str,
) -> None:
    async with Database(sqlite_url) as db:
        await create_tables(db)
        async with traced(db) as statements, db.transaction(), db.transaction():
            await db.fetch_all(sa.select(notes))
        assert begins(statements) == ["BEGIN IMMEDIATE"]
        assert statements[1].startswith("SAVEPOINT")


@pytest.mark.parametrize("mode", ["deferred", "immediate", "exclusive", "auto"])
@pytest.mark.parametrize("how", ["url", "keyword"])
async def test_the_database_option_forces_one_begin(sqlite_url: str, mode: str, how: str) -> None:
    url = f"{sqlite_url}?transaction_mode={mode.upper()}" if how == "url" else sqlite_url
    options: dict[str, Any] = {"transaction_mode": mode} if how == "keyword" else {}
    async with Database(url, **options) as db:
        await create_tables(db)
        reading = await first_begin(db, read)
        writing = await first_begin(db, write)
        if mode == "auto":
            assert (reading, writing) == ("BEGIN DEFERRED", "BEGIN IMMEDIATE")
        else:
            assert reading == writing == f"BEGIN {mode.upper()}"


async def test_a_transaction_overrides_the_database_option(sqlite_url: str) -> None:
    async with Database(sqlite_url, transaction_mode="immediate") as db:
        await create_tables(db)
        assert await first_begin(db, read) == "BEGIN IMMEDIATE"
        assert await first_begin(db, read, transaction_mode="auto") == "BEGIN DEFERRED"
        assert await first_begin(db, read, transaction_mode="Deferred") == "BEGIN DEFERRED"
        assert await first_begin(db, write, transaction_mode="exclusive") == "BEGIN EXCLUSIVE"


async def test_the_decorator_keeps_the_mode(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:
        await create_tables(db)

        @db.transaction(transaction_mode="exclusive")
        async def decorated() -> None:
            await read(db)

        async with traced(db) as statements:
            await decorated()
            await decorated()
        assert begins(statements) == ["BEGIN EXCLUSIVE"] * 2


async def test_a_read_only_transaction_begins_deferred_unless_it_says(sqlite_url: str) -> None:
    async with Database(sqlite_url, transaction_mode="exclusive") as db:
        await create_tables(db)
        assert await first_begin(db, read, readonly=True) == "BEGIN DEFERRED"
        given = await first_begin(db, read, readonly=True, transaction_mode="immediate")
        assert given == "BEGIN IMMEDIATE"
        async with traced(db) as statements, db.transaction(readonly=True):
            await read(db)
        assert statements[:2] == ["BEGIN DEFERRED", "PRAGMA query_only = ON"]


async def test_a_transaction_that_runs_nothing_sends_no_begin(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:
        async with traced(db) as statements, db.transaction():
            pass
        assert statements == []


async def test_a_bad_database_option_names_the_valid_ones(sqlite_url: str) -> None:
    message = "option transaction_mode='later' must be one of: auto, deferred, immediate, exclusive"
    with pytest.raises(ConfigurationError, match=f"^{message}$"):
        Database(f"{sqlite_url}?transaction_mode=later")
    with pytest.raises(ConfigurationError, match=f"^{message}$"):
        Database(sqlite_url, transaction_mode="later")


async def test_a_bad_transaction_option_names_the_valid_ones(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:
        with pytest.raises(
            InterfaceError,
            match=r"^unknown transaction_mode 'later'; expected one of: auto, deferred, "
            r"exclusive, immediate$",
        ):
            db.transaction(transaction_mode="later")
        async with db.transaction():
            with pytest.raises(InterfaceError, match="transaction_mode on a nested transaction"):
                await db.transaction(transaction_mode="immediate")


async def test_other_backends_refuse_the_option(dialect: str, database_url: str) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite has the option (tested above)")
    with pytest.raises(ConfigurationError, match="unknown URL option 'transaction_mode'"):
        Database(with_options(database_url, transaction_mode="immediate"))
    with pytest.raises(ConfigurationError, match="transaction_mode"):
        Database(database_url, transaction_mode="immediate")
    async with Database(database_url) as db:
        with pytest.raises(NotSupportedError, match="transaction_mode; it is a SQLite option"):
            db.transaction(transaction_mode="immediate")
