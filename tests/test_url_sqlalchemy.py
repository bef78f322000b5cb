"""A SQLAlchemy URL object is accepted wherever a URL is, password included."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL, make_url

from dbaccess import ConfigurationError, Database, DatabaseURL

SECRET = "p@ss:w/rd-s3cr3t"


def _full() -> URL:
    return URL.create(
        "postgresql+asyncpg",
        username="app",
        password=SECRET,
        host="db.example.com",
        port=5433,
        database="my_db",
        query={"min_size": "2"},
    )


def test_parts_of_a_sqlalchemy_url() -> None:
    url = DatabaseURL(_full())
    assert url.scheme == "postgresql+asyncpg"
    assert url.username == "app"
    assert url.password == SECRET  # kept, not SQLAlchemy's '***'
    assert url.hostname == "db.example.com"
    assert url.port == 5433
    assert url.database == "my_db"
    assert url.options == {"min_size": "2"}


def test_the_password_is_hidden_in_reprs() -> None:
    url = DatabaseURL(_full())
    assert SECRET not in repr(url)
    assert "********" in repr(url)
    database = Database(_full())
    assert SECRET not in repr(database)
    # str() keeps it, for tools such as Alembic.
    assert make_url(str(database.url)).password == SECRET


def test_same_as_the_string() -> None:
    text = "mysql+aiomysql://root:pw@127.0.0.1:3306/app?charset=utf8mb4"
    assert DatabaseURL(make_url(text)) == DatabaseURL(text)


def test_memory_and_file_databases_read_as_written() -> None:
    assert str(DatabaseURL(make_url("sqlite:///:memory:"))) == "sqlite:///:memory:"
    assert DatabaseURL(URL.create("sqlite", database="/tmp/my app.db")).database == (
        "/tmp/my app.db"
    )


@pytest.mark.parametrize(
    ("scheme", "backend"),
    [
        ("postgresql", "PostgresBackend"),
        ("postgresql+asyncpg", "PostgresBackend"),
        ("mysql+aiomysql", "MySQLBackend"),
        ("mysql+asyncmy", "AsyncmyBackend"),
        ("sqlite+aiosqlite", "SQLiteBackend"),
    ],
)
def test_schemes_map_as_strings_do(scheme: str, backend: str) -> None:
    database = "app.db" if scheme.startswith("sqlite") else "app"
    url = URL.create(scheme, database=database)
    assert type(Database(url)._engine.backend).__name__ == backend


def test_a_driver_dbaccess_does_not_have_is_refused() -> None:
    with pytest.raises(
        ConfigurationError, match="unsupported database URL scheme 'mysql\\+pymysql'"
    ):
        Database(make_url("mysql+pymysql://root@localhost/app"))


async def test_database_connects_from_a_sqlalchemy_url(database_url: str) -> None:
    async with Database(make_url(database_url)) as db:
        assert await db.fetch_val("SELECT 1") == 1
        assert db.url == DatabaseURL(database_url)
