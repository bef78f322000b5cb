"""Cancelling a task at any await point leaks nothing: no connection lost to the pool,
no transaction left open, no half-read result handed to the next user.

Each scenario is cancelled after 0, 1, 2, ... event loop iterations, so that the
cancellation lands in turn on every await point it has (waiting for a connection,
BEGIN, a statement, a SAVEPOINT, COMMIT, ROLLBACK, a chunk of iterate), until the
scenario finishes before it is cancelled. After each cancellation the pool must be
whole, the next user's connection clean, and the data all-or-nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database

from .conftest import driver_in_transaction, notes, released

Scenario = Callable[[Database, int], Coroutine[Any, Any, None]]

#: A scenario is cancelled after at most this many loop iterations; scenarios finish
#: well before it on every backend, so every await point gets its turn.
MAX_ITERATIONS = 5000


async def count(db: Database, prefix: str) -> int:
    query = sa.select(sa.func.count()).where(notes.c.text.like(f"{prefix}%"))
    return int(await db.fetch_val(query))


async def transaction_of_two_inserts(db: Database, n: int) -> None:
    async with db.transaction():
        await db.execute(notes.insert(), {"text": f"tx{n}-a", "completed": False})
        await db.execute(notes.insert(), {"text": f"tx{n}-b", "completed": False})


async def nested_savepoints(db: Database, n: int) -> None:
    async with db.transaction():
        await db.execute(notes.insert(), {"text": f"sp{n}-a", "completed": False})
        async with db.transaction():
            await db.execute(notes.insert(), {"text": f"sp{n}-b", "completed": False})
        try:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": f"sp{n}-x", "completed": False})
                raise LookupError("roll this savepoint back")
        except LookupError:
            pass


async def manual_rollback(db: Database, n: int) -> None:
    transaction = await db.transaction()
    try:
        await db.execute(notes.insert(), {"text": f"rb{n}", "completed": False})
    finally:
        await transaction.rollback()


async def queries_outside_transactions(db: Database, n: int) -> None:
    await db.execute_many(
        notes.insert(), [{"text": f"q{n}-{i}", "completed": False} for i in range(3)]
    )
    rows = await db.fetch_all(sa.select(notes).where(notes.c.text.like(f"q{n}-%")))
    assert len(rows) == 3
    await db.execute(notes.delete().where(notes.c.text.like(f"q{n}-%")))


async def iterate_with_queries_inside(db: Database, n: int) -> None:
    async for row in db.iterate(sa.select(notes.c.id).order_by(notes.c.id)):
        await db.fetch_val(sa.select(notes.c.text).where(notes.c.id == row.id))


async def iterate_in_a_transaction(db: Database, n: int) -> None:
    async with db.transaction():
        await db.execute(notes.insert(), {"text": f"it{n}", "completed": False})
        async for row in db.iterate(sa.select(notes.c.id).order_by(notes.c.id)):
            await db.fetch_val(sa.select(notes.c.text).where(notes.c.id == row.id))


SCENARIOS: dict[str, Scenario] = {
    "transaction": transaction_of_two_inserts,
    "savepoints": nested_savepoints,
    "manual-rollback": manual_rollback,
    "plain-queries": queries_outside_transactions,
    "iterate": iterate_with_queries_inside,
    "iterate-in-transaction": iterate_in_a_transaction,
}


async def assert_pool_whole_and_clean(db: Database) -> None:
    assert await released(db), f"a connection was not given back: {db.pool_stats}"
    stats = db.pool_stats
    assert stats.waiting == 0
    assert stats.size <= stats.max_size
    # Every idle connection is clean: no open transaction, and it answers its own query.
    async with db.connection() as conn:
        assert not driver_in_transaction(conn.raw_connection)
        assert await conn.fetch_val("SELECT :marker", {"marker": "mine"}) == "mine"


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_cancel_at_every_await_point(db: Database, name: str) -> None:
    scenario = SCENARIOS[name]
    # Enough rows for iterate to take a few round trips between the loop's queries.
    await db.execute_many(
        notes.insert(), [{"text": f"seed{i}", "completed": False} for i in range(20)]
    )
    cancelled = completed = 0
    for n in range(MAX_ITERATIONS):
        task = asyncio.create_task(scenario(db, n))
        for _ in range(n):
            await asyncio.sleep(0)
        if task.done():
            await task
            completed += 1
            break
        task.cancel()
        try:
            await task
            completed += 1
        except asyncio.CancelledError:
            cancelled += 1
        await assert_pool_whole_and_clean(db)
    else:
        pytest.fail(f"{name} did not finish within {MAX_ITERATIONS} loop iterations")

    assert cancelled > 0 and completed == 1
    # All or nothing: a transaction's rows are there together or not at all, and work
    # that was rolled back (by hand or by the cancellation) never is.
    for n in range(cancelled + 1):
        assert await count(db, f"tx{n}-") in (0, 2)
        assert await count(db, f"sp{n}-x") == 0
        assert await count(db, f"sp{n}-b") <= await count(db, f"sp{n}-a")
        assert await count(db, f"rb{n}") == 0
    assert await count(db, "seed") == 20
    await assert_pool_whole_and_clean(db)


async def test_cancel_while_waiting_for_a_connection(database_url: str) -> None:
    async with Database(database_url, min_size=1, max_size=1) as db:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with db.connection():
                holding.set()
                await release.wait()

        held = asyncio.create_task(holder())
        await holding.wait()
        waiters = [asyncio.create_task(db.fetch_val("SELECT 1")) for _ in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert db.pool_stats.waiting == 5
        for waiter in waiters[:4]:
            waiter.cancel()
        release.set()
        await held
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert [isinstance(r, asyncio.CancelledError) for r in results] == [True] * 4 + [False]
        assert results[4] == 1
        await assert_pool_whole_and_clean(db)
        assert db.pool_stats.size == 1


async def test_cancelled_read_leaves_no_rows_for_the_next_query(database_url: str) -> None:
    # asyncmy issue 103: after a cancelled query the next one read the previous rows.
    async with Database(database_url, min_size=1, max_size=1) as db:
        big = "SELECT :tag AS tag, n FROM ({}) AS numbers"
        series = (
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) "
            "SELECT n FROM s"
        )
        for n in range(1, 30):
            task = asyncio.create_task(db.fetch_all(big.format(series), {"tag": "old"}))
            for _ in range(n):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await db.fetch_val("SELECT :tag", {"tag": f"new{n}"}) == f"new{n}"
        await assert_pool_whole_and_clean(db)
