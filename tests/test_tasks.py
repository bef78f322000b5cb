"""Tasks and connections: concurrency, sharing with child tasks, isolation between
siblings, re-entrant ``db.connection()`` and ``raw_connection``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomysql
import aiosqlite
import asyncmy
import asyncpg
import psycopg
import pytest
import sqlalchemy as sa

from dbaccess import Connection, Database, DatabaseURL, InterfaceError, ProgrammingError

from .conftest import create_tables, notes


async def texts(db: Database | Connection) -> list[str]:
    rows = await db.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row["text"] for row in rows]


async def add_note(db: Database | Connection, text: str) -> int:
    new_id: int = await db.execute(notes.insert(), {"text": text, "completed": False})
    return new_id


# -- many tasks at once ------------------------------------------------------------------


async def test_many_concurrent_queries(db: Database) -> None:
    count = 60  # more tasks than the pool's 10 connections
    ids = await asyncio.gather(*(add_note(db, f"note {n}") for n in range(count)))
    assert len(set(ids)) == count

    async def read(n: int, note_id: int) -> tuple[int, str, int]:
        row = await db.fetch_one(sa.select(notes.c.id, notes.c.text).where(notes.c.id == note_id))
        assert row is not None
        value = await db.fetch_val(sa.select(sa.literal(n, sa.Integer) * 2))
        return row["id"], row["text"], value

    results = await asyncio.gather(*(read(n, note_id) for n, note_id in enumerate(ids)))
    assert results == [(note_id, f"note {n}", n * 2) for n, note_id in enumerate(ids)]

    stats = db.pool_stats
    assert stats.in_use == 0
    assert stats.waiting == 0
    assert stats.idle == stats.size
    assert 1 <= stats.size <= stats.max_size == 10


async def test_concurrent_failures_give_connections_back(db: Database) -> None:
    async def query(n: int) -> int:
        if n % 3 == 0:
            await db.fetch_all("SELECT * FROM dbaccess_no_such_table")
        value: int = await db.fetch_val(sa.select(sa.literal(n, sa.Integer)))
        return value

    results = await asyncio.gather(*(query(n) for n in range(60)), return_exceptions=True)
    for n, result in enumerate(results):
        if n % 3 == 0:
            assert isinstance(result, ProgrammingError)
        else:
            assert result == n
    stats = db.pool_stats
    assert stats.in_use == 0 and stats.waiting == 0
    assert stats.size >= 1  # failed queries did not cost the pool its connections
    assert await db.fetch_val(sa.select(sa.literal(7, sa.Integer))) == 7


async def test_many_concurrent_blocks(db: Database) -> None:
    """Tasks each holding a connection block run their statements on their own one."""

    async def work(n: int) -> list[str]:
        async with db.connection() as conn:
            await add_note(conn, f"task {n}")
            await asyncio.sleep(0)
            rows = await conn.fetch_all(sa.select(notes.c.text).where(notes.c.text == f"task {n}"))
            return [row["text"] for row in rows]

    results = await asyncio.gather(*(work(n) for n in range(30)))
    assert results == [[f"task {n}"] for n in range(30)]
    assert db.pool_stats.in_use == 0


# -- a transaction is shared with the tasks it starts ---------------------------------------


async def test_child_tasks_share_the_transaction(db: Database) -> None:
    async with db.transaction() as tx:
        parent_conn = db.connection()
        parent_raw = parent_conn.raw_connection
        await add_note(db, "parent")

        async def child(n: int) -> tuple[list[str], Connection, object]:
            seen = await texts(db)  # the parent's uncommitted row is visible
            await add_note(db, f"child {n}")
            conn = db.connection()
            return seen, conn, conn.raw_connection

        results = await asyncio.gather(*(asyncio.create_task(child(n)) for n in range(3)))
        for seen, conn, raw in results:
            assert seen[0] == "parent"
            assert conn is parent_conn
            assert raw is parent_raw
        assert sorted(await texts(db)) == ["child 0", "child 1", "child 2", "parent"]
        await tx.rollback()
    # The children's writes were part of the parent's transaction.
    assert await texts(db) == []
    assert db.pool_stats.in_use == 0


async def test_child_task_commits_with_the_parent(db: Database) -> None:
    async with db.transaction():
        await asyncio.create_task(add_note(db, "from child"))
    assert await texts(db) == ["from child"]


# -- sibling tasks are isolated --------------------------------------------------------------


@pytest.fixture
async def readers_db(db: Database, dialect: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database where a reader is not blocked by an open write transaction.

    On SQLite that is a file in WAL mode (dbaccess's default for files). An in-memory
    SQLite database (the memdb VFS) refuses new readers while a writer holds its
    RESERVED lock, which dbaccess takes at BEGIN (IMMEDIATE): a sibling's read would
    wait for the writer's COMMIT, for up to the busy timeout, then fail with
    "database is locked". The servers' databases are used as they are.
    """
    if dialect != "sqlite":
        yield db
        return
    async with Database(f"sqlite:///{tmp_path / 'readers.db'}") as file_db:
        await create_tables(file_db)
        yield file_db


