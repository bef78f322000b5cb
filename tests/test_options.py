"""Database(...) options: checked strictly at construction, and honoured once connected.

Construction does not connect, so the first tests need no server; the last ones use
the `database_url` fixture to check that options reach the pool and the driver.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from dbaccess import ConfigurationError, Database, DatabaseURL, OperationalError

from .conftest import skip_behind_pgbouncer

# One URL per backend (and driver); nothing listens there, nothing is opened.
SCHEMES = {
    "postgresql": "postgresql://u@127.0.0.1/d",
    "psycopg": "postgresql+psycopg://u@127.0.0.1/d",
    "mysql": "mysql://u@127.0.0.1/d",
    "asyncmy": "mysql+asyncmy://u@127.0.0.1/d",
    "sqlite": "sqlite:///:memory:",
}
BACKEND_URLS = list(SCHEMES.values())


def with_options(url: str, **options: Any) -> str:
    """The URL with these options added to the ones it already has."""
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


# -- schemes -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql+pg8000://h/d", "oracle://h/d", "mysql+mysqldb://h/d"])
def test_unknown_scheme_lists_the_supported_ones(url: str) -> None:
    scheme = DatabaseURL(url).scheme
    with pytest.raises(ConfigurationError) as info:
        Database(url)
    message = str(info.value)
    assert repr(scheme) in message
    for supported in ("postgresql", "mysql+asyncmy", "sqlite", "mariadb"):
        assert supported in message


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_construction_does_not_connect(url: str) -> None:
    db = Database(with_options(url, min_size=3))
    assert not db.is_connected
    assert db.url == with_options(url, min_size=3)


# -- URL options ---------------------------------------------------------------------


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_unknown_url_option_is_named(url: str) -> None:
    with pytest.raises(ConfigurationError, match="'pool_size'") as info:
        Database(with_options(url, pool_size="5"))
    assert "min_size" in str(info.value)  # and the known options are listed


@pytest.mark.parametrize("url", BACKEND_URLS)
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("min_size", "-1"),
        ("min_size", "two"),
        ("max_size", "0"),
        ("ssl", "maybe"),
        ("connect_timeout", "abc"),
        ("connect_timeout", "-5"),
        ("acquire_timeout", "nan"),
        ("command_timeout", "0"),
    ],
)
def test_bad_option_value_names_option_and_value(url: str, option: str, value: str) -> None:
    if DatabaseURL(url).dialect == "sqlite" and option == "ssl":
        pytest.skip("SQLite refuses the option whatever its value (tested below)")
    with pytest.raises(ConfigurationError) as info:
        Database(with_options(url, **{option: value}))
    assert option in str(info.value)
    assert value in str(info.value)


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_bad_option_value_as_keyword(url: str) -> None:
    with pytest.raises(ConfigurationError, match="max_size") as info:
        Database(url, max_size=0)
    assert "0" in str(info.value)
    with pytest.raises(ConfigurationError, match="min_size"):
        Database(url, min_size=True)  # a bool is not a size


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_min_size_larger_than_max_size(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Database(with_options(url, min_size="5", max_size="2"))
    message = str(info.value)
    assert "min_size" in message
    assert "max_size" in message
    assert "5" in message
    assert "2" in message


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_keyword_overrides_url_option(url: str) -> None:
    # The keyword wins over the URL, so together they are refused as min > max.
    with pytest.raises(ConfigurationError, match="min_size"):
        Database(with_options(url, min_size="1", max_size="2"), min_size=3)


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_good_options_are_accepted(url: str) -> None:
    options = {"min_size": "0", "max_size": "3", "acquire_timeout": "1.5", "connect_timeout": "2"}
    db = Database(with_options(url, **options))
    assert not db.is_connected


def test_sqlite_refuses_ssl() -> None:
    # SQLite has no network connection to encrypt.
    with pytest.raises(ConfigurationError, match="ssl"):
        Database(with_options("sqlite:///:memory:", ssl="1"))
    keywords: dict[str, Any] = {"ssl": 1}
    with pytest.raises(ConfigurationError, match="ssl"):
        Database("sqlite:///:memory:", **keywords)


def test_mysql_refuses_ssl_modes_only_postgresql_has() -> None:
    # libpq's "prefer" (try TLS, fall back to plain) has no equivalent in MySQL drivers.
    with pytest.raises(ConfigurationError, match="prefer"):
        Database("mysql://u@h/d?ssl=prefer")
    Database("postgresql://u@h/d?ssl=prefer")  # fine on PostgreSQL


# -- keyword options -----------------------------------------------------------------

DRIVER_KEYWORDS: dict[str, dict[str, Any]] = {
    "postgresql": {"server_settings": {"application_name": "dbaccess-h3"}},
    # libpq's connection parameters are psycopg's keywords.
    "psycopg": {"options": "-c application_name=dbaccess-h3"},
    "mysql": {"sql_mode": "ANSI_QUOTES"},
    "asyncmy": {"sql_mode": "ANSI_QUOTES"},
    "sqlite": {"cached_statements": 16},
}


@pytest.mark.parametrize("backend", list(SCHEMES))
def test_driver_keywords_are_accepted(backend: str) -> None:
    Database(SCHEMES[backend], **DRIVER_KEYWORDS[backend])


@pytest.mark.parametrize("url", BACKEND_URLS)
def test_unknown_keyword_is_named(url: str) -> None:
    with pytest.raises(ConfigurationError, match="'pool_recycel'"):
        Database(url, pool_recycel=3600)


def test_driver_keyword_is_not_a_url_option() -> None:
    # URL options are text; driver keywords can take any Python value, so they are
    # keywords only.
    with pytest.raises(ConfigurationError, match="'sql_mode'"):
        Database("mysql://u@h/d?sql_mode=ANSI_QUOTES")


@pytest.mark.parametrize(
    ("url", "keyword"),
    [
        # asyncpg's password, database (and host, port, user) keywords replace the
        # URL's parts, and timeout is connect_timeout, as in encode/databases.
        (SCHEMES["postgresql"], "dsn"),
        (SCHEMES["psycopg"], "dbname"),
        (SCHEMES["psycopg"], "autocommit"),
        (SCHEMES["psycopg"], "sslmode"),
        (SCHEMES["mysql"], "host"),
        (SCHEMES["mysql"], "autocommit"),
        (SCHEMES["mysql"], "user"),
        (SCHEMES["asyncmy"], "host"),
        (SCHEMES["asyncmy"], "autocommit"),
        (SCHEMES["sqlite"], "isolation_level"),
        (SCHEMES["sqlite"], "database"),
    ],
)
def test_managed_keywords_are_refused(url: str, keyword: str) -> None:
    keywords: dict[str, Any] = {keyword: "x"}
    with pytest.raises(ConfigurationError, match=f"'{keyword}'") as info:
        Database(url, **keywords)
    assert "managed" in str(info.value)


# -- missing drivers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver", "module", "extra"),
    [
        ("postgresql://h/d", "asyncpg", "dbaccess.backends.asyncpg", "postgresql"),
        ("postgresql+psycopg://h/d", "psycopg", "dbaccess.backends.psycopg", "psycopg"),
        ("mysql://h/d", "aiomysql", "dbaccess.backends.aiomysql", "mysql"),
        ("mysql+asyncmy://h/d", "asyncmy", "dbaccess.backends.asyncmy", "asyncmy"),
        ("sqlite:///:memory:", "aiosqlite", "dbaccess.backends.aiosqlite", "sqlite"),
    ],
)
def test_missing_driver_names_the_pip_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, driver: str, module: str, extra: str
) -> None:
    # Not a mock of the driver: this only makes `import <driver>` fail, as it does
    # when the package is not installed.
    monkeypatch.setitem(sys.modules, driver, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ConfigurationError) as info:
        Database(url)
    message = str(info.value)
    assert driver in message
    assert f"dbaccess[{extra}]" in message
    assert isinstance(info.value.__cause__, ImportError)


# -- options reach the pool and the driver --------------------------------------------


async def test_pool_sizes_reach_the_pool(database_url: str) -> None:
    async with Database(with_options(database_url, min_size="2", max_size="3")) as db:
        stats = db.pool_stats
        assert stats.size == 2
        assert stats.idle == 2
        assert stats.max_size == 3


async def test_pool_sizes_as_keywords(database_url: str) -> None:
    async with Database(database_url, min_size=0, max_size=2) as db:
        assert db.pool_stats.size == 0
        assert db.pool_stats.max_size == 2
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.size == 1  # opened on demand


async def test_max_size_bounds_the_pool(database_url: str) -> None:
    async with Database(database_url, min_size=1, max_size=2) as db:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with db.connection() as connection:
                assert await connection.fetch_val("SELECT 1") == 1
                if db.pool_stats.in_use == 2:
                    held.set()
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(2)]
        await held.wait()
        third = asyncio.create_task(db.fetch_val("SELECT 2"))
        for _ in range(1000):  # let the third caller reach the queue
            if db.pool_stats.waiting:
                break
            await asyncio.sleep(0)
        assert db.pool_stats.waiting == 1
        assert db.pool_stats.size == 2  # the third caller waits, no third connection
        release.set()
        await asyncio.gather(*tasks)
        assert await third == 2
        assert db.pool_stats.size == 2


async def test_acquire_timeout(database_url: str) -> None:
    async with Database(database_url, max_size=1, acquire_timeout=0.2) as db:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await held.wait()
        with pytest.raises(OperationalError, match="waiting for a connection"):
            await asyncio.create_task(db.fetch_val("SELECT 1"))
        assert db.pool_stats.waiting == 0
        release.set()
        await holder
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.in_use == 0


# A statement that runs for seconds on each backend (SQLite has no sleep(): count far).
LONG_STATEMENTS = {
    "postgresql": "SELECT pg_sleep(5)",
    "mysql": "SELECT SLEEP(5)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM (SELECT x FROM c LIMIT 500000000)",
}


async def test_command_timeout_cancels_a_long_statement(database_url: str, dialect: str) -> None:
    sleep = LONG_STATEMENTS[dialect]
    async with Database(database_url, command_timeout=0.2) as db:
        with pytest.raises(OperationalError) as info:
            await db.fetch_val(sleep)
        # The message says what happened (not an empty string).
        assert "time" in str(info.value).lower()
        assert db.pool_stats.in_use == 0
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.in_use == 0


async def test_command_timeout_in_url(database_url: str, dialect: str) -> None:
    sleep = LONG_STATEMENTS[dialect]
    async with Database(with_options(database_url, command_timeout="0.2")) as db:
        with pytest.raises(OperationalError):
            await db.fetch_val(sleep)
        assert await db.fetch_val("SELECT 1") == 1


async def test_driver_keyword_reaches_the_driver(database_url: str, dialect: str) -> None:
    scheme = DatabaseURL(database_url).scheme
    backend = scheme.partition("+")[2] if scheme.endswith(("+asyncmy", "+psycopg")) else dialect
    if backend == "psycopg":
        skip_behind_pgbouncer(database_url, "startup options")
    async with Database(database_url, **DRIVER_KEYWORDS[backend]) as db:
        if dialect == "postgresql":
            assert await db.fetch_val("SHOW application_name") == "dbaccess-h3"
        elif dialect == "mysql":
            assert "ANSI_QUOTES" in await db.fetch_val("SELECT @@SESSION.sql_mode")
        else:
            # cached_statements has no visible effect; the connection opened with it.
            assert await db.fetch_val("SELECT 1") == 1


async def test_postgresql_url_options_reach_the_driver(database_url: str, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("application_name is a PostgreSQL option")
    url = with_options(database_url, application_name="dbaccess-h3-url")
    async with Database(url) as db:
        assert await db.fetch_val("SHOW application_name") == "dbaccess-h3-url"
