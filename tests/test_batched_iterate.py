"""iterate(chunk_size=) and batched_iterate(): rows streamed a batch at a time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dbaccess import Database, InterfaceError, Record

from .conftest import notes, released

ROWS = 2500

ORDERED = sa.select(notes.c.id, notes.c.text).order_by(notes.c.id)
TEXTS = [f"note {n:05}" for n in range(ROWS)]


@pytest.fixture
async def filled(db: Database) -> Database:
    await db.execute_many(notes.insert(), [{"text": text} for text in TEXTS])
    return db


@pytest.mark.parametrize(
    ("batch_size", "sizes"),
    [
        (1000, [1000, 1000, 500]),
        (7, [7] * (ROWS // 7) + [ROWS % 7]),
        (2500, [2500]),
        (9999, [2500]),
    ],
)
async def test_batch_sizes(filled: Database, batch_size: int, sizes: list[int]) -> None:
    batches = [batch async for batch in filled.batched_iterate(ORDERED, batch_size=batch_size)]
    assert [len(batch) for batch in batches] == sizes
    assert all(isinstance(row, Record) for batch in batches for row in batch)
    assert [row["text"] for batch in batches for row in batch] == TEXTS
    assert await released(filled)


async def test_default_batch_size_and_values(filled: Database) -> None:
    query = "SELECT text FROM dbaccess_notes WHERE id > :after ORDER BY id"
    first = await filled.fetch_val("SELECT min(id) FROM dbaccess_notes")
    batches = [batch async for batch in filled.batched_iterate(query, {"after": first})]
    assert [len(batch) for batch in batches] == [1000, 1000, 499]
    assert batches[0][0]["text"] == TEXTS[1]


async def test_no_rows_no_batches(db: Database) -> None:
    assert [batch async for batch in db.batched_iterate(ORDERED, batch_size=10)] == []
    assert await released(db)


@pytest.mark.parametrize("chunk_size", [1, 3, 1000, 5000])
async def test_iterate_chunk_size(filled: Database, chunk_size: int) -> None:
    texts = [row["text"] async for row in filled.iterate(ORDERED, chunk_size=chunk_size)]
    assert texts == TEXTS
    assert await released(filled)


async def test_leaving_early_releases_the_connection(filled: Database) -> None:
    async for batch in filled.batched_iterate(ORDERED, batch_size=100):
        assert len(batch) == 100
        assert filled.pool_stats.in_use == 1  # the stream's own connection
        break
    assert await released(filled)
    # And the pool still serves queries.
    assert await filled.fetch_val(sa.select(sa.func.count()).select_from(notes)) == ROWS


async def test_aclose_releases_the_connection_at_once(filled: Database) -> None:
    batches = filled.batched_iterate(ORDERED, batch_size=10)
    assert len(await batches.__anext__()) == 10
    await batches.aclose()
    assert filled.pool_stats.in_use == 0


async def test_queries_inside_the_loop_on_the_block_connection(database_url: str) -> None:
    async with Database(database_url, max_size=1) as db:
        await db.execute(sa.schema.DropTable(notes, if_exists=True))
        await db.execute(sa.schema.CreateTable(notes))
        try:
            await db.execute_many(notes.insert(), [{"text": text} for text in TEXTS[:250]])
            seen = []
            async with db.connection():
                async for batch in db.batched_iterate(ORDERED, batch_size=100):
                    # With max_size=1 this runs on the same connection as the stream.
                    count = await db.fetch_val(sa.select(sa.func.count()).select_from(notes))
                    assert count == 250
                    seen.append(len(batch))
            assert seen == [100, 100, 50]
            async with db.transaction():
                async for batch in db.batched_iterate(ORDERED, batch_size=200):
                    await db.execute(notes.delete().where(notes.c.id == batch[0]["id"]))
                    break  # leaving early inside the transaction
                assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 249
        finally:
            await db.execute(sa.schema.DropTable(notes))
        assert db.pool_stats.in_use == 0


async def test_on_an_explicit_connection(filled: Database) -> None:
    async with filled.connection() as connection:
        sizes = [len(b) async for b in connection.batched_iterate(ORDERED, batch_size=1200)]
    assert sizes == [1200, 1200, 100]
    assert await released(filled)


@pytest.mark.parametrize("size", [0, -1, True, "10", 2.5])
async def test_sizes_must_be_positive_ints(database: Database, size: object) -> None:
    with pytest.raises(InterfaceError, match=r"batch_size must be a positive int \(rows\), not"):
        await database.batched_iterate("SELECT 1", batch_size=size).__anext__()  # type: ignore[arg-type]
    with pytest.raises(InterfaceError, match=r"chunk_size must be a positive int \(rows\), not"):
        await database.iterate("SELECT 1", chunk_size=size).__anext__()  # type: ignore[arg-type]
    assert await released(database)