async def test_sibling_does_not_see_uncommitted_rows(readers_db: Database) -> None:
    db = readers_db
    inserted = asyncio.Event()
    looked = asyncio.Event()

    async def writer() -> Connection:
        async with db.transaction():
            await add_note(db, "uncommitted")
            inserted.set()
            await looked.wait()  # keep the transaction open while the sibling reads
            return db.connection()

    async def reader() -> tuple[list[str], Connection]:
        await inserted.wait()
        try:
            # Outside any block: a pooled connection of its own. (A write here would
            # wait for the writer's lock on SQLite, and the writer waits for us.)
            return await texts(db), db.connection()
        finally:
            looked.set()

    writer_conn, (seen, reader_conn) = await asyncio.gather(writer(), reader())
    assert seen == []
    assert reader_conn is not writer_conn
    assert await texts(db) == ["uncommitted"]  # committed when the writer's block ended


async def test_sibling_transactions_are_separate(db: Database) -> None:
    """Two sibling tasks each in a transaction: one rolls back, the other commits."""
    first_done = asyncio.Event()

    async def rolls_back() -> None:
        async with db.transaction(force_rollback=True):
            await add_note(db, "rolled back")
        first_done.set()

    async def commits() -> None:
        await first_done.wait()  # on SQLite a second writer would wait anyway
        async with db.transaction():
            await add_note(db, "committed")

    await asyncio.gather(rolls_back(), commits())
    assert await texts(db) == ["committed"]


# -- db.connection() ---------------------------------------------------------------------------


async def test_connection_is_reentrant(db: Database) -> None:
    async with db.connection() as outer:
        raw = outer.raw_connection
        assert db.connection() is outer
        async with db.connection() as inner:
            assert inner is outer
            assert inner.raw_connection is raw
            async with db.connection() as innermost:
                assert innermost is outer
        # Leaving the inner blocks keeps the outer one's connection.
        assert db.connection() is outer
        assert outer.raw_connection is raw
        await add_note(db, "still bound")
        assert db.pool_stats.in_use == 1
    assert db.pool_stats.in_use == 0
    with pytest.raises(InterfaceError, match="raw_connection"):
        outer.raw_connection  # noqa: B018


async def test_connections_outside_a_block_are_not_shared(db: Database) -> None:
    assert db.connection() is not db.connection()

    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> object:
        async with db.connection() as conn:
            raw = conn.raw_connection
            holding.set()
            await release.wait()
            return raw

    async def other() -> object:
        await holding.wait()
        try:
            async with db.connection() as conn:
                return conn.raw_connection
        finally:
            release.set()

    first, second = await asyncio.gather(hold(), other())
    assert first is not second
    assert db.pool_stats.in_use == 0


def expected_raw_class(url: str) -> type[object]:
    parsed = DatabaseURL(url)
    if parsed.driver == "psycopg":
        return psycopg.AsyncConnection
    if parsed.dialect in ("postgresql", "postgres"):
        return asyncpg.Connection  # type: ignore[no-any-return]
    if parsed.dialect == "sqlite":
        return aiosqlite.Connection
    if parsed.driver == "asyncmy":
        return asyncmy.Connection
    return aiomysql.Connection  # type: ignore[no-any-return]


async def test_raw_connection(db: Database, database_url: str) -> None:
    expected = expected_raw_class(database_url)
    with pytest.raises(InterfaceError, match="raw_connection"):
        db.connection().raw_connection  # noqa: B018
    async with db.connection() as conn:
        raw = conn.raw_connection
        assert isinstance(raw, expected)
    with pytest.raises(InterfaceError, match="raw_connection"):
        conn.raw_connection  # noqa: B018
    async with db.transaction():
        assert isinstance(db.connection().raw_connection, expected)


async def test_a_thousand_tasks_on_a_pool_of_ten(database_url: str) -> None:
    # Load: 1,000 concurrent callers share 10 connections; all complete with their own
    # answers, and the pool is whole afterwards.
    async with Database(database_url, min_size=2, max_size=10) as db:
        peak_waiting = 0

        async def ask(n: int) -> object:
            nonlocal peak_waiting
            peak_waiting = max(peak_waiting, db.pool_stats.waiting)
            return await db.fetch_val("SELECT :n", {"n": n})

        results = await asyncio.gather(*(ask(n) for n in range(1000)))
        assert results == list(range(1000))
        stats = db.pool_stats
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.size <= 10
        assert peak_waiting > 0  # the pool really was exhausted on the way
