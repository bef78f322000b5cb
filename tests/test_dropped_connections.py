"""The server closes pooled connections (pg_terminate_backend, MariaDB's KILL): the
caller whose statement was running gets an OperationalError, the dead connection is
dropped, and later calls succeed on fresh connections with no action by the
application. SQLite has no server to drop a connection: these tests skip there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dbaccess import Database, OperationalError

from .conftest import driver_in_transaction, released

BACKEND_PID = {
    "postgresql": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
}


@pytest.fixture
async def admin(database_url: str, dialect: str) -> AsyncIterator[Database]:
    """A second pool, on the same database, that kills the first one's connections."""
    if dialect == "sqlite":
        pytest.skip("SQLite has no server that could drop a connection")
    async with Database(database_url, min_size=1, max_size=1) as db:
        yield db


async def kill(admin: Database, dialect: str, pid: int) -> None:
    if dialect == "postgresql":
        assert await admin.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": pid})
    else:
        await admin.execute(f"KILL {int(pid)}")


async def test_killed_idle_connections_are_replaced(
    database_url: str, dialect: str, admin: Database, own_server_sessions: None
) -> None:
    async with Database(database_url, min_size=3, max_size=3) as db:
        # Take all three connections at once, so that each reports its server pid.
        holding: list[int] = []
        all_held = asyncio.Event()

        async def pid_of_a_held_connection() -> int:
            async with db.connection() as conn:
                pid = int(await conn.fetch_val(BACKEND_PID[dialect]))
                holding.append(pid)
                if len(holding) == 3:
                    all_held.set()
                await all_held.wait()
                return pid

        pids = set(await asyncio.gather(*(pid_of_a_held_connection() for _ in range(3))))
        assert len(pids) == 3 and db.pool_stats.idle == 3

        for pid in pids:
            await kill(admin, dialect, pid)
        await asyncio.sleep(0.2)  # the server closes the sockets

        # No caller sees the dead connections: they are noticed before use.
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(6)))
        assert results == list(range(6))
        new_pids = {int(await db.fetch_val(BACKEND_PID[dialect])) for _ in range(3)}
        assert not new_pids & pids
        assert await released(db)


async def test_statement_on_a_killed_connection_fails_then_the_pool_recovers(
    database_url: str, dialect: str, admin: Database
) -> None:
    async with Database(database_url, min_size=1, max_size=2) as db:
        with pytest.raises(OperationalError):
            async with db.connection() as conn:
                pid = int(await conn.fetch_val(BACKEND_PID[dialect]))
                await kill(admin, dialect, pid)
                await asyncio.sleep(0.2)
                await conn.fetch_val("SELECT 1")
        assert await released(db)
        assert await db.fetch_val("SELECT 2") == 2
        assert int(await db.fetch_val(BACKEND_PID[dialect])) != pid


async def test_connection_killed_mid_statement(
    database_url: str, dialect: str, admin: Database
) -> None:
    sleep = "SELECT pg_sleep(5)" if dialect == "postgresql" else "SELECT SLEEP(5)"
    async with Database(database_url, min_size=1, max_size=1) as db:
        async with db.connection() as conn:
            pid = int(await conn.fetch_val(BACKEND_PID[dialect]))
        running = asyncio.create_task(db.fetch_val(sleep))
        await asyncio.sleep(0.3)
        await kill(admin, dialect, pid)
        outcome = await asyncio.gather(running, return_exceptions=True)
        if dialect == "mysql":
            # MariaDB's KILL ends SLEEP() early with a result of 1, or drops the
            # connection: either way the caller is not left waiting.
            assert outcome[0] == 1 or isinstance(outcome[0], OperationalError)
        else:
            assert isinstance(outcome[0], OperationalError)
        assert await released(db)
        assert await db.fetch_val("SELECT 3") == 3


async def test_killed_connection_inside_a_transaction_rolls_back(
    database_url: str, dialect: str, admin: Database
) -> None:
    async with Database(database_url, min_size=1, max_size=1) as db:
        await db.execute("DROP TABLE IF EXISTS dbaccess_killed")
        await db.execute("CREATE TABLE dbaccess_killed (x INTEGER)")
        try:
            with pytest.raises(OperationalError):
                async with db.transaction():
                    await db.execute("INSERT INTO dbaccess_killed (x) VALUES (1)")
                    pid = int(await db.fetch_val(BACKEND_PID[dialect]))
                    await kill(admin, dialect, pid)
                    await asyncio.sleep(0.2)
                    await db.execute("INSERT INTO dbaccess_killed (x) VALUES (2)")
            assert await released(db)
            assert await db.fetch_val("SELECT count(*) FROM dbaccess_killed") == 0
            async with db.connection() as conn:
                assert not driver_in_transaction(conn.raw_connection)
        finally:
            await db.execute("DROP TABLE dbaccess_killed")
