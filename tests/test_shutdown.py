"""connect() and disconnect() under concurrency and cancellation: one pool is opened
for concurrent connect() calls, and a disconnect() cancelled at any await point still
closes every connection (no server session, no SQLite worker thread left behind)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from dbaccess import Database

# Each backend's way to list this pool's connections on the server, and to count which
# of them are still open.
OPEN_SESSIONS = {
    "postgresql": (
        "SELECT pg_backend_pid()",
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:ids)",
    ),
    "mysql": (
        "SELECT CONNECTION_ID()",
        "SELECT count(*) FROM information_schema.processlist WHERE id IN :ids",
    ),
}


def sqlite_threads() -> int:
    return sum(1 for t in threading.enumerate() if "_connection_worker_thread" in t.name)


async def session_ids(db: Database, dialect: str, count: int) -> list[int]:
    """The server ids of ``count`` connections of the pool, all held at once."""
    query = OPEN_SESSIONS[dialect][0]
    ids: list[int] = []
    all_held = asyncio.Event()

    async def hold() -> None:
        async with db.connection() as conn:
            ids.append(int(await conn.fetch_val(query)))
            if len(ids) == count:
                all_held.set()
            await all_held.wait()

    await asyncio.gather(*(hold() for _ in range(count)))
    return ids


async def eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    for _ in range(200):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


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

        if dialect == "sqlite":
            assert await eventually(lambda: _async(sqlite_threads() <= threads_before))
        else:
            count = OPEN_SESSIONS[dialect][1]

            async def all_gone() -> bool:
                return int(await admin.fetch_val(count, {"ids": ids})) == 0

            assert await eventually(all_gone)
        # The Database can be used again, and closed cleanly.
        await db.connect()
        assert await db.fetch_val("SELECT 1") == 1
        await db.disconnect()


async def _async(value: bool) -> bool:
    return value
