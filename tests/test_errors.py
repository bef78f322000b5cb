"""Errors: the same mistake raises the same dbaccess error on every backend, the error
is also the driver's own, the pool survives it, and values are never SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import (
    Database,
    DatabaseError,
    DatabaseURL,
    DataError,
    DBAccessError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    TransactionState,
)

from .conftest import create_tables, drop_tables, everything, notes, users

COUNT_USERS = "SELECT COUNT(*) FROM dbaccess_users"
INSERT_USER = "INSERT INTO dbaccess_users (name) VALUES (:name)"


@dataclass(frozen=True)
class DriverErrors:
    """The driver's own exception classes for the backend under test."""

    base: type[BaseException]
    unique: type[BaseException]


def driver_errors(database_url: str) -> DriverErrors:
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        return DriverErrors(sqlite3.Error, sqlite3.IntegrityError)
    if url.driver == "psycopg":
        import psycopg

        return DriverErrors(psycopg.Error, psycopg.errors.UniqueViolation)
    if url.dialect in ("postgresql", "postgres"):
        import asyncpg

        return DriverErrors(asyncpg.PostgresError, asyncpg.UniqueViolationError)
    if url.driver == "asyncmy":
        import asyncmy.errors

        return DriverErrors(asyncmy.errors.Error, asyncmy.errors.IntegrityError)
    import pymysql

    return DriverErrors(pymysql.err.Error, pymysql.err.IntegrityError)


async def assert_pool_whole(db: Database) -> None:
    """No connection is left lent out, and the next query works."""
    assert db.pool_stats.in_use == 0
    assert await db.fetch_val("SELECT 1") == 1
    assert db.pool_stats.in_use == 0


def assert_translated(error: BaseException, driver_base: type[BaseException]) -> None:
    """A translated driver error: keeps the driver's error as .orig and __cause__."""
    assert isinstance(error, DBAccessError)
    assert isinstance(error, driver_base)
    assert error.orig is not None
    assert error.__cause__ is error.orig
    assert isinstance(error.orig, driver_base)
    assert not isinstance(error.orig, DBAccessError)
    assert str(error) == str(error.orig)


def assert_raised_by_dbaccess(error: BaseException, driver_base: type[BaseException]) -> None:
    """An error dbaccess raised itself, before the query reached the driver."""
    assert isinstance(error, DBAccessError)
    assert error.orig is None
    assert not isinstance(error, driver_base)


# -- integrity -----------------------------------------------------------------------


async def test_unique_violation_is_integrity_error_and_driver_error(
    db: Database, database_url: str, dialect: str
) -> None:
    errors = driver_errors(database_url)
    await db.execute(users.insert(), {"name": "alice"})
    with pytest.raises(IntegrityError) as info:
        await db.execute(users.insert(), {"name": "alice"})
    error = info.value
    assert isinstance(error, errors.unique)
    assert isinstance(error.orig, errors.unique)
    assert_translated(error, errors.base)
    assert "unique" in str(error).lower() or "duplicate" in str(error).lower()
    # The driver's details stay reachable on the translated error.
    if dialect == "postgresql":
        assert getattr(error, "sqlstate", None) == "23505"
    elif dialect == "mysql":
        assert error.args[0] == 1062  # ER_DUP_ENTRY
    else:
        assert getattr(error, "sqlite_errorname", "SQLITE_CONSTRAINT_UNIQUE") == (
            "SQLITE_CONSTRAINT_UNIQUE"  # the attribute exists from Python 3.11
        )
    assert await db.fetch_val(COUNT_USERS) == 1
    await assert_pool_whole(db)


async def test_old_driver_except_clauses_keep_working(db: Database, database_url: str) -> None:
    errors = driver_errors(database_url)
    await db.execute(INSERT_USER, {"name": "bob"})
    caught: BaseException | None = None
    try:
        await db.execute(INSERT_USER, {"name": "bob"})
    except errors.unique as exc:  # code written for the driver, before dbaccess
        caught = exc
    assert isinstance(caught, IntegrityError)
    await assert_pool_whole(db)


