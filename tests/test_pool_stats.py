"""Pool statistics, a public API: what the pool holds now, and its counters since it opened."""

from __future__ import annotations

import asyncio

import pytest

from dbaccess import Database, DatabaseURL, DBAccessError, PoolStats


async def test_counts_now_and_since_the_pool_opened(database_url: str) -> None:
    async with Database(database_url, min_size=1, max_size=3) as database:
        start = database.pool_stats
        assert (start.size, start.idle, start.in_use, start.waiting) == (1, 1, 0, 0)
        assert (start.max_size, start.opened, start.open_failed) == (3, 1, 0)
        for _ in range(3):
            await database.fetch_val("SELECT 1")
        async with database.connection():
            held = database.pool_stats
            assert (held.in_use, held.idle) == (1, 0)
        after = database.pool_stats
        assert after.acquired == start.acquired + 4
        assert (after.in_use, after.idle, after.opened) == (0, 1, 1)


async def test_a_loan_that_waits_is_counted_with_its_wait(database_url: str) -> None:
    async with Database(database_url, min_size=1, max_size=1) as database:
        assert database.pool_stats.acquire_wait_count == 0
        held, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with database.connection():
                held.set()
                await done.wait()

        holder = asyncio.ensure_future(hold())
        await held.wait()
        waiter = asyncio.ensure_future(database.fetch_val("SELECT 5"))
        for _ in range(1000):  # until the waiter queues (a few loop turns)
            if database.pool_stats.waiting:
                break
            await asyncio.sleep(0)
        assert database.pool_stats.waiting == 1
        done.set()
        assert await waiter == 5
        await holder
        stats = database.pool_stats
        assert stats.waiting == 0
        assert stats.acquire_wait_count == 1
        assert stats.acquire_wait_total > 0
        assert stats.opened == 1


async def test_opening_a_new_connection_is_a_wait(database_url: str) -> None:
    async with Database(database_url, min_size=0, max_size=2) as database:
        assert database.pool_stats.opened == 0
        await database.fetch_val("SELECT 1")  # no idle connection: one is opened
        await database.fetch_val("SELECT 1")  # the idle one: no wait
        stats = database.pool_stats
        assert (stats.opened, stats.acquired, stats.acquire_wait_count) == (1, 2, 1)


async def test_connections_that_fail_to_open_are_counted(database_url: str) -> None:
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        bad = url.replace(database="/nonexistent-dbaccess-dir/test.db")
    else:
        bad = url.replace(database="dbaccess_no_such_database")
    async with Database(bad, min_size=0) as database:
        for attempt in range(2):
            with pytest.raises(DBAccessError):  # which one depends on the backend
                await database.fetch_val("SELECT 1")
            assert database.pool_stats.open_failed == attempt + 1
        stats = database.pool_stats
        assert (stats.opened, stats.size, stats.in_use) == (0, 0, 0)


def test_pool_stats_still_builds_from_the_first_five_fields() -> None:
    stats = PoolStats(2, 1, 1, 0, 10)
    assert (stats.opened, stats.acquired, stats.acquire_wait_total) == (0, 0, 0.0)


async def test_equality_compares_the_state_now_not_the_counters(database_url: str) -> None:
    async with Database(database_url, min_size=1, max_size=2) as database:
        await database.fetch_val("SELECT 1")
        stats = database.pool_stats
        assert stats.acquired == 1
        assert stats == PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=2)
        assert stats != PoolStats(size=1, idle=0, in_use=1, waiting=0, max_size=2)
