"""iterate(): streaming rows in chunks, queries inside the loop, leaving early."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa

from dbaccess import Database, ProgrammingError, Record
from dbaccess.connection import ITERATE_CHUNK_SIZE

from .conftest import notes, released, users

ROWS = 2 * ITERATE_CHUNK_SIZE + 500  # three chunks, the last one partial

ORDERED = sa.select(notes.c.id, notes.c.text).order_by(notes.c.id)


@pytest.fixture
async def filled(db: Database) -> Database:
    await db.execute_many(
        notes.insert(), [{"text": f"note {n:05}", "completed": n % 2 == 0} for n in range(ROWS)]
    )
    return db


async def test_iterate_all_rows_in_order(filled: Database) -> None:
    rows = [row async for row in filled.iterate(ORDERED)]
    assert len(rows) == ROWS
    assert all(isinstance(row, Record) for row in rows)
    assert [row["text"] for row in rows] == [f"note {n:05}" for n in range(ROWS)]
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == ROWS
    assert rows[0]._mapping["text"] == rows[0][notes.c.text] == rows[0].text == "note 00000"
    assert await released(filled)


async def test_iterate_raw_sql_with_values(filled: Database) -> None:
    query = "SELECT text FROM dbaccess_notes WHERE completed = :done ORDER BY id"
    texts = [row["text"] async for row in filled.iterate(query, {"done": True})]
    assert texts == [f"note {n:05}" for n in range(0, ROWS, 2)]


async def test_iterate_empty_result(db: Database) -> None:
    assert [row async for row in db.iterate(ORDERED)] == []
    assert await released(db)


async def test_read_inside_the_loop(filled: Database) -> None:
    """Queries inside the loop, outside a transaction, do not deadlock (databases #176)."""
    seen = 0
    async for row in filled.iterate(ORDERED):
        if row["id"] % 400 == 0 or seen == 0:
            again = await filled.fetch_one(sa.select(notes.c.text).where(notes.c.id == row["id"]))
            assert again is not None and again["text"] == row["text"]
            assert await filled.fetch_val(sa.select(sa.func.count()).select_from(notes)) == ROWS
        seen += 1
    assert seen == ROWS
    assert await released(filled)


async def test_write_inside_the_loop_in_a_transaction(filled: Database) -> None:
    """A write inside the loop runs on the transaction's connection, between chunks."""
    seen = 0
    written = []
    async with filled.transaction():
        async for row in filled.iterate(ORDERED):
            if row["id"] % 250 == 0 or seen == 0:
                await filled.execute(users.insert(), {"name": row["text"]})
                written.append(row["text"])
                found = await filled.fetch_val(
                    sa.select(users.c.name).where(users.c.name == row["text"])
                )
                assert found == row["text"]
            seen += 1
    assert seen == ROWS
    assert len(written) > ROWS // 250
    names = await filled.fetch_all(sa.select(users.c.name).order_by(users.c.id))
    assert [row["name"] for row in names] == written
    assert await released(filled)


async def test_write_inside_the_loop_outside_a_transaction(filled: Database, dialect: str) -> None:
    if dialect == "sqlite":
        # The loop's connection holds a read lock on the in-memory database until the
        # last chunk is read; a write from another connection waits for it (up to the
        # busy timeout), so on SQLite in memory the write belongs in a transaction.
        pytest.skip("a write outside a transaction waits for the reader on SQLite memory")
    written = []
    async for row in filled.iterate(ORDERED):
        if row["id"] % 500 == 0:
            await filled.execute(users.insert(), {"name": row["text"]})
            written.append(row["text"])
    assert len(written) == ROWS // 500
    names = await filled.fetch_all(sa.select(users.c.name).order_by(users.c.id))
    assert [row["name"] for row in names] == written
    assert await released(filled)


async def test_break_releases_the_connection(filled: Database) -> None:
    seen = []
    async for row in filled.iterate(ORDERED):
        seen.append(row["text"])
        if len(seen) == 5:
            break
    assert seen == [f"note {n:05}" for n in range(5)]
    assert await released(filled)
    # The next queries, reads and writes, work.
    await filled.execute(users.insert(), {"name": "after break"})
    assert await filled.fetch_val(sa.select(sa.func.count()).select_from(notes)) == ROWS
    again = [row async for row in filled.iterate(ORDERED)]
    assert len(again) == ROWS
    assert await released(filled)


# Database.iterate and Connection.iterate are annotated as returning AsyncIterator,
# which has no aclose(), though they return async generators: hence the type: ignore.


async def test_aclose_releases_the_connection_at_once(filled: Database) -> None:
    async with contextlib.aclosing(filled.iterate(ORDERED)) as rows:
        async for row in rows:
            assert row["text"] == "note 00000"
            break
    assert filled.pool_stats.in_use == 0
    await filled.execute(users.insert(), {"name": "after aclose"})
    assert await filled.fetch_val(sa.select(sa.func.count()).select_from(users)) == 1


async def test_connection_iterate_aclose_releases_at_once(filled: Database) -> None:
    conn = filled.connection()
    async with contextlib.aclosing(conn.iterate(ORDERED)) as rows:
        async for row in rows:
            assert row["text"] == "note 00000"
            break
    assert filled.pool_stats.in_use == 0


async def test_break_inside_a_transaction(filled: Database) -> None:
    async with filled.transaction():
        async with contextlib.aclosing(filled.iterate(ORDERED)) as rows:
            async for _ in rows:
                break
        await filled.execute(users.insert(), {"name": "after break"})
        assert await filled.fetch_val(sa.select(sa.func.count()).select_from(notes)) == ROWS
    assert await filled.fetch_val(sa.select(sa.func.count()).select_from(users)) == 1
    assert await released(filled)


async def test_iterate_sees_uncommitted_rows_of_its_transaction(db: Database) -> None:
    async with db.transaction() as tx:
        await db.execute_many(
            notes.insert(), [{"text": f"tx {n}", "completed": False} for n in range(1500)]
        )
        texts = [row["text"] async for row in db.iterate(ORDERED)]
        assert texts == [f"tx {n}" for n in range(1500)]
        await tx.rollback()
    assert [row async for row in db.iterate(ORDERED)] == []


async def test_error_raises_on_first_anext(db: Database) -> None:
    rows = db.iterate("SELECT * FROM dbaccess_no_such_table")
    with pytest.raises(ProgrammingError):
        await rows.__anext__()
    assert await released(db)
    with pytest.raises(ProgrammingError):
        async with db.transaction():
            rows = db.iterate("SELECT no_such_column FROM dbaccess_notes")
            await rows.__anext__()
    assert await released(db)
    assert await db.fetch_val("SELECT 1") == 1


async def test_iterate_on_an_explicit_connection(filled: Database) -> None:
    async with filled.connection() as conn:
        count = 0
        async for row in conn.iterate(ORDERED):
            if count == 0:
                first = await conn.fetch_one(sa.select(notes.c.text).where(notes.c.id == row["id"]))
                assert first is not None and first["text"] == "note 00000"
            count += 1
        assert count == ROWS
        async with conn.transaction(force_rollback=True):
            await conn.execute(notes.delete().where(notes.c.completed == sa.true()))
            texts = [row["text"] async for row in conn.iterate(ORDERED)]
            assert texts == [f"note {n:05}" for n in range(1, ROWS, 2)]
            await conn.execute(users.insert(), {"name": "inside"})
        assert len([row async for row in conn.iterate(ORDERED)]) == ROWS
    assert await released(filled)
