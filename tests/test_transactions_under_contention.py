"""Two sibling tasks' transactions at once: a reader never waits for a writer's
uncommitted rows, a writer waits for another writer, and on SQLite a transaction
that reads and then writes while another connection writes fails at once with an
error that says what to do (README, "Transactions on SQLite").

SQLite runs each scenario on a file database (WAL mode, dbaccess's default for
files) and on the in-memory one (the memdb VFS, which locks like a rollback journal).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, OperationalError

from .conftest import create_tables, drop_tables, notes

#: Long enough that a test which waited for it would hit pytest's timeout instead.
NEVER = 600.0


async def texts(db: Database) -> list[str]:
    rows = await db.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row.text for row in rows]


async def add(db: Database, text: str) -> None:
    await db.execute(notes.insert(), {"text": text, "completed": False})


@pytest.fixture(params=["configured", "file"])
def url(request: pytest.FixtureRequest, database_url: str, dialect: str, tmp_path: Path) -> str:
    """The configured URL, and for SQLite (whose configured URL is in memory) a file."""
    if request.param == "configured":
        return database_url
    if dialect != "sqlite":
        pytest.skip("a file database is SQLite's (the server runs with its configured URL)")
    return f"sqlite:///{tmp_path / 'contention.db'}"


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[Database]:
    if not url.startswith("sqlite"):
        options.pop("busy_timeout", None)  # a SQLite option
    async with Database(url, **options) as db:
        await create_tables(db)
        await add(db, "before")
        try:
            yield db
        finally:
            await drop_tables(db)


def is_memory(url: str) -> bool:
    return url.endswith(":memory:")


async def test_a_reading_transaction_does_not_wait_for_a_writer(url: str) -> None:
    """The writer holds uncommitted rows while the sibling's transaction reads."""
    if is_memory(url):
        pytest.skip("the memdb VFS lets no new reader in while a writer writes (see below)")
    async with opened(url, busy_timeout=NEVER) as db:
        written = asyncio.Event()
        read = asyncio.Event()

        async def writer() -> None:
            async with db.transaction():
                await add(db, "uncommitted")
                written.set()
                await read.wait()  # still uncommitted while the sibling reads

        async def reader() -> list[str]:
            await written.wait()
            try:
                async with db.transaction():
                    return await texts(db)
            finally:
                read.set()

        _, seen = await asyncio.gather(writer(), reader())
        assert seen == ["before"]
        assert await texts(db) == ["before", "uncommitted"]


async def test_two_reading_transactions_run_at_once(url: str) -> None:
    """Neither takes the write lock, so neither waits for the other (on SQLite's memory
    database too, where BEGIN IMMEDIATE made the second wait for the first to end)."""
    async with opened(url, busy_timeout=NEVER) as db:
        reading: list[None] = []
        both_read = asyncio.Event()

        async def reader() -> list[str]:
            async with db.transaction():
                seen = await texts(db)
                reading.append(None)
                if len(reading) == 2:
                    both_read.set()
                await both_read.wait()  # both transactions are open here
                return seen + await texts(db)

        assert list(await asyncio.gather(reader(), reader())) == [["before"] * 2] * 2


async def test_a_transaction_that_starts_by_writing_waits_for_the_writer(url: str) -> None:
    """SQLite takes its write lock at BEGIN, waiting for the other writer's COMMIT for up
    to busy_timeout; the servers wait for the lock of the row both update."""
    async with opened(url, busy_timeout=NEVER) as db:
        row_id = await db.fetch_val(sa.select(notes.c.id))
        same_row = notes.update().where(notes.c.id == row_id)
        written = asyncio.Event()
        order: list[str] = []

        async def first() -> None:
            async with db.transaction():
                await db.execute(same_row.values(text="first"))
                written.set()
                # Let the second reach the lock and wait for it.
                for _ in range(20):
                    await asyncio.sleep(0.01)
                order.append("first commits")

        async def second() -> None:
            await written.wait()
            async with db.transaction():
                await db.execute(same_row.values(text="second"))
                order.append("second wrote")

        await asyncio.gather(first(), second())
        assert order == ["first commits", "second wrote"]
        assert await texts(db) == ["second"]


