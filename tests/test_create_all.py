"""create_all / drop_all: tables, indexes, sequences and enum types in dependency order,
with checkfirst, on every backend, through dbaccess's own connections."""

from __future__ import annotations

import enum

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseError, IntegrityError, InterfaceError

from .conftest import released


class Genre(enum.Enum):
    NOVEL = "novel"
    POEM = "poem"


def library() -> sa.MetaData:
    """Authors, their books (a foreign key and a unique index), a sequence and an enum."""
    metadata = sa.MetaData()
    # Declared child first: the order must come from the foreign keys, not the metadata.
    sa.Table(
        "dbaccess_schema_books",
        metadata,
        sa.Column("id", sa.Integer, sa.Sequence("dbaccess_schema_book_ids"), primary_key=True),
        sa.Column("author_id", sa.ForeignKey("dbaccess_schema_authors.id"), nullable=False),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("genre", sa.Enum(Genre, name="dbaccess_schema_genre")),
        sa.Index("dbaccess_schema_books_title", "title", unique=True),
    )
    sa.Table(
        "dbaccess_schema_authors",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    return metadata


def cycle() -> sa.MetaData:
    """Two tables that refer to each other (named foreign keys, so they can be dropped)."""
    metadata = sa.MetaData()
    sa.Table(
        "dbaccess_schema_teams",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "captain_id",
            sa.ForeignKey("dbaccess_schema_players.id", name="dbaccess_schema_captain"),
        ),
    )
    sa.Table(
        "dbaccess_schema_players",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "team_id", sa.ForeignKey("dbaccess_schema_teams.id", name="dbaccess_schema_team")
        ),
    )
    return metadata


