"""Database(url, force_rollback=True) under concurrent tasks, as an app under test runs
them: all tasks share the one connection that holds the rolled-back transaction, and
each task's transactions (savepoints of it) take turns instead of interleaving, while a
task's statements outside its own transactions wait for another task's to end (in
production they would run on a connection of their own, outside it)."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbaccess import Database

from .conftest import create_tables, notes


@pytest.fixture
async def durable_url(db: Database, dialect: str, database_url: str, tmp_path: Path) -> str:
    """A URL whose data outlives a Database (a file for SQLite), with the test tables."""
    if dialect != "sqlite":
        return database_url
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    async with Database(url) as setup:
        await create_tables(setup)
    return url


async def count(db: Database) -> int:
    return int(await db.fetch_val(sa.select(sa.func.count()).select_from(notes)))


async def test_concurrent_transactions_take_turns(durable_url: str) -> None:
    async with Database(durable_url, force_rollback=True) as db:

        async def request(n: int) -> None:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": f"r{n}", "completed": False})
                await asyncio.sleep(0)  # let the other requests run meanwhile
                async with db.transaction():  # nested: a savepoint of this request's
                    await db.execute(notes.insert(), {"text": f"r{n}-inner", "completed": False})
                if n % 3 == 0:
                    raise LookupError(f"request {n} fails")

        outcomes = await asyncio.gather(*(request(n) for n in range(1, 21)), return_exceptions=True)
        failed = [o for o in outcomes if o is not None]
        assert len(failed) == 6 and all(isinstance(o, LookupError) for o in failed)
        rows = await db.fetch_all(sa.select(notes.c.text))
        texts = {row.text for row in rows}
        assert len(texts) == 28  # 14 requests, two rows each
        assert all(int(t[1:].split("-")[0]) % 3 for t in texts)
    async with Database(durable_url) as after:
        assert await count(after) == 0  # and all of it was rolled back at the end


async def test_a_task_outside_waits_for_another_tasks_transaction(durable_url: str) -> None:
    async with Database(durable_url, force_rollback=True) as db:
        inserted = asyncio.Event()
        release = asyncio.Event()

        async def writer() -> None:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": "uncommitted", "completed": False})
                inserted.set()
                await release.wait()
                raise LookupError("roll it back")

        writing = asyncio.create_task(writer())
        await inserted.wait()
        # Run from a context of its own, as a server's request task may be: it still
        # gets the shared connection, and waits for the writer's transaction.
        reading = contextvars.Context().run(asyncio.create_task, count(db))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not reading.done()  # it would have seen the uncommitted row
        release.set()
        with pytest.raises(LookupError):
            await writing
        assert await reading == 0


async def test_child_tasks_nest_in_their_parents_transaction(durable_url: str) -> None:
    async with Database(durable_url, force_rollback=True) as db:
        async with db.transaction():
            await db.execute(notes.insert(), {"text": "parent", "completed": False})

            async def child(n: int) -> int:
                # Sees the parent's row, and its own savepoints take turns with its
                # siblings' inside the parent's transaction.
                async with db.transaction():
                    await db.execute(notes.insert(), {"text": f"child{n}", "completed": False})
                    await asyncio.sleep(0)
                    return await count(db)

            seen = await asyncio.gather(*(child(n) for n in range(5)))
            assert sorted(seen) == [2, 3, 4, 5, 6]
        assert await count(db) == 6
