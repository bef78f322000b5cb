import sqlalchemy as sa

from dbaccess import Database

from .conftest import notes


async def test_insert_and_select(db: Database) -> None:
    new_id = await db.execute(notes.insert(), {"text": "hello", "completed": False})
    row = await db.fetch_one(sa.select(notes).where(notes.c.id == new_id))
    assert row is not None
    assert row["text"] == "hello"