async def table_names(db: Database, dialect: str) -> set[str]:
    sql = {
        "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
        "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    }[dialect]
    return {row[0] for row in await db.fetch_all(sql) if row[0].startswith("dbaccess_schema_")}


async def pg_type_exists(db: Database, name: str) -> bool:
    found = await db.fetch_val("SELECT 1 FROM pg_type WHERE typname = :n", {"n": name})
    return bool(found == 1)


@pytest.fixture
async def clean(database: Database) -> Database:
    """The database with none of this module's tables; dropped again afterwards."""
    for metadata in (library(), cycle()):
        await database.drop_all(metadata)
    return database


async def test_create_all_in_dependency_order(clean: Database, dialect: str) -> None:
    db = clean
    metadata = library()
    await db.create_all(metadata)
    try:
        assert await table_names(db, dialect) == set(metadata.tables)
        authors = metadata.tables["dbaccess_schema_authors"]
        books = metadata.tables["dbaccess_schema_books"]
        author_id = await db.execute(authors.insert(), {"name": "Woolf"})
        row = {"author_id": author_id, "title": "Orlando", "genre": Genre.NOVEL}
        book_id = await db.execute(books.insert(), row)
        assert book_id is not None
        record = await db.fetch_one(books.select())
        assert record is not None and record["genre"] is Genre.NOVEL
        with pytest.raises(IntegrityError):  # the unique index
            await db.execute(books.insert(), {**row, "genre": Genre.POEM})
        with pytest.raises(IntegrityError):  # the foreign key
            await db.execute(books.insert(), {**row, "author_id": 999, "title": "None"})
    finally:
        await db.drop_all(metadata)
    assert await table_names(db, dialect) == set()
    assert await released(db)


async def test_checkfirst_twice(clean: Database, dialect: str) -> None:
    db = clean
    metadata = library()
    await db.create_all(metadata, checkfirst=True)
    await db.create_all(metadata, checkfirst=True)
    assert await table_names(db, dialect) == set(metadata.tables)
    await db.drop_all(metadata, checkfirst=True)
    await db.drop_all(metadata, checkfirst=True)
    assert await table_names(db, dialect) == set()


async def test_checkfirst_creates_what_is_missing(clean: Database, dialect: str) -> None:
    db = clean
    metadata = library()
    await db.execute(sa.schema.CreateTable(metadata.tables["dbaccess_schema_authors"]))
    await db.execute("INSERT INTO dbaccess_schema_authors (id, name) VALUES (1, 'kept')")
    await db.create_all(metadata)
    assert await table_names(db, dialect) == set(metadata.tables)
    # The existing table was left as it was, rows included.
    assert await db.fetch_val("SELECT name FROM dbaccess_schema_authors") == "kept"
    await db.drop_all(metadata)


async def test_without_checkfirst_existing_tables_are_an_error(clean: Database) -> None:
    db = clean
    metadata = library()
    await db.create_all(metadata)
    with pytest.raises(DatabaseError, match="dbaccess_schema_"):
        await db.create_all(metadata, checkfirst=False)
    await db.drop_all(metadata, checkfirst=False)
    with pytest.raises(DatabaseError, match="dbaccess_schema_"):
        await db.drop_all(metadata, checkfirst=False)
    assert await released(db)


async def test_a_failed_create_all_leaves_nothing(clean: Database, dialect: str) -> None:
    if dialect == "mysql":
        pytest.skip("MySQL commits each DDL statement by itself: DDL is not transactional")
    db = clean
    metadata = library()
    # An index of another table that takes the name of the books' index: the last
    # statement of create_all fails, after both tables were created.
    other = sa.MetaData()
    squatter = sa.Table(
        "dbaccess_schema_squatter", other, sa.Column("title", sa.String(10)), schema=None
    )
    await db.execute(sa.schema.CreateTable(squatter))
    try:
        await db.execute(
            "CREATE INDEX dbaccess_schema_books_title ON dbaccess_schema_squatter (title)"
        )
        with pytest.raises(DatabaseError, match="dbaccess_schema_books_title"):
            await db.create_all(metadata)
        assert await table_names(db, dialect) == {"dbaccess_schema_squatter"}
        if dialect == "postgresql":
            assert not await pg_type_exists(db, "dbaccess_schema_genre")
    finally:
        await db.execute(sa.schema.DropTable(squatter))
    assert await released(db)


async def test_tables_that_refer_to_each_other(clean: Database, dialect: str) -> None:
    db = clean
    metadata = cycle()
    await db.create_all(metadata)
    assert await table_names(db, dialect) == set(metadata.tables)
    teams, players = (
        metadata.tables["dbaccess_schema_teams"],
        metadata.tables["dbaccess_schema_players"],
    )
    async with db.transaction():
        await db.execute(teams.insert(), {"id": 1, "captain_id": None})
        await db.execute(players.insert(), {"id": 1, "team_id": 1})
        await db.execute(teams.update().values(captain_id=1))
    with pytest.raises(IntegrityError):  # the foreign key added after both tables
        await db.execute(teams.insert(), {"id": 2, "captain_id": 42})
    await db.drop_all(metadata)
    assert await table_names(db, dialect) == set()


async def test_postgresql_enum_and_sequence_come_and_go(clean: Database, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("only PostgreSQL has enum types and sequences of their own")
    db = clean
    metadata = library()
    await db.create_all(metadata)
    assert await pg_type_exists(db, "dbaccess_schema_genre")
    sequence = "SELECT 1 FROM pg_class WHERE relkind = 'S' AND relname = 'dbaccess_schema_book_ids'"
    assert await db.fetch_val(sequence) == 1
    await db.drop_all(metadata)
    assert not await pg_type_exists(db, "dbaccess_schema_genre")
    assert await db.fetch_val(sequence) is None


async def test_on_a_connection(clean: Database, dialect: str) -> None:
    db = clean
    metadata = library()
    async with db.connection() as connection:
        await connection.create_all(metadata)
        assert await table_names(db, dialect) == set(metadata.tables)
        await connection.drop_all(metadata)
    assert await table_names(db, dialect) == set()
    assert await released(db)


async def test_inside_a_transaction_it_rolls_back_with_it(clean: Database, dialect: str) -> None:
    if dialect == "mysql":
        pytest.skip("MySQL commits each DDL statement by itself: DDL is not transactional")
    db = clean
    transaction = await db.transaction()
    await db.create_all(library())
    assert await table_names(db, dialect) == set(library().tables)
    await transaction.rollback()
    assert await table_names(db, dialect) == set()


async def test_not_a_metadata(database: Database) -> None:
    with pytest.raises(
        InterfaceError, match=r"create_all\(\) takes a sqlalchemy MetaData, not Table"
    ):
        await database.create_all(sa.Table("t", sa.MetaData()))  # type: ignore[arg-type]
    with pytest.raises(InterfaceError, match=r"drop_all\(\) takes a sqlalchemy MetaData, not str"):
        await database.drop_all("tables")  # type: ignore[arg-type]
    assert await released(database)
