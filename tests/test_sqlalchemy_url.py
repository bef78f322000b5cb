"""dbaccess.sqlalchemy_url(): the application's URL, converted for SQLAlchemy and Alembic."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from dbaccess import ConfigurationError, Database, DatabaseURL, migrate, sqlalchemy_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/app", "postgresql+asyncpg://u@h/app"),
        ("postgres://u@h:5433/app", "postgresql+asyncpg://u@h:5433/app"),
        ("postgresql+asyncpg://u@h/app", "postgresql+asyncpg://u@h/app"),
        ("mysql://root@h/app", "mysql+aiomysql://root@h/app"),
        ("mysql+aiomysql://root@h/app", "mysql+aiomysql://root@h/app"),
        ("mariadb://root@h/app", "mariadb+aiomysql://root@h/app"),
        ("mysql+asyncmy://root@h/app", "mysql+asyncmy://root@h/app"),
        ("mariadb+asyncmy://root@h/app", "mariadb+asyncmy://root@h/app"),
        ("sqlite:///app.db", "sqlite+aiosqlite:///app.db"),
        ("sqlite:////var/lib/app.db", "sqlite+aiosqlite:////var/lib/app.db"),
        ("sqlite+aiosqlite:///app.db", "sqlite+aiosqlite:///app.db"),
    ],
)
def test_each_scheme_names_the_async_driver_dbaccess_uses(given: str, expected: str) -> None:
    url = sqlalchemy_url(given)
    assert url.render_as_string(hide_password=False) == expected
    assert sqlalchemy_url(DatabaseURL(given)) == url


def test_dbaccess_options_are_dropped_and_shared_ones_renamed() -> None:
    url = sqlalchemy_url(
        "postgresql://u@h/app?min_size=2&max_size=20&acquire_timeout=5&command_timeout=30"
        "&connect_timeout=3&application_name=web&statement_cache_size=0&ssl=true&host=/run/pg"
    )
    assert dict(url.query) == {
        "host": "/run/pg",
        "prepared_statement_cache_size": "0",
        "ssl": "require",
    }
    unprepared = sqlalchemy_url("postgresql://u@h/app?prepared_statements=false")
    assert dict(unprepared.query) == {"prepared_statement_cache_size": "0"}
    assert dict(sqlalchemy_url("postgresql://u@h/app?prepared_statements=true").query) == {}
    psycopg = "postgresql+psycopg://u@h/app?prepared_statements=false&statement_cache_size=0"
    assert dict(sqlalchemy_url(psycopg).query) == {}
    mysql = sqlalchemy_url("mysql://r@h/app?charset=utf8mb4&connect_timeout=2.5&max_size=3")
    assert dict(mysql.query) == {"charset": "utf8mb4", "connect_timeout": "3"}
    sqlite = sqlalchemy_url("sqlite:///app.db?busy_timeout=2&foreign_keys=false&journal_mode=wal")
    assert dict(sqlite.query) == {"timeout": "2"}


@pytest.mark.parametrize("given", ["sqlite:///:memory:", "sqlite://", "sqlite+aiosqlite://"])
def test_sqlite_in_memory_stays_in_memory(given: str) -> None:
    url = sqlalchemy_url(given)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == ":memory:"


def test_a_password_is_kept_in_the_url_and_hidden_in_its_repr(secret_password: str) -> None:
    given = DatabaseURL("postgresql://u@h/app").replace(password=secret_password + "@:/%")
    url = sqlalchemy_url(given)
    assert url.password == secret_password + "@:/%"
    assert secret_password not in repr(url)
    assert sa.make_url(url.render_as_string(hide_password=False)) == url


def test_an_option_dbaccess_does_not_know_is_refused_as_database_would() -> None:
    with pytest.raises(ConfigurationError, match="unknown URL option 'min_sise'"):
        sqlalchemy_url("postgresql://h/app?min_sise=2")
    with pytest.raises(ConfigurationError, match="unsupported database URL scheme 'oracle'"):
        sqlalchemy_url("oracle://h/app")


def test_ssl_on_mysql_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ConfigurationError, match=r"ssl='require' cannot be carried.*connect_args"):
        sqlalchemy_url("mysql://r@h/app?ssl=require")
    assert dict(sqlalchemy_url("mysql://r@h/app?ssl=false").query) == {}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # libpq (psycopg) calls it sslmode, and refuses ssl=.
        ("postgresql+psycopg://u@h/app?ssl=true", {"sslmode": "require"}),
        ("postgresql+psycopg://u@h/app?ssl=verify-full", {"sslmode": "verify-full"}),
        ("postgresql+psycopg://u@h/app?connect_timeout=2.5", {"connect_timeout": "3"}),
        # An alias is the option it names: certificate checking is not lost.
        ("postgresql://u@h/app?sslmode=verify-full", {"ssl": "verify-full"}),
        ("postgresql://u@h/app?ssl=1", {"ssl": "require"}),
        ("sqlite:///app.db?timeout=2.5", {"timeout": "2.5"}),
    ],
)
def test_ssl_and_aliases_reach_the_driver_under_its_own_name(
    given: str, expected: dict[str, str]
) -> None:
    assert dict(sqlalchemy_url(given).query) == expected


async def test_sqlalchemy_connects_with_the_converted_url(database_url: str) -> None:
    if database_url.startswith("postgres"):
        # The driver must accept the converted ssl option, not just SQLAlchemy: libpq
        # refuses an unknown name such as ssl= (the local server has no certificate).
        parsed = DatabaseURL(database_url)
        database_url = str(parsed.replace(options={**parsed.options, "ssl": "false"}))
    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(sa.text("SELECT 1 + 1"))).scalar_one() == 2
    finally:
        await engine.dispose()


async def test_migrate_refuses_an_in_memory_database() -> None:
    with pytest.raises(ConfigurationError, match="cannot migrate sqlite:///:memory:"):
        await migrate(Database("sqlite:///:memory:"), config="migrations-example/alembic.ini")
