"""A short tour of dbaccess on SQLite: no server needed.

Run it with:  python examples/quickstart.py
"""

import asyncio

import sqlalchemy as sa

from dbaccess import Database, IntegrityError

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100), nullable=False, unique=True),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
)


async def main() -> None:
    async with Database("sqlite:///:memory:") as db:
        await db.execute(sa.schema.CreateTable(notes))

        # Core expressions and raw SQL with :named parameters.
        first = await db.execute(notes.insert(), {"text": "buy milk"})
        await db.execute_many(
            notes.insert(), [{"text": "walk dog", "done": True}, {"text": "read"}]
        )
        await db.execute(
            "UPDATE notes SET done = :done WHERE id = :id", {"done": True, "id": first}
        )
        print("new note id:", first)

        for row in await db.fetch_all(sa.select(notes).order_by(notes.c.id)):
            print(f"  #{row['id']} {row.text!r} done={row.done}")

        # A transaction that fails rolls back everything done inside it.
        try:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": "this will vanish"})
                await db.execute(notes.insert(), {"text": "read"})  # duplicate: fails
        except IntegrityError as exc:
            print("rolled back:", type(exc).__name__)

        count = await db.fetch_val("SELECT count(*) FROM notes")
        print("notes after the rollback:", count)
        open_texts = await db.fetch_all(
            "SELECT text FROM notes WHERE done = :done AND id IN :ids ORDER BY id",
            {"done": False, "ids": [1, 2, 3]},
        )
        print("still to do:", [row.text for row in open_texts])


if __name__ == "__main__":
    asyncio.run(main())
