"""execute_many(returning=True): the RETURNING rows, or a Core insert's new primary keys,
in the order of the values, all rows or none, on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dbaccess import Database, IntegrityError, InterfaceError, Record

from .conftest import notes, released, users

TEXTS = [f"note {n}" for n in range(25)]


async def texts_by_id(db: Database) -> dict[int, str]:
    return {row["id"]: row["text"] for row in await db.fetch_all(sa.select(notes))}


async def test_core_insert_returns_the_new_primary_keys(db: Database) -> None:
    await db.execute(notes.insert(), {"text": "before"})  # ids do not start at 1
    keys = await db.execute_many(notes.insert(), [{"text": t} for t in TEXTS], returning=True)
    assert len(keys) == len(TEXTS) == len(set(keys))
    stored = await texts_by_id(db)
    assert [stored[key] for key in keys] == TEXTS
    assert await released(db)


async def test_given_primary_keys_come_back(db: Database) -> None:
    rows = [{"id": 100 + n, "text": t} for n, t in enumerate(TEXTS[:3])]
    assert await db.execute_many(notes.insert(), rows, returning=True) == [100, 101, 102]


async def test_core_returning_rows(db: Database, dialect: str) -> None:
    if dialect == "mysql":
        pytest.skip("SQLAlchemy's MySQL dialect compiles no RETURNING (raw SQL has it)")
    query = notes.insert().returning(notes.c.id, notes.c.text)
    rows = await db.execute_many(query, [{"text": t} for t in TEXTS], returning=True)
    assert all(isinstance(row, Record) for row in rows)
    assert [row["text"] for row in rows] == TEXTS
    stored = await texts_by_id(db)
    assert all(stored[row["id"]] == row[notes.c.text] for row in rows)


async def test_raw_sql_returning_rows(db: Database) -> None:
    # PostgreSQL, SQLite 3.35+ and MariaDB 10.5+ all have INSERT ... RETURNING.
    insert = "INSERT INTO dbaccess_notes (text, completed) VALUES (:text, :done) RETURNING id, text"
    rows = await db.execute_many(
        insert, [{"text": t, "done": False} for t in TEXTS], returning=True
    )
    assert [row["text"] for row in rows] == TEXTS
    # DELETE ... RETURNING too (MariaDB has it; it has no UPDATE ... RETURNING).
    delete = "DELETE FROM dbaccess_notes WHERE id = :id RETURNING text"
    gone = await db.execute_many(
        delete, [{"id": rows[3]["id"]}, {"id": rows[1]["id"]}], returning=True
    )
    assert [row["text"] for row in gone] == [TEXTS[3], TEXTS[1]]
    # A row that returns nothing adds nothing.
    assert await db.execute_many(delete, [{"id": -1}], returning=True) == []
    assert len(await texts_by_id(db)) == len(TEXTS) - 2


async def test_all_or_nothing(db: Database) -> None:
    names = [{"name": "ann"}, {"name": "bob"}, {"name": "ann"}]
    with pytest.raises(IntegrityError):
        await db.execute_many(users.insert(), names, returning=True)
    assert await db.fetch_all(sa.select(users)) == []
    assert await released(db)


async def test_inside_a_transaction_under_a_savepoint(db: Database) -> None:
    async with db.transaction():
        kept = await db.execute(users.insert(), {"name": "kept"})
        with pytest.raises(IntegrityError):
            await db.execute_many(
                users.insert(), [{"name": "new"}, {"name": "kept"}], returning=True
            )
        keys = await db.execute_many(users.insert(), [{"name": "other"}], returning=True)
    names = {row["id"]: row["name"] for row in await db.fetch_all(sa.select(users))}
    assert names == {kept: "kept", keys[0]: "other"}


async def test_no_values_no_rows(db: Database) -> None:
    assert await db.execute_many(notes.insert(), [], returning=True) == []


async def test_on_a_connection_with_a_timeout(db: Database) -> None:
    async with db.connection() as connection:
        keys = await connection.execute_many(
            notes.insert(), [{"text": t} for t in TEXTS[:2]], returning=True, timeout=30
        )
    assert sorted((await texts_by_id(db)).items()) == sorted(zip(keys, TEXTS[:2]))


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO dbaccess_notes (text, completed) VALUES (:text, false)",
        "UPDATE dbaccess_notes SET text = :text",
    ],
)
async def test_statements_that_return_nothing_are_refused(db: Database, query: str) -> None:
    with pytest.raises(
        InterfaceError, match=r"returning=True\) needs a statement with a RETURNING"
    ):
        await db.execute_many(query, [{"text": "x"}], returning=True)
    assert await db.fetch_all(sa.select(notes)) == []


async def test_not_a_list(db: Database) -> None:
    with pytest.raises(InterfaceError, match="takes a list of mappings of values, not dict"):
        await db.execute_many(notes.insert(), {"text": "x"}, returning=True)  # type: ignore[call-overload]
