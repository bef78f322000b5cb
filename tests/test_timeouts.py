"""timeout= on every query method: the whole call bounded (waiting for a connection
included), OperationalError naming the timeout, the statement stopped on the server,
and the pool whole afterwards. Outcomes only: no assertion on how long anything took."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, InterfaceError, OperationalError

from .conftest import notes, released

#: A condition that takes long to evaluate (SQLite's never ends: it is interrupted).
SLOW = {
    "postgresql": "(SELECT count(*) FROM pg_sleep(30)) = 1",
    "mysql": "SLEEP(30) = 0",
    "sqlite": "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c) > 0",
}

TIMEOUT = 0.5


def slow_select(dialect: str, marker: str) -> str:
    return f"SELECT count(*) AS n FROM dbaccess_notes WHERE {SLOW[dialect]} /* {marker} */"


def slow_update(dialect: str, marker: str) -> str:
    return f"UPDATE dbaccess_notes SET text = :text WHERE {SLOW[dialect]} /* {marker} */"


@pytest.fixture
async def noted(db: Database) -> Database:
    await db.execute(notes.insert(), {"text": "one"})
    return db


async def still_running(db: Database, dialect: str, marker: str) -> bool:
    """Whether a statement with ``marker`` in its text still runs on the server (polled
    for a generous while: the server takes the cancellation asynchronously)."""
    sql = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND query LIKE :pattern AND pid <> pg_backend_pid()",
        "mysql": "SELECT count(*) FROM information_schema.processlist "
        "WHERE info LIKE :pattern AND id <> connection_id()",
    }[dialect]
    pattern = f"%{marker} */%"
    for _ in range(100):
        if await db.fetch_val(sql, {"pattern": pattern}) == 0:
            return False
        await asyncio.sleep(0.1)
    return True


async def assert_whole(db: Database) -> None:
    assert await released(db)
    stats = db.pool_stats
    assert stats.in_use == 0 and stats.size <= stats.max_size
    assert await db.fetch_val("SELECT 1", timeout=10) == 1


Call = Callable[[Database, str, str], Awaitable[Any]]


async def _fetch_all(db: Database, dialect: str, marker: str) -> Any:
    return await db.fetch_all(slow_select(dialect, marker), timeout=TIMEOUT)


async def _fetch_one(db: Database, dialect: str, marker: str) -> Any:
    return await db.fetch_one(slow_select(dialect, marker), timeout=TIMEOUT)


async def _fetch_val(db: Database, dialect: str, marker: str) -> Any:
    return await db.fetch_val(slow_select(dialect, marker), timeout=TIMEOUT)


async def _execute(db: Database, dialect: str, marker: str) -> Any:
    return await db.execute(slow_update(dialect, marker), {"text": "x"}, timeout=TIMEOUT)


async def _execute_result(db: Database, dialect: str, marker: str) -> Any:
    return await db.execute_result(slow_update(dialect, marker), {"text": "x"}, timeout=TIMEOUT)


async def _execute_many(db: Database, dialect: str, marker: str) -> Any:
    values = [{"text": "x"}, {"text": "y"}]
    return await db.execute_many(slow_update(dialect, marker), values, timeout=TIMEOUT)


CALLS = [_fetch_all, _fetch_one, _fetch_val, _execute, _execute_result, _execute_many]


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.__name__.strip("_"))
async def test_a_long_statement_times_out(noted: Database, dialect: str, call: Call) -> None:
    marker = f"dbaccess-timeout-{uuid.uuid4().hex}"
    with pytest.raises(OperationalError, match=r"timed out after timeout=0\.5 s: the statement"):
        await call(noted, dialect, marker)
    if dialect != "sqlite":  # (SQLite's runs in this process, interrupted on close)
        assert not await still_running(noted, dialect, marker)
    await assert_whole(noted)
    # Nothing was changed by the cut-off writes.
    assert await noted.fetch_val(sa.select(notes.c.text)) == "one"


@pytest.mark.parametrize("batched", [False, True], ids=["iterate", "batched_iterate"])
@pytest.mark.parametrize("in_block", [False, True], ids=["own", "in_block"])
async def test_iterate_and_batches_time_out(
    noted: Database, dialect: str, batched: bool, in_block: bool
) -> None:
    marker = f"dbaccess-timeout-{uuid.uuid4().hex}"
    query = slow_select(dialect, marker)
    with pytest.raises(OperationalError, match=r"timeout=0\.5 s waiting for the next rows"):
        async with contextlib.AsyncExitStack() as stack:
            if in_block:
                await stack.enter_async_context(noted.connection())
            if batched:
                async for _ in noted.batched_iterate(query, timeout=TIMEOUT):
                    pass
            else:
                async for _ in noted.iterate(query, timeout=TIMEOUT):
                    pass
    if dialect != "sqlite":
        assert not await still_running(noted, dialect, marker)
    await assert_whole(noted)


async def test_iterate_timeout_bounds_each_wait_not_the_loop(noted: Database) -> None:
    await noted.execute_many(notes.insert(), [{"text": "two"}, {"text": "three"}])
    seen = []
    # The loop's body takes longer than the timeout in all; each fetch does not.
    async for row in noted.iterate(sa.select(notes.c.text), chunk_size=1, timeout=2):
        await asyncio.sleep(0.8)
        seen.append(row["text"])
    assert sorted(seen) == ["one", "three", "two"]
    await assert_whole(noted)


async def test_calls_that_finish_in_time(noted: Database) -> None:
    assert await noted.fetch_val(sa.select(notes.c.text), timeout=30) == "one"
    assert await noted.execute(notes.insert(), {"text": "two"}, timeout=30) is not None
    await noted.execute_many(notes.insert(), [{"text": "three"}], timeout=30)
    rows = [row async for row in noted.iterate(sa.select(notes.c.id), timeout=30)]
    assert len(rows) == 3
    await assert_whole(noted)


async def test_waiting_for_a_connection_counts(database_url: str) -> None:
    async with Database(database_url, max_size=1) as db:
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                await db.fetch_val("SELECT 1")
                holding.set()
                await done.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(OperationalError, match=r"timeout=0\.2 s waiting for a connection"):
            await db.fetch_val("SELECT 1", timeout=0.2)
        with pytest.raises(OperationalError, match=r"timeout=0\.2 s waiting for the next rows"):
            async for _ in db.iterate("SELECT 1", timeout=0.2):
                pass
        done.set()
        await holder
        await assert_whole(db)


async def test_inside_a_transaction(noted: Database, dialect: str) -> None:
    marker = f"dbaccess-timeout-{uuid.uuid4().hex}"
    with pytest.raises(OperationalError, match="timed out"):
        async with noted.transaction():
            await noted.execute(notes.insert(), {"text": "rolled back"})
            with pytest.raises(OperationalError, match="timed out"):
                await noted.fetch_all(slow_select(dialect, marker), timeout=TIMEOUT)
            # The connection was cut off mid-statement: the block refuses it from now on.
            with pytest.raises(InterfaceError, match="interrupted"):
                await noted.fetch_val("SELECT 1")
            raise OperationalError("timed out: leaving the block")
    await assert_whole(noted)
    assert await noted.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1


async def test_an_outer_cancellation_stays_a_cancellation(database: Database, dialect: str) -> None:
    # A cancellation is not a timeout: the statement is not stopped on the server, as
    # with any cancelled call; a short one, on no table, so that it holds up nobody.
    slow = SLOW[dialect].replace("30", "2")
    task = asyncio.create_task(database.fetch_val(f"SELECT {slow}", timeout=60))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_whole(database)


@pytest.mark.parametrize("timeout", [0, -1, True, "1", float("nan")])
async def test_bad_timeouts(database: Database, timeout: Any) -> None:
    message = r"timeout must be a positive number of seconds, or None, not"
    with pytest.raises(InterfaceError, match=message):
        await database.fetch_val("SELECT 1", timeout=timeout)
    with pytest.raises(InterfaceError, match=message):
        await database.execute_many("SELECT 1", [], timeout=timeout)
    with pytest.raises(InterfaceError, match=message):
        await database.iterate("SELECT 1", timeout=timeout).__anext__()
    assert await released(database)