async def test_unique_violation_in_execute_many_is_atomic(db: Database) -> None:
    rows = [{"name": "a"}, {"name": "b"}, {"name": "a"}]
    with pytest.raises(IntegrityError):
        await db.execute_many(INSERT_USER, rows)
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("INSERT INTO dbaccess_users (name) VALUES (NULL)", id="raw"),
        pytest.param(users.insert().values(name=None), id="core"),
    ],
)
async def test_not_null_violation(db: Database, database_url: str, query: Any) -> None:
    with pytest.raises(IntegrityError) as info:
        await db.execute(query)
    assert_translated(info.value, driver_errors(database_url).base)
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


# -- bad SQL -------------------------------------------------------------------------

BAD_SQL = [
    pytest.param("SELEC name FROM dbaccess_users", id="syntax"),
    pytest.param("SELECT name FROM dbaccess_no_such_table", id="unknown-table"),
    pytest.param("SELECT no_such_column FROM dbaccess_users", id="unknown-column"),
]


@pytest.mark.parametrize("sql", BAD_SQL)
async def test_bad_sql_is_programming_error(
    db: Database, database_url: str, dialect: str, sql: str
) -> None:
    with pytest.raises(ProgrammingError) as info:
        await db.fetch_all(sql)
    assert_translated(info.value, driver_errors(database_url).base)
    if dialect == "sqlite":
        # sqlite3 raises OperationalError for bad SQL; code that catches it still works.
        assert isinstance(info.value, sqlite3.OperationalError)
    await assert_pool_whole(db)


@pytest.mark.parametrize("sql", BAD_SQL)
async def test_bad_sql_through_every_method(db: Database, sql: str) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: db.fetch_one(sql),
        lambda: db.fetch_val(sql),
        lambda: db.execute(sql),
        lambda: db.execute_result(sql),
    ]
    for call in calls:
        with pytest.raises(ProgrammingError):
            await call()
        await assert_pool_whole(db)
    with pytest.raises(ProgrammingError):
        async for _ in db.iterate(sql):
            pass  # pragma: no cover - the query fails before any row
    await assert_pool_whole(db)


async def test_sqlite_bad_sql_caught_as_sqlite3_operational_error(
    db: Database, dialect: str
) -> None:
    if dialect != "sqlite":
        pytest.skip("sqlite3.OperationalError is SQLite's class for bad SQL")
    try:
        await db.fetch_all("SELECT * FROM dbaccess_no_such_table")
    except sqlite3.OperationalError as exc:  # as code written for sqlite3 does
        assert isinstance(exc, ProgrammingError)
    else:  # pragma: no cover - the query must fail
        pytest.fail("no error for an unknown table")


# -- values the column cannot hold --------------------------------------------------

BAD_VALUES = [
    pytest.param(users.insert(), {"name": "x" * 51}, "name", id="too-long"),
    pytest.param(everything.insert(), {"integer": "abc"}, "integer", id="wrong-type"),
    pytest.param(everything.insert(), {"integer": 2**40}, "integer", id="out-of-range"),
    pytest.param(everything.insert(), {"numeric": 10**12}, "numeric", id="numeric-overflow"),
]


@pytest.mark.parametrize(("query", "values", "column"), BAD_VALUES)
async def test_value_the_column_cannot_hold(
    db: Database, dialect: str, query: Any, values: dict[str, Any], column: str
) -> None:
    table = query.table
    if dialect == "sqlite":
        # SQLite does not enforce declared lengths, types or ranges: the value is
        # stored as given (type affinity), so there is no error to translate.
        await db.execute(query, values)
        stored = await db.fetch_val(sa.select(sa.cast(table.c[column], sa.String)))
        assert stored == str(values[column])
    else:
        with pytest.raises(DataError):
            await db.execute(query, values)
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(table)) == 0
    await assert_pool_whole(db)


# -- parameters ----------------------------------------------------------------------


async def test_missing_parameter_raw_sql(db: Database, database_url: str) -> None:
    errors = driver_errors(database_url)
    # The SQL is bad too: the error names the parameter, so nothing reached the database.
    sql = "SELEC * FROM dbaccess_users WHERE name = :wanted"
    for values in ({}, None, {"other": 1}):
        with pytest.raises(ProgrammingError, match="'wanted'") as info:
            await db.fetch_all(sql, values)
        assert_raised_by_dbaccess(info.value, errors.base)
    await assert_pool_whole(db)


