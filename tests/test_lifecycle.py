"""Database lifecycle: connect, disconnect, the pool, secrets kept out of sight, and
what SQLite does for every pooled connection."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import (
    ConfigurationError,
    Database,
    DatabaseURL,
    DBAccessError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PoolStats,
    ProgrammingError,
)

from .conftest import aiosqlite_workers

# Tables of this module only: a parent and a child with a foreign key.
fk_metadata = sa.MetaData()
parents = sa.Table(
    "dbaccess_lifecycle_parents",
    fk_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
)
children = sa.Table(
    "dbaccess_lifecycle_children",
    fk_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey(parents.c.id), nullable=False),
)


def sqlite_worker_threads() -> set[threading.Thread]:
    """aiosqlite runs each connection in a thread of its own."""
    return aiosqlite_workers()


@pytest.fixture(autouse=True)
async def sqlite_threads_end() -> AsyncIterator[None]:
    """Every aiosqlite thread a test started has ended before its event loop closes.

    A terminated SQLite connection (disconnect timeout, failed connect) stops its
    thread without waiting for it; if the loop closed first, the thread would fail
    ("Event loop is closed") during a later test. Waiting here keeps that failure in
    the test that caused it, and checks that no thread is left running for good.
    """
    before = sqlite_worker_threads()
    yield
    started = sqlite_worker_threads() - before
    for _ in range(200):
        if not any(thread.is_alive() for thread in started):
            break
        await asyncio.sleep(0.01)
    assert not [thread for thread in started if thread.is_alive()]


def query_calls(db: Database) -> list[Callable[[], Awaitable[Any]]]:
    """One call of each query method."""

    async def iterate() -> None:
        async for _ in db.iterate("SELECT 1"):
            pass  # pragma: no cover - refused before any row

    async def in_connection() -> None:
        async with db.connection():
            pass  # pragma: no cover - refused on entry

    async def in_transaction() -> None:
        async with db.transaction():
            pass  # pragma: no cover - refused on entry

    return [
        lambda: db.fetch_all("SELECT 1"),
        lambda: db.fetch_one("SELECT 1"),
        lambda: db.fetch_val("SELECT 1"),
        lambda: db.execute("SELECT 1"),
        lambda: db.execute_result("SELECT 1"),
        lambda: db.execute_many("SELECT :a", [{"a": 1}]),
        iterate,
        in_connection,
        in_transaction,
    ]


async def assert_refused_until_connected(db: Database) -> None:
    for call in query_calls(db):
        with pytest.raises(InterfaceError, match=r"connect\(\)"):
            await call()
    with pytest.raises(InterfaceError, match=r"connect\(\)"):
        db.pool_stats  # noqa: B018


# -- connect and disconnect ----------------------------------------------------------


async def test_connect_and_disconnect_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    assert not db.is_connected
    await db.connect()
    await db.connect()
    assert db.is_connected
    assert db.pool_stats.size == 1  # the second connect() opened no second pool
    assert await db.fetch_val("SELECT 1") == 1
    await db.disconnect()
    assert not db.is_connected
    await db.disconnect()
    assert not db.is_connected


async def test_reconnect_after_disconnect(database_url: str) -> None:
    db = Database(database_url)
    for _ in range(2):
        await db.connect()
        assert await db.fetch_val("SELECT 1") == 1
        await db.disconnect()
        await assert_refused_until_connected(db)


async def test_async_with_connects_and_disconnects(database_url: str) -> None:
    db = Database(database_url)
    async with db as entered:
        assert entered is db
        assert db.is_connected
        assert await db.fetch_val("SELECT 1") == 1
    assert not db.is_connected


async def test_async_with_disconnects_on_error(database_url: str) -> None:
    db = Database(database_url)
    with pytest.raises(ProgrammingError):
        async with db:
            await db.fetch_all("SELEC 1")
    assert not db.is_connected


async def test_query_before_connect_says_to_connect(database_url: str) -> None:
    await assert_refused_until_connected(Database(database_url))


async def test_query_after_disconnect_says_to_connect(database_url: str) -> None:
    db = Database(database_url)
    async with db:
        pass
    await assert_refused_until_connected(db)


# -- the pool --------------------------------------------------------------------------


async def test_pool_stats(database_url: str) -> None:
    async with Database(database_url, max_size=1) as db:
        assert db.pool_stats == PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=1)
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with db.connection() as connection:
                assert await connection.fetch_val("SELECT 1") == 1
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await held.wait()
        assert db.pool_stats == PoolStats(size=1, idle=0, in_use=1, waiting=0, max_size=1)
        waiter = asyncio.create_task(db.fetch_val("SELECT 2"))
        for _ in range(1000):  # let the waiter reach the queue
            if db.pool_stats.waiting:
                break
            await asyncio.sleep(0)
        assert db.pool_stats == PoolStats(size=1, idle=0, in_use=1, waiting=1, max_size=1)
        release.set()
        await holder
        assert await waiter == 2
        assert db.pool_stats == PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=1)


async def test_disconnect_waits_for_connections_in_use(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    held = asyncio.Event()
    release = asyncio.Event()
    finished: list[Any] = []

    async def hold() -> None:
        async with db.connection() as connection:
            held.set()
            await release.wait()
            finished.append(await connection.fetch_val("SELECT 1"))

    holder = asyncio.create_task(hold())
    await held.wait()
    disconnecting = asyncio.create_task(db.disconnect())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not disconnecting.done()  # no timeout: it waits for the connection
    release.set()
    await holder
    # A generous guard only, so that a disconnect that never returns fails the test
    # instead of hanging the run; it returns as soon as the connection is back.
    await asyncio.wait_for(disconnecting, 3)
    assert finished == [1]  # the holder's work completed before the pool closed
    assert not db.is_connected


async def test_disconnect_timeout_closes_a_connection_still_held(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    held = asyncio.Event()
    disconnected = asyncio.Event()
    outcome: list[BaseException] = []

    async def hold() -> None:
        async with db.connection() as connection:
            held.set()
            await disconnected.wait()
            try:
                await connection.fetch_val("SELECT 1")
            except DBAccessError as exc:
                outcome.append(exc)

    holder = asyncio.create_task(hold())
    await held.wait()
    await db.disconnect(timeout=0.1)  # returns although the connection is still held
    assert not db.is_connected
    disconnected.set()
    await holder  # leaving the block after the pool closed is fine
    # The held connection was closed: its next statement fails cleanly.
    assert len(outcome) == 1
    assert isinstance(outcome[0], (InterfaceError, OperationalError))
    await assert_refused_until_connected(db)
    # And the Database can connect again.
    async with db:
        assert await db.fetch_val("SELECT 1") == 1


# -- secrets -----------------------------------------------------------------------------


def url_with_password(database_url: str, password: str) -> DatabaseURL:
    url = DatabaseURL(database_url)
    return url.replace(username=url.username or "user", password=password)


async def test_password_never_shown(
    database_url: str, dialect: str, secret_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    url = url_with_password(database_url, secret_password)
    db = Database(url)
    assert db.url.password == secret_password
    assert str(db.url) == str(url)  # str() is the URL as given, for other tools
    shown = [repr(db), repr(db.url), db.url.obscure_password]
    assert "********" in repr(db.url)
    try:
        await db.connect()
    except OperationalError as exc:
        # MariaDB's root has an empty password, so this one is refused; PostgreSQL
        # (trust) and SQLite (no authentication) accept any password.
        assert dialect == "mysql"
        shown += [str(exc), repr(exc), repr(db)]
        assert not db.is_connected
    else:
        assert dialect != "mysql"
        try:
            shown.append(repr(db))
            with pytest.raises(ProgrammingError) as bad_sql:
                await db.fetch_all("SELEC 1")
            shown += [str(bad_sql.value), repr(bad_sql.value)]
        finally:
            await db.disconnect()
        assert any(record.name == "dbaccess" for record in caplog.records)
    with pytest.raises(InterfaceError) as misuse:
        await db.fetch_all("SELECT 1")
    shown += [str(misuse.value), repr(db)]
    with pytest.raises(ConfigurationError) as bad_option:
        Database(url.replace(options={"bogus": "1"}))
    shown.append(str(bad_option.value))
    with pytest.raises(ConfigurationError) as bad_port:
        Database(f"{url.scheme}://{url.username}:{secret_password}@127.0.0.1:abc/d")
    shown.append(str(bad_port.value))
    shown += [record.getMessage() for record in caplog.records]
    shown += [str(record.args) for record in caplog.records]
    for text in shown:
        assert secret_password not in text


async def test_connection_refused_error_hides_password(
    database_url: str, dialect: str, secret_password: str
) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite has no server to refuse the connection")
    url = url_with_password(database_url, secret_password).replace(hostname="127.0.0.1", port=1)
    db = Database(url, connect_timeout=5)
    with pytest.raises(OperationalError) as info:
        await db.connect()
    for text in (str(info.value), repr(info.value), repr(db)):
        assert secret_password not in text


# -- failing to connect ------------------------------------------------------------------


async def test_server_not_listening_fails_fast(database_url: str, dialect: str) -> None:
    if dialect == "sqlite":
        pytest.skip("no server for SQLite (test_sqlite_unopenable_path)")
    # Nothing listens on port 1: refused at once, well before connect_timeout.
    db = Database(DatabaseURL(database_url).replace(hostname="127.0.0.1", port=1))
    with pytest.raises(OperationalError) as info:
        await db.connect()
    assert info.value.orig is not None
    assert not db.is_connected
    await assert_refused_until_connected(db)


async def test_sqlite_unopenable_path(database_url: str, dialect: str, tmp_path: Path) -> None:
    if dialect != "sqlite":
        pytest.skip("SQLite only: a database file that cannot be opened")
    db = Database(f"sqlite:///{tmp_path}")  # a directory, not a database file
    with pytest.raises(OperationalError) as info:
        await db.connect()
    assert "open" in str(info.value)
    assert not db.is_connected
    await assert_refused_until_connected(db)


# -- SQLite: the memory database, foreign keys -------------------------------------------


async def test_sqlite_memory_database_is_shared_by_the_pool(
    database_url: str, dialect: str
) -> None:
    if dialect != "sqlite" or DatabaseURL(database_url).database not in ("", ":memory:"):
        pytest.skip("SQLite's in-memory database")
    async with Database(database_url, min_size=2, max_size=2) as db:
        created = asyncio.Event()
        read = asyncio.Event()
        seen: list[Any] = []

        async def writer() -> None:
            async with db.connection() as connection:
                await connection.execute("CREATE TABLE shared (x INTEGER)")
                await connection.execute("INSERT INTO shared (x) VALUES (42)")
                created.set()
                await read.wait()  # hold this connection while the other reads

        async def reader() -> None:
            await created.wait()
            async with db.connection() as connection:
                assert db.pool_stats.in_use == 2  # another connection than the writer's
                seen.append(await connection.fetch_val("SELECT x FROM shared"))
            read.set()

        await asyncio.gather(writer(), reader())
        assert seen == [42]
        # Another Database has a memory database of its own.
        async with Database(database_url) as other:
            with pytest.raises(ProgrammingError, match="shared"):
                await other.fetch_val("SELECT x FROM shared")
    # It lives until disconnect: connecting again starts empty.
    async with db:
        with pytest.raises(ProgrammingError, match="shared"):
            await db.fetch_val("SELECT x FROM shared")


async def test_foreign_keys_are_enforced_on_every_connection(database_url: str) -> None:
    # SQLite enforces foreign keys only when asked (PRAGMA foreign_keys), per
    # connection; dbaccess asks on each one, so it behaves like the servers.
    async with Database(database_url, min_size=2, max_size=2) as db:
        for table in (children, parents):
            await db.execute(sa.schema.DropTable(table, if_exists=True))
        for table in (parents, children):
            await db.execute(sa.schema.CreateTable(table))
        try:
            await db.execute(parents.insert(), {"id": 1})
            ready = asyncio.Event()
            failures: list[BaseException] = []

            async def orphan(child_id: int) -> None:
                async with db.connection() as connection:
                    if db.pool_stats.in_use == 2:
                        ready.set()
                    await ready.wait()  # both connections held: each one is tested
                    try:
                        await connection.execute(
                            children.insert(), {"id": child_id, "parent_id": 99}
                        )
                    except IntegrityError as exc:
                        failures.append(exc)
                    await connection.execute(children.insert(), {"id": child_id, "parent_id": 1})

            await asyncio.gather(orphan(1), orphan(2))
            assert len(failures) == 2
            assert await db.fetch_val(sa.select(sa.func.count()).select_from(children)) == 2
            with pytest.raises(IntegrityError):  # the parent is still referenced
                await db.execute(parents.delete())
        finally:
            for table in (children, parents):
                await db.execute(sa.schema.DropTable(table, if_exists=True))
