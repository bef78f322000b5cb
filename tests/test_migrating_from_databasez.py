"""What README's "Migrating from databasez" table says dbaccess does differently from
databasez 0.13, checked on dbaccess: rows read as in encode/databases, the id from
execute(), databases' transaction options, the server's default isolation level, and
the clear errors a databasez spelling meets."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dbaccess import Database, InterfaceError

from .conftest import notes


async def test_rows_read_as_in_databases_not_as_sqlalchemy_rows(db: Database) -> None:
    new_id = await db.execute(notes.insert(), {"text": "a", "completed": False})
    assert type(new_id) is int  # databasez returns the primary-key row, (1,)
    row = await db.fetch_one(sa.select(notes))
    assert row is not None
    assert row["text"] == row.text == row[notes.c.text] == row._mapping["text"] == "a"
    assert dict(row) == {"id": new_id, "text": "a", "completed": False}
    # Iterating (or unpacking) a record yields its names, as in databases; the values:
    assert list(row) == ["id", "text", "completed"]
    assert list(row.values()) == [new_id, "a", False]


async def test_isolation_level_is_refused_with_the_dbaccess_name(database: Database) -> None:
    with pytest.raises(InterfaceError, match=r"'isolation_level'.*; the level is isolation=$"):
        database.transaction(isolation_level="SERIALIZABLE")


async def test_transactions_run_at_the_server_default_level(
    database: Database, dialect: str
) -> None:
    """databasez makes every PostgreSQL transaction SERIALIZABLE; dbaccess leaves the
    server's default unless given isolation=."""
    if dialect == "sqlite":
        pytest.skip("SQLite transactions are always serializable")
    query = "SHOW transaction_isolation" if dialect == "postgresql" else "SELECT @@tx_isolation"
    async with database.transaction():
        default = str(await database.fetch_val(query)).lower().replace("-", " ")
    assert default == ("read committed" if dialect == "postgresql" else "repeatable read")
    if dialect == "postgresql":  # MySQL sets the next transaction's level: no variable shows it
        async with database.transaction(isolation="serializable"):
            assert await database.fetch_val(query) == "serializable"


def test_a_sqlalchemy_url_object_is_a_url_as_in_databasez() -> None:
    url = sa.engine.make_url("postgresql://user:secret@localhost/app")
    database = Database(url)
    assert database.url.password == "secret"  # kept, though str(url) hides it
    assert "secret" not in repr(database)


def test_psycopg_urls_run_on_psycopg() -> None:
    # databasez's postgresql:// is psycopg; here it is named in the scheme.
    assert Database("postgresql+psycopg://localhost/app").url.driver == "psycopg"


async def test_raw_sql_in_lists_expand(db: Database) -> None:
    await db.execute_many(notes.insert(), [{"text": t, "completed": False} for t in "abc"])
    rows = await db.fetch_all(
        "SELECT text FROM dbaccess_notes WHERE text IN :texts ORDER BY text", {"texts": ["a", "c"]}
    )
    assert [row.text for row in rows] == ["a", "c"]