async def test_unknown_parameter_raw_sql(db: Database, database_url: str) -> None:
    with pytest.raises(ProgrammingError, match="'nmae'") as info:
        await db.execute(INSERT_USER, {"name": "carol", "nmae": "carol"})
    assert_raised_by_dbaccess(info.value, driver_errors(database_url).base)
    assert await db.fetch_val(COUNT_USERS) == 0  # nothing ran
    with pytest.raises(ProgrammingError, match="'extra'"):
        await db.fetch_val("SELECT 1", {"extra": 1})
    await assert_pool_whole(db)


async def test_missing_parameter_core(db: Database, database_url: str) -> None:
    query = sa.select(users).where(users.c.name == sa.bindparam("wanted"))
    with pytest.raises(ProgrammingError, match="'wanted'") as info:
        await db.fetch_all(query, {})
    assert_raised_by_dbaccess(info.value, driver_errors(database_url).base)
    await assert_pool_whole(db)


async def test_missing_parameter_in_execute_many(db: Database, database_url: str) -> None:
    with pytest.raises(ProgrammingError, match="'name'") as info:
        await db.execute_many(INSERT_USER, [{"name": "a"}, {}])
    assert_raised_by_dbaccess(info.value, driver_errors(database_url).base)
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    ("query", "values"),
    [
        pytest.param(
            sa.select(users).where(users.c.name == sa.bindparam("wanted")),
            {"wanted": "a", "nmae": "a"},
            id="select",
        ),
        # A misspelt column: dropping it silently would insert or update the wrong
        # thing (encode/databases raised "Unconsumed column names" here).
        pytest.param(users.insert(), {"name": "a", "nmae": "b"}, id="insert"),
        pytest.param(users.update().where(users.c.id == 1), {"nmae": "b"}, id="update"),
    ],
)
async def test_unknown_parameter_core(
    db: Database, database_url: str, query: Any, values: dict[str, Any]
) -> None:
    with pytest.raises(ProgrammingError, match="'nmae'") as info:
        await db.execute(query, values)
    assert_raised_by_dbaccess(info.value, driver_errors(database_url).base)
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(["carol"], id="list"),
        pytest.param(("carol",), id="tuple"),
        pytest.param("carol", id="str"),
        pytest.param(42, id="int"),
    ],
)
async def test_values_that_are_not_a_mapping(db: Database, values: Any) -> None:
    for call in (db.execute, db.fetch_all, db.fetch_one, db.fetch_val, db.execute_result):
        with pytest.raises(InterfaceError, match="mapping"):
            await call(INSERT_USER, values)
    with pytest.raises(InterfaceError, match="mapping"):
        await db.execute_many(INSERT_USER, [values])
    with pytest.raises(InterfaceError):
        async for _ in db.iterate("SELECT name FROM dbaccess_users", values):
            pass  # pragma: no cover
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


async def test_execute_many_needs_a_list_of_mappings(db: Database) -> None:
    with pytest.raises(InterfaceError):
        await db.execute_many(INSERT_USER, {"name": "a"})  # type: ignore[call-overload]
    with pytest.raises(InterfaceError):
        await db.execute_many(INSERT_USER, "abc")  # type: ignore[arg-type]
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param(b"SELECT 1", id="bytes"),
        pytest.param(["SELECT 1"], id="list"),
    ],
)
async def test_query_that_is_neither_str_nor_clause(db: Database, query: Any) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: db.fetch_all(query),
        lambda: db.fetch_one(query),
        lambda: db.fetch_val(query),
        lambda: db.execute(query),
        lambda: db.execute_result(query),
        lambda: db.execute_many(query, [{}]),
    ]
    for call in calls:
        with pytest.raises(InterfaceError, match="SQL string or a SQLAlchemy"):
            await call()
    with pytest.raises(InterfaceError):
        async for _ in db.iterate(query):
            pass  # pragma: no cover
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(users, id="table"),
        pytest.param(users.c.name, id="column"),
        pytest.param(users.join(notes, sa.true()), id="join"),
    ],
)
async def test_clause_that_is_not_a_statement(db: Database, query: Any) -> None:
    # A Table or a column is a ClauseElement but no statement; it compiles to no SQL
    # at all (or a bare name). Refused as misuse or bad SQL, the same on every backend,
    # rather than sent to the database.
    with pytest.raises((InterfaceError, ProgrammingError)):
        await db.fetch_all(query)
    await assert_pool_whole(db)


