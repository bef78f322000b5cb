"""What only the psycopg backend has: libpq's options (sslmode, prepared statements) and
the way its options reach psycopg. Everything it shares with asyncpg runs in the rest of
the suite, on every PostgreSQL URL."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from dbaccess import ConfigurationError, Database, DatabaseURL, OperationalError

from .conftest import skip_behind_pgbouncer
from .test_options import with_options

PSYCOPG_URL = "postgresql+psycopg://u@127.0.0.1/d"


@pytest.fixture
def psycopg_url(database_url: str) -> str:
    if DatabaseURL(database_url).driver != "psycopg":
        pytest.skip("options of the psycopg driver (libpq's sslmode, prepared statements)")
    return database_url


def libpq_option(raw: Any, keyword: str) -> str | None:
    """The value libpq used for one of its connection parameters."""
    for option in raw.pgconn.info:
        if option.keyword.decode() == keyword:
            return None if option.val is None else str(option.val.decode())
    raise AssertionError(f"libpq has no parameter {keyword!r}")


def test_an_ssl_context_is_refused_with_what_to_give_instead() -> None:
    context = ssl.create_default_context()
    with pytest.raises(ConfigurationError) as info:
        Database(PSYCOPG_URL, ssl=context)
    message = str(info.value)
    assert "SSLContext" in message
    assert "sslrootcert" in message


def test_an_unknown_ssl_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ssl"):
        Database(with_options(PSYCOPG_URL, ssl="sometimes"))


@pytest.mark.parametrize(("given", "sslmode"), [("false", "disable"), ("prefer", "prefer")])
async def test_ssl_reaches_libpq_as_its_sslmode(psycopg_url: str, given: str, sslmode: str) -> None:
    async with Database(with_options(psycopg_url, ssl=given)) as db, db.connection() as conn:
        assert libpq_option(conn.raw_connection, "sslmode") == sslmode
        assert await conn.fetch_val("SELECT 1") == 1


async def test_ssl_required_of_a_server_without_it_fails_to_connect(psycopg_url: str) -> None:
    async with Database(psycopg_url) as db:
        if await db.fetch_val("SHOW ssl") == "on":
            pytest.skip("the test server accepts SSL connections")
    db = Database(with_options(psycopg_url, ssl="true", min_size="0"))
    await db.connect()
    try:
        with pytest.raises(OperationalError, match="SSL"):
            await db.fetch_val("SELECT 1")
    finally:
        await db.disconnect()


async def test_statement_cache_size_zero_prepares_nothing(psycopg_url: str) -> None:
    # What PgBouncer's transaction mode needs, as with asyncpg's statement_cache_size=0.
    async with Database(with_options(psycopg_url, statement_cache_size="0")) as db:
        for n in range(8):  # past psycopg's prepare_threshold (5 executions)
            assert await db.fetch_val("SELECT :n", {"n": n}) == n
        async with db.connection() as conn:
            assert conn.raw_connection.prepare_threshold is None
            prepared = await conn.fetch_val("SELECT count(*) FROM pg_prepared_statements")
            assert prepared == 0


async def test_statement_cache_size_bounds_the_prepared_statements(
    psycopg_url: str, one_session: None
) -> None:
    async with Database(psycopg_url, statement_cache_size=3, max_size=1) as db:
        for table in ("pg_class", "pg_type", "pg_proc", "pg_namespace", "pg_attribute"):
            for _ in range(6):  # prepared from the sixth execution on
                await db.fetch_all(f"SELECT 1 FROM {table} LIMIT :n", {"n": 1})
        async with db.connection() as conn:
            assert conn.raw_connection.prepared_max == 3
            prepared = await conn.fetch_val("SELECT count(*) FROM pg_prepared_statements")
            # Five statements were prepared; psycopg deallocates the oldest past three
            # (one of them lazily, with the next statement).
            assert 0 < prepared < 5


async def test_application_name_and_libpq_keywords_reach_the_server(psycopg_url: str) -> None:
    skip_behind_pgbouncer(psycopg_url, "startup options")
    url = with_options(psycopg_url, application_name="dbaccess-psycopg")
    async with Database(url, options="-c search_path=pg_catalog,public") as db:
        assert await db.fetch_val("SHOW application_name") == "dbaccess-psycopg"
        assert await db.fetch_val("SELECT current_schemas(false)") == ["pg_catalog", "public"]


async def test_several_statements_without_parameters_run_as_one(psycopg_url: str) -> None:
    # Without arguments psycopg sends the text through the simple protocol, which runs
    # several statements; a % in it is the operator, not a placeholder.
    async with Database(psycopg_url) as db, db.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (7 % 4)")
        assert await conn.fetch_val("SELECT x FROM t") == 3
