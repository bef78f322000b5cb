"""connect() and disconnect() under concurrency and cancellation: one pool is opened
for concurrent connect() calls, and a disconnect() cancelled at any await point still
closes every connection (no server session, no SQLite worker thread left behind)."""

from __future__ import annotations

import asyncio

import pytest

from dbaccess import Database

from .conftest import all_closed, session_ids, sqlite_threads


async def test_concurrent_connects_open_one_pool(database_url: str) -> None:
    db = Database(database_url, min_size=2, max_size=4)
    await asyncio.gather(*(db.connect() for _ in range(5)))
    try:
        assert db.is_connected
        assert db.pool_stats.size == 2  # opened once, not five times
        assert await db.fetch_val("SELECT 1") == 1
    finally:
        await asyncio.gather(db.disconnect(), db.disconnect())
    assert not db.is_connected


@pytest.mark.parametrize("iterations", range(0, 12))
async def test_cancelled_disconnect_closes_every_connection(
    database_url: str, dialect: str, iterations: int, own_server_sessions: None
) -> None:
    async with Database(database_url) as admin:
        threads_before = sqlite_threads()
        db = Database(database_url, min_size=3, max_size=3)
        await db.connect()
        ids = [] if dialect == "sqlite" else await session_ids(db, dialect, 3)
        # One connection still in use when disconnect() starts: it waits for it.
        in_use = asyncio.Event()
        done = asyncio.Event()

        async def user() -> None:
            async with db.connection() as conn:
                await conn.fetch_val("SELECT 1")
                in_use.set()
                await done.wait()

        task = asyncio.create_task(user())
        await in_use.wait()
        closing = asyncio.create_task(db.disconnect(timeout=30))
        for _ in range(iterations):
            await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        done.set()
        await asyncio.gather(task, return_exceptions=True)
        await db.disconnect()  # whatever the first one did not finish

        assert await all_closed(admin, dialect, ids, threads_before)
        # The Database can be used again, and closed cleanly.
        await db.connect()
        assert await db.fetch_val("SELECT 1") == 1
        await db.disconnect()