# -- values are bound, never interpolated ------------------------------------------

INJECTIONS = [
    "x'); DROP TABLE dbaccess_users; --",
    "x\\'); DROP TABLE dbaccess_users; -- \\",  # backslash escapes (MySQL)
    'x"); DROP TABLE dbaccess_users; --',
    "%s %(name)s :name ? $1",  # other drivers' placeholders
]


@pytest.mark.parametrize("name", INJECTIONS)
async def test_sql_in_values_is_data(db: Database, name: str) -> None:
    await db.execute(INSERT_USER, {"name": name})
    await db.execute(users.insert(), {"name": name + "!"})
    # The table still exists and holds exactly these values.
    rows = await db.fetch_all("SELECT name FROM dbaccess_users ORDER BY id")
    assert [row["name"] for row in rows] == [name, name + "!"]
    found = await db.fetch_val("SELECT id FROM dbaccess_users WHERE name = :name", {"name": name})
    assert found is not None
    by_core = await db.fetch_val(sa.select(users.c.name).where(users.c.name == name + "!"))
    assert by_core == name + "!"
    await assert_pool_whole(db)


async def test_sql_in_an_in_list_is_data(db: Database) -> None:
    await db.execute(INSERT_USER, {"name": "dave"})
    names = ["dave", "x') OR 1=1; DROP TABLE dbaccess_users; --"]
    rows = await db.fetch_all(
        "SELECT name FROM dbaccess_users WHERE name IN :names", {"names": names}
    )
    assert [row["name"] for row in rows] == ["dave"]
    assert await db.fetch_val(COUNT_USERS) == 1


# -- NUL bytes -----------------------------------------------------------------------


async def test_nul_byte_in_a_text_value(db: Database) -> None:
    name = "nul\x00byte"
    try:
        await db.execute(users.insert(), {"name": name})
    except DBAccessError as exc:
        # PostgreSQL text cannot hold NUL: a clear error, and nothing stored.
        assert isinstance(exc, DataError)
        assert await db.fetch_val(COUNT_USERS) == 0
    else:
        # Stored whole: not cut at the NUL, found by its exact value only.
        assert await db.fetch_val("SELECT name FROM dbaccess_users") == name
        assert await db.fetch_val(sa.select(users.c.id).where(users.c.name == name)) is not None
        assert await db.fetch_val(sa.select(users.c.id).where(users.c.name == "nul")) is None
    await assert_pool_whole(db)


async def test_nul_bytes_in_a_binary_value(db: Database) -> None:
    data = b"\x00a\x00\xff\x00"
    new_id = await db.execute(everything.insert(), {"binary": data})
    stored = await db.fetch_val(sa.select(everything.c.binary).where(everything.c.id == new_id))
    assert stored == data
    await assert_pool_whole(db)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("SELECT 'a\x00b'", id="raw"),
        pytest.param(sa.text("SELECT 'a\x00b'"), id="text-clause"),
        pytest.param(sa.select(sa.literal_column("'a\x00b'")), id="core"),
    ],
)
async def test_nul_byte_in_sql_text(db: Database, query: Any) -> None:
    try:
        value = await db.fetch_val(query)
    except DBAccessError as exc:
        # Bad SQL text, not a lost connection: a ProgrammingError.
        assert isinstance(exc, ProgrammingError)
        assert "nul" in str(exc).lower() or "null character" in str(exc).lower()
    else:
        assert value == "a\x00b"
    await assert_pool_whole(db)


# -- the pool after errors ------------------------------------------------------------


@pytest.fixture
async def single(database_url: str) -> AsyncIterator[Database]:
    """A Database with one connection: a leaked connection would block the next query."""
    async with Database(database_url, max_size=1, acquire_timeout=5) as db:
        await create_tables(db)
        try:
            yield db
        finally:
            await drop_tables(db)


