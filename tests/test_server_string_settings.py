"""The dialect dbaccess compiles with knows the server's settings that change how a
string literal is written: PostgreSQL's ``standard_conforming_strings`` and MySQL's
``NO_BACKSLASH_ESCAPES``. A literal backslash in a Core query (here the ``ESCAPE``
character of a LIKE, which SQLAlchemy renders as a literal) must reach the server as
the server reads it, whichever SQLAlchemy is installed (2.0 and 2.1 assume differently).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseURL

from .conftest import skip_behind_pgbouncer

#: Driver keywords that turn backslash escapes in string literals on (PostgreSQL: the
#: old non-standard strings) or off (MySQL's NO_BACKSLASH_ESCAPES), by backend.
OTHER_MODE: dict[str, dict[str, Any]] = {
    "asyncpg": {"server_settings": {"standard_conforming_strings": "off"}},
    "psycopg": {"options": "-c standard_conforming_strings=off"},
    "aiomysql": {"sql_mode": "NO_BACKSLASH_ESCAPES"},
    "asyncmy": {"sql_mode": "NO_BACKSLASH_ESCAPES"},
}


def _driver(url: str) -> str:
    parsed = DatabaseURL(url)
    if parsed.scheme.endswith(("+psycopg", "+asyncmy")):
        return parsed.scheme.partition("+")[2]
    return {"postgresql": "asyncpg", "postgres": "asyncpg"}.get(parsed.dialect, "aiomysql")


def _escaped_like(value: str) -> Any:
    # "a\%c" with ESCAPE '\': a literal percent sign between a and c.
    return sa.select(sa.literal(value, sa.String).like("a\\%c", escape="\\"))


async def _check_escape(db: Database) -> None:
    assert bool(await db.fetch_val(_escaped_like("a%c"))) is True
    assert bool(await db.fetch_val(_escaped_like("abc"))) is False
    # The escape character itself, selected as a literal the compiler renders.
    backslash: Any = sa.select(sa.literal_column("1")).where(
        sa.literal("x\\y", sa.String).like("x\\\\y", escape="\\")
    )
    assert await db.fetch_val(backslash) == 1


async def test_backslash_escape_in_a_core_query(database: Database) -> None:
    await _check_escape(database)


async def test_backslash_escape_with_the_other_server_mode(database_url: str) -> None:
    if DatabaseURL(database_url).dialect == "sqlite":
        pytest.skip("SQLite has one way to read a string literal: no setting changes it")
    driver = _driver(database_url)
    if driver == "psycopg":
        skip_behind_pgbouncer(database_url, "startup options")
    async with Database(database_url, **OTHER_MODE[driver]) as db:
        if driver in ("asyncpg", "psycopg"):
            assert await db.fetch_val("SHOW standard_conforming_strings") == "off"
        else:
            mode = await db.fetch_val("SELECT @@SESSION.sql_mode")
            assert "NO_BACKSLASH_ESCAPES" in mode
        await _check_escape(db)