async def test_sqlite_read_then_write_under_contention_fails_at_once(
    dialect: str, url: str
) -> None:
    """A transaction that began by reading (BEGIN DEFERRED) holds a read lock; its
    first write must upgrade it. While another connection writes, SQLite refuses at
    once: the busy timeout does not apply (waiting could deadlock). The error says
    so, and the transaction can be rolled back and retried."""
    if dialect != "sqlite":
        pytest.skip(
            "PostgreSQL and MySQL lock rows, not the database: a reader that starts "
            "writing waits for the row lock like any writer"
        )
    async with opened(url, busy_timeout=NEVER) as db:
        has_read = asyncio.Event()
        has_written = asyncio.Event()
        done = asyncio.Event()

        async def reader_then_writer() -> BaseException | None:
            try:
                async with db.transaction():
                    assert await texts(db) == ["before"]
                    has_read.set()
                    await has_written.wait()
                    await add(db, "late")  # the upgrade: refused at once
            except OperationalError as exc:
                return exc
            finally:
                done.set()
            return None

        async def writer() -> None:
            await has_read.wait()
            async with db.transaction():
                await add(db, "writer")
                has_written.set()
                await done.wait()  # hold the write lock until the reader gave up

        error, _ = await asyncio.gather(reader_then_writer(), writer())
        assert isinstance(error, OperationalError), url
        assert isinstance(error, sqlite3.OperationalError)  # the driver's class too
        message = str(error)
        assert message.startswith("database is locked: this transaction began by reading")
        assert "busy_timeout does not apply" in message
        assert "transaction_mode='immediate'" in message
        assert getattr(error.orig, "sqlite_errorname", "SQLITE_BUSY") == "SQLITE_BUSY"
        # The failed transaction was rolled back; the writer committed; a retry works.
        assert await texts(db) == ["before", "writer"]
        async with db.transaction():
            assert await texts(db) == ["before", "writer"]
            await add(db, "late")
        assert await texts(db) == ["before", "writer", "late"]
        assert db.pool_stats.in_use == 0


async def test_sqlite_read_then_write_after_a_commit_fails_in_wal_mode(
    dialect: str, tmp_path: Path
) -> None:
    """In WAL mode the reader reads a snapshot: once another connection has committed
    since, the reader can never write in this transaction (SQLITE_BUSY_SNAPSHOT),
    however long it waits."""
    if dialect != "sqlite":
        pytest.skip("SQLite's WAL snapshots")
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    async with opened(url, busy_timeout=NEVER) as db, Database(url) as other:
        with pytest.raises(OperationalError, match="began by reading") as raised:
            async with db.transaction():
                assert await texts(db) == ["before"]
                await add(other, "committed meanwhile")  # another connection commits
                await add(db, "late")
        assert getattr(raised.value.orig, "sqlite_errorname", "SQLITE_BUSY_SNAPSHOT") == (
            "SQLITE_BUSY_SNAPSHOT"
        )
        assert await texts(db) == ["before", "committed meanwhile"]


@pytest.mark.parametrize("how", ["url", "keyword", "transaction"])
async def test_sqlite_immediate_mode_makes_read_then_write_wait_instead(
    dialect: str, url: str, how: str
) -> None:
    """With transaction_mode='immediate' the reader takes the write lock at its BEGIN,
    so the other writer waits for it (busy_timeout applies) and both succeed."""
    if dialect != "sqlite":
        pytest.skip("transaction_mode is a SQLite option")
    options: dict[str, Any] = {"busy_timeout": NEVER}
    per_transaction: dict[str, Any] = {}
    if how == "url":
        url += "?transaction_mode=immediate"
    elif how == "keyword":
        options["transaction_mode"] = "immediate"
    else:
        per_transaction["transaction_mode"] = "immediate"
    async with opened(url, **options) as db:
        has_read = asyncio.Event()
        order: list[str] = []

        async def reader_then_writer() -> None:
            async with db.transaction(**per_transaction):
                assert await texts(db) == ["before"]
                has_read.set()
                for _ in range(20):  # let the writer reach the lock and wait
                    await asyncio.sleep(0.01)
                await add(db, "reader")
                order.append("reader commits")

        async def writer() -> None:
            await has_read.wait()
            async with db.transaction():
                await add(db, "writer")
                order.append("writer wrote")

        await asyncio.gather(reader_then_writer(), writer())
        assert order == ["reader commits", "writer wrote"]
        assert await texts(db) == ["before", "reader", "writer"]


async def test_sqlite_memory_database_lets_no_new_reader_in_while_a_writer_writes(
    dialect: str, database_url: str
) -> None:
    """The memdb VFS refuses a new read lock while a connection holds the write lock:
    a reader that starts then waits for the writer's COMMIT (up to busy_timeout). A
    file database (WAL) does not: see the first test."""
    if dialect != "sqlite":
        pytest.skip("the in-memory SQLite database's locking")
    async with opened(database_url, busy_timeout=0.05) as db:
        written = asyncio.Event()
        read = asyncio.Event()

        async def writer() -> None:
            async with db.transaction():
                await add(db, "uncommitted")
                written.set()
                await read.wait()

        async def reader() -> BaseException | None:
            await written.wait()
            try:
                async with db.transaction():
                    await texts(db)
            except OperationalError as exc:
                return exc
            finally:
                read.set()
            return None

        _, error = await asyncio.gather(writer(), reader())
        assert isinstance(error, OperationalError)
        assert str(error) == "database is locked"  # waited for busy_timeout, in vain
        assert await texts(db) == ["before", "uncommitted"]