async def test_errors_never_leak_the_only_connection(single: Database) -> None:
    await single.execute(INSERT_USER, {"name": "eve"})
    failing: list[tuple[type[DBAccessError], Callable[[], Awaitable[Any]]]] = [
        (IntegrityError, lambda: single.execute(INSERT_USER, {"name": "eve"})),
        (IntegrityError, lambda: single.execute_many(INSERT_USER, [{"name": "eve"}])),
        (ProgrammingError, lambda: single.fetch_all("SELEC 1")),
        (ProgrammingError, lambda: single.fetch_one("SELECT * FROM dbaccess_nope")),
        (ProgrammingError, lambda: single.fetch_val("SELECT :a")),
        (InterfaceError, lambda: single.execute(INSERT_USER, ["eve"])),  # type: ignore[arg-type]
        (InterfaceError, lambda: single.execute(42)),  # type: ignore[arg-type]
    ]
    for _ in range(3):
        for expected, call in failing:
            with pytest.raises(expected):
                await call()
            assert single.pool_stats.in_use == 0
        with pytest.raises(ProgrammingError):
            async for _row in single.iterate("SELECT nope FROM dbaccess_users"):
                pass  # pragma: no cover
        assert single.pool_stats.in_use == 0
    assert single.pool_stats.size == 1
    assert await single.fetch_val(COUNT_USERS) == 1


async def test_errors_inside_a_connection_block(db: Database) -> None:
    async with db.connection() as connection:
        with pytest.raises(ProgrammingError):
            await connection.fetch_all("SELEC 1")
        await connection.execute(INSERT_USER, {"name": "frank"})
        with pytest.raises(IntegrityError):
            await connection.execute(INSERT_USER, {"name": "frank"})
        assert await connection.fetch_val(COUNT_USERS) == 1
        assert db.pool_stats.in_use == 1
    await assert_pool_whole(db)


# -- errors inside transactions -------------------------------------------------------


async def test_error_in_transaction_block_rolls_back(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction():
            await db.execute(INSERT_USER, {"name": "gina"})
            await db.execute(INSERT_USER, {"name": "gina"})
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)
    async with db.transaction():
        await db.execute(INSERT_USER, {"name": "gina"})
    assert await db.fetch_val(COUNT_USERS) == 1


@pytest.mark.parametrize("failing", ["SELEC 1", "SELECT nope FROM dbaccess_users"])
async def test_connection_usable_after_rollback_of_failed_transaction(
    db: Database, failing: str
) -> None:
    async with db.connection() as connection:
        transaction = await connection.transaction()
        await connection.execute(INSERT_USER, {"name": "hank"})
        with pytest.raises(ProgrammingError):
            await connection.fetch_all(failing)
        await transaction.rollback()
        assert transaction.state is TransactionState.ROLLED_BACK
        # The same connection works again, outside and inside a new transaction.
        assert await connection.fetch_val(COUNT_USERS) == 0
        async with connection.transaction():
            await connection.execute(INSERT_USER, {"name": "hank"})
        assert await connection.fetch_val(COUNT_USERS) == 1
    await assert_pool_whole(db)


async def test_error_in_nested_transaction_keeps_the_outer_one(db: Database) -> None:
    async with db.transaction():
        await db.execute(INSERT_USER, {"name": "ivy"})
        with pytest.raises(IntegrityError):
            async with db.transaction():  # a savepoint
                await db.execute(INSERT_USER, {"name": "jack"})
                await db.execute(INSERT_USER, {"name": "ivy"})
        # Rolled back to the savepoint: the outer transaction goes on (even on
        # PostgreSQL, which aborts a transaction at its first error).
        await db.execute(INSERT_USER, {"name": "kim"})
    names = await db.fetch_all("SELECT name FROM dbaccess_users ORDER BY name")
    assert [row["name"] for row in names] == ["ivy", "kim"]
    await assert_pool_whole(db)


async def test_error_in_decorated_transaction(db: Database) -> None:
    @db.transaction()
    async def add_twice(name: str) -> None:
        await db.execute(INSERT_USER, {"name": name})
        await db.execute(notes.insert(), {"text": None})  # NOT NULL

    with pytest.raises(IntegrityError):
        await add_twice("lee")
    assert await db.fetch_val(COUNT_USERS) == 0
    await assert_pool_whole(db)


async def test_misuse_is_not_a_database_error(db: Database) -> None:
    # InterfaceError (misuse) and DatabaseError (the database refused) are distinct.
    with pytest.raises(InterfaceError) as info:
        await db.execute(42)  # type: ignore[arg-type]
    assert not isinstance(info.value, DatabaseError)
    with pytest.raises(DatabaseError) as refused:
        await db.fetch_all("SELEC 1")
    assert not isinstance(refused.value, (InterfaceError, OperationalError))
