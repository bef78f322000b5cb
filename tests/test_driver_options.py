"""Options encode/databases 0.9 accepted for each driver, in the URL and as keywords.

Each is checked for its effect on a real connection: libpq's ``sslmode`` and asyncpg's
``timeout`` on PostgreSQL; ``ssl``, ``unix_socket``, ``charset`` on MySQL; sqlite3's
``check_same_thread``, ``timeout``, ``uri``, ``cached_statements``, ``detect_types`` and
SQLite's URI parameters ``mode`` and ``cache``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dbaccess import (
    ConfigurationError,
    Database,
    DatabaseURL,
    OperationalError,
    ProgrammingError,
)

from .test_options import with_options


def asyncpg_only(database_url: str) -> None:
    """encode/databases passed these to asyncpg; psycopg takes libpq's own parameters
    (sslmode, connect_timeout, host... as keyword options of its connect())."""
    if DatabaseURL(database_url).driver == "psycopg":
        pytest.skip("an asyncpg option of encode/databases; psycopg takes libpq's parameters")


def only(dialect: str, wanted: str) -> None:
    if dialect != wanted:
        pytest.skip(f"a {wanted} option")


# -- PostgreSQL --------------------------------------------------------------------------


async def uses_ssl(db: Database) -> bool:
    return bool(
        await db.fetch_val(
            "SELECT coalesce(bool_or(ssl), false) FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    )


async def server_offers_ssl(database_url: str) -> bool:
    async with Database(database_url) as db:
        return bool(await db.fetch_val("SELECT current_setting('ssl') = 'on'"))


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
async def test_postgresql_sslmode_that_needs_no_tls(
    database_url: str, dialect: str, mode: str
) -> None:
    only(dialect, "postgresql")
    asyncpg_only(database_url)
    offers = await server_offers_ssl(database_url)
    async with Database(with_options(database_url, sslmode=mode)) as db:
        assert await uses_ssl(db) is (offers and mode == "prefer")
    async with Database(database_url, sslmode=mode) as db:  # as a keyword too
        assert await db.fetch_val("SELECT 1") == 1


async def test_postgresql_sslmode_require(database_url: str, dialect: str) -> None:
    only(dialect, "postgresql")
    asyncpg_only(database_url)
    db = Database(with_options(database_url, sslmode="require"))
    if await server_offers_ssl(database_url):
        async with db:
            assert await uses_ssl(db)
    else:
        # The same answer as ssl=require: the server refuses TLS, dbaccess says so.
        with pytest.raises(OperationalError):
            await db.connect()
        assert not db.is_connected


def test_sslmode_is_checked_like_ssl() -> None:
    with pytest.raises(ConfigurationError, match="sslmode='sometimes'"):
        Database("postgresql://u@h/d?sslmode=sometimes")
    with pytest.raises(ConfigurationError, match="'ssl' and 'sslmode'"):
        Database("postgresql://u@h/d?ssl=true&sslmode=require")
    # Only PostgreSQL has it: elsewhere it is misspelt ssl.
    with pytest.raises(ConfigurationError, match="did you mean 'ssl'"):
        Database("mysql://u@h/d?sslmode=require")
    with pytest.raises(ConfigurationError, match="'sslmode'"):
        Database("sqlite:///:memory:?sslmode=disable")


async def test_postgresql_timeout_is_connect_timeout(database_url: str, dialect: str) -> None:
    # asyncpg.connect()'s timeout, passed as a keyword through encode/databases.
    only(dialect, "postgresql")
    asyncpg_only(database_url)
    async with Database(database_url, timeout=7) as db:
        assert await db.fetch_val("SELECT 1") == 1
    with pytest.raises(ConfigurationError, match="'timeout' and 'connect_timeout'"):
        Database(database_url, timeout=7, connect_timeout=3)
    with pytest.raises(ConfigurationError, match="timeout=-1"):
        Database(database_url, timeout=-1)


async def test_postgresql_keywords_replace_the_url_parts(
    database_url: str, dialect: str, secret_password: str
) -> None:
    # encode/databases passed them to asyncpg over the URL's: a password kept out of it.
    only(dialect, "postgresql")
    asyncpg_only(database_url)
    url = DatabaseURL(database_url)
    elsewhere = url.replace(hostname="192.0.2.1", port=1, username="nobody", database="nope")
    db = Database(
        str(elsewhere),
        host=url.hostname,
        port=str(url.port or 5432),
        user=url.username,
        password=secret_password,
        database=url.database,
    )
    assert secret_password not in repr(db)
    async with db:
        assert await db.fetch_val("SELECT current_database()") == url.database
        assert await db.fetch_val("SELECT current_user") == url.username
    # A password the server is never asked for stays out of the error.
    db = Database(str(elsewhere), password=secret_password, connect_timeout=0.5)
    with pytest.raises(OperationalError) as info:
        await db.connect()
    assert secret_password not in str(info.value)
    assert secret_password not in repr(info.value)


@pytest.mark.parametrize(
    ("keyword", "value"), [("port", "high"), ("user", 5), ("password", 5), ("host", 1)]
)
def test_postgresql_url_part_keywords_are_checked(keyword: str, value: Any) -> None:
    keywords: dict[str, Any] = {keyword: value}
    with pytest.raises(ConfigurationError, match=keyword):
        Database("postgresql://u@h/d", **keywords)


def test_asyncpg_reset_hook_says_what_to_use_instead() -> None:
    async def reset(conn: Any) -> None:
        return None

    with pytest.raises(ConfigurationError, match=r"'reset'.*setup=") as info:
        Database("postgresql://u@h/d", reset=reset)
    assert "not supported" in str(info.value)


# -- MySQL -------------------------------------------------------------------------------


async def test_mysql_ssl_false_in_the_url(database_url: str, dialect: str) -> None:
    only(dialect, "mysql")
    async with Database(with_options(database_url, ssl="false")) as db:
        cipher = await db.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cipher is not None
        assert cipher[1] == ""


def exists(path: str) -> bool:
    return os.path.exists(path)


async def test_mysql_unix_socket(database_url: str, dialect: str) -> None:
    only(dialect, "mysql")
    async with Database(database_url) as db:
        socket = await db.fetch_val("SELECT @@socket")
    if not socket or not exists(socket):
        pytest.skip("the server has no Unix socket on this machine")
    url = DatabaseURL(database_url).replace(hostname="localhost", port=None)
    async with Database(with_options(str(url), unix_socket=socket)) as db:
        host = await db.fetch_val(
            "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()"
        )
        assert host == "localhost"  # a TCP connection shows the client's address and port


async def test_mysql_charset_in_the_url(database_url: str, dialect: str) -> None:
    only(dialect, "mysql")
    async with Database(with_options(database_url, charset="latin1")) as db:
        assert await db.fetch_val("SELECT @@character_set_client") == "latin1"


async def test_mysql_pool_options_of_databases(database_url: str, dialect: str) -> None:
    # The URL options encode/databases documented for MySQL.
    only(dialect, "mysql")
    url = with_options(database_url, min_size="2", max_size="3", pool_recycle="3600")
    async with Database(url) as db:
        assert db.pool_stats.size == 2
        assert db.pool_stats.max_size == 3


def test_mysql_cursorclass_is_managed() -> None:
    # Rows must be tuples for dbaccess to build records; a DictCursor would break them.
    with pytest.raises(ConfigurationError, match="'cursorclass' is managed"):
        Database("mysql://u@h/d", cursorclass=dict)


# -- SQLite ------------------------------------------------------------------------------


def test_sqlite_options_outside_sqlite_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="'check_same_thread'"):
        Database("postgresql://u@h/d?check_same_thread=false")
    with pytest.raises(ConfigurationError, match="'mode'"):
        Database("mysql://u@h/d?mode=memory")


async def test_sqlite_check_same_thread(database_url: str, dialect: str) -> None:
    only(dialect, "sqlite")
    # The FastAPI tutorials' URL option. With it, sqlite3 lets another thread than the
    # connection's own use it; without it, it refuses.
    for url, keywords in (
        (with_options(database_url, check_same_thread="false"), {}),
        (database_url, {"check_same_thread": False}),
    ):
        async with Database(url, **keywords) as db, db.connection() as connection:
            sqlite_connection = connection.raw_connection._conn
            assert sqlite_connection.execute("SELECT 1").fetchone() == (1,)
    async with Database(database_url) as db, db.connection() as connection:
        with pytest.raises(sqlite3.ProgrammingError, match="thread"):
            connection.raw_connection._conn.execute("SELECT 1")


@pytest.mark.parametrize("source", ["url", "keyword"])
async def test_sqlite_timeout_is_the_busy_timeout(
    database_url: str, dialect: str, source: str
) -> None:
    only(dialect, "sqlite")
    if source == "url":
        db = Database(with_options(database_url, timeout="0.25"))
    else:
        db = Database(database_url, timeout=0.25)
    async with db:
        assert await db.fetch_val("PRAGMA busy_timeout") == 250
    with pytest.raises(ConfigurationError, match="'busy_timeout' and 'timeout'"):
        Database(database_url, busy_timeout=1, timeout=2)


async def test_sqlite_shared_memory_uri(dialect: str, database_url: str) -> None:
    # SQLAlchemy's and sqlite3's way to name an in-memory database that several
    # connections share: one database for the whole pool, as long as one Database using it
    # is connected.
    only(dialect, "sqlite")
    name = f"dbaccess_shared_{os.getpid()}"
    url = f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true"
    async with Database(url, min_size=0, max_size=3, max_queries=1) as db:
        await db.execute("CREATE TABLE shared_t (x INTEGER)")
        await db.execute("INSERT INTO shared_t VALUES (1)")
        # max_queries=1: each of these ran on a connection of its own.
        assert await db.fetch_val("SELECT count(*) FROM shared_t") == 1
        async with Database(url) as other:  # the same name: the same database
            assert await other.fetch_val("SELECT count(*) FROM shared_t") == 1
    async with Database(url) as db:  # nobody held it: it is gone
        with pytest.raises(ProgrammingError, match="no such table"):
            await db.fetch_val("SELECT count(*) FROM shared_t")


@pytest.mark.parametrize(
    "url",
    ["sqlite:///file::memory:?cache=shared", "sqlite:///file:dbaccess_m?mode=memory"],
)
async def test_sqlite_memory_uris_are_shared_by_the_pool(
    dialect: str, database_url: str, url: str
) -> None:
    # Without cache=shared, sqlite3 would give each connection a database of its own:
    # dbaccess's pool shares it, as it does :memory:.
    only(dialect, "sqlite")
    async with Database(url, max_size=2) as db:
        await db.execute("CREATE TABLE m (x INTEGER)")
        results = await asyncio.gather(*(count_in_own_connection(db) for _ in range(2)))
        assert results == [0, 0]


async def count_in_own_connection(db: Database) -> Any:
    async with db.connection() as connection:
        await asyncio.sleep(0.01)  # both tasks hold a connection at once
        return await connection.fetch_val("SELECT count(*) FROM m")


async def make_file_database(path: Path) -> None:
    async with Database(f"sqlite:///{path}") as db:
        await db.execute("CREATE TABLE f (x INTEGER)")
        await db.execute("INSERT INTO f VALUES (1)")


async def test_sqlite_mode_ro(dialect: str, database_url: str, tmp_path: Path) -> None:
    only(dialect, "sqlite")
    path = tmp_path / "ro.db"
    await make_file_database(path)
    async with Database(f"sqlite:///{path}?mode=ro") as db:
        assert await db.fetch_val("SELECT x FROM f") == 1
        with pytest.raises(OperationalError, match="readonly"):
            await db.execute("INSERT INTO f VALUES (2)")
    async with Database(f"sqlite:///{path}", mode="ro") as db:
        with pytest.raises(OperationalError, match="readonly"):
            await db.execute("INSERT INTO f VALUES (2)")


async def test_sqlite_mode_rw_does_not_create(
    dialect: str, database_url: str, tmp_path: Path
) -> None:
    only(dialect, "sqlite")
    missing = tmp_path / "missing.db"
    with pytest.raises(OperationalError, match="unable to open"):
        await Database(f"sqlite:///{missing}?mode=rw").connect()
    assert not missing.exists()
    async with Database(f"sqlite:///{missing}?mode=rwc") as db:  # the default: create
        assert await db.fetch_val("SELECT 1") == 1
    assert missing.exists()


async def test_sqlite_cache_on_a_file(dialect: str, database_url: str, tmp_path: Path) -> None:
    only(dialect, "sqlite")
    path = tmp_path / "cache.db"
    await make_file_database(path)
    for cache in ("private", "shared"):
        async with Database(f"sqlite:///{path}?cache={cache}") as db:
            assert await db.fetch_val("SELECT x FROM f") == 1


async def test_sqlite_uri_false_takes_the_name_literally(
    dialect: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only(dialect, "sqlite")
    monkeypatch.chdir(tmp_path)
    async with Database("sqlite:///file:literal.db?uri=false") as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
    assert (tmp_path / "file:literal.db").exists()
    async with Database("sqlite:///file:uri.db?uri=true") as db:  # a URI naming uri.db
        await db.execute("CREATE TABLE t (x INTEGER)")
    assert (tmp_path / "uri.db").exists()


async def test_sqlite_detect_types_and_cached_statements(dialect: str, database_url: str) -> None:
    only(dialect, "sqlite")
    sqlite3.register_converter("dbaccess_tagged", lambda value: b"tagged:" + value)
    url = with_options(
        database_url, detect_types=str(sqlite3.PARSE_COLNAMES), cached_statements="8"
    )
    async with Database(url) as db:
        assert await db.fetch_val("SELECT 'x' AS \"v [dbaccess_tagged]\"") == b"tagged:x"
    async with Database(database_url) as db:  # without it, the column name is just a name
        assert await db.fetch_val("SELECT 'x' AS \"v [dbaccess_tagged]\"") == "x"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("mode", "memroy"),
        ("cache", "sometimes"),
        ("check_same_thread", "maybe"),
        ("uri", "perhaps"),
        ("timeout", "-1"),
        ("cached_statements", "many"),
    ],
)
def test_sqlite_bad_values_are_named(option: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=option) as info:
        Database(f"sqlite:///:memory:?{option}={value}")
    assert value in str(info.value)
