"""A value a column or driver cannot take raises a dbaccess DataError that names the
parameter and the problem, through raw SQL and Core alike; nothing is stored, nothing
is stored changed (NaN as NULL, an object as its str()), and no driver or codec
exception escapes untranslated or with an empty message. Where a backend can hold the
value (NaN and infinity in PostgreSQL's float and numeric columns), it comes back as
it was given."""

from __future__ import annotations

import decimal
import math
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseURL, DataError, DBAccessError, ProgrammingError

from .conftest import everything, released

NAN = float("nan")
INF = float("inf")

#: (id, column of dbaccess_types, value, the dialects whose column holds it as given)
CASES = [
    ("lone-surrogate", "string", "bad \ud800 text", set()),
    ("dict", "string", {"a": 1}, set()),
    ("set", "string", {1, 2}, set()),
    ("list", "string", [1, 2], set()),
    ("object", "string", object(), set()),
    ("int-beyond-64-bits", "integer", 2**70, set()),
    ("nan", "float", NAN, {"postgresql"}),
    ("infinity", "float", INF, {"postgresql", "sqlite"}),
    ("decimal-nan", "numeric", decimal.Decimal("NaN"), {"postgresql"}),
]


def same(stored: Any, given: Any) -> bool:
    if isinstance(given, float) and math.isnan(given):
        return isinstance(stored, float) and math.isnan(stored)
    if isinstance(given, decimal.Decimal) and given.is_nan():
        return isinstance(stored, decimal.Decimal) and stored.is_nan()
    return bool(stored == given)


async def refused(db: Database, call: Any) -> DBAccessError:
    """Run ``call``: it must raise a dbaccess DataError or ProgrammingError, with a message."""
    try:
        await call()
    except (DataError, ProgrammingError) as exc:
        assert str(exc), "an empty message"
        return exc
    pytest.fail("the value was accepted")


def names_it(exc: DBAccessError, parameter: str, column: str, dialect: str, case: str) -> None:
    message = str(exc)
    if dialect == "mysql" and case == "int-beyond-64-bits":
        # The server refuses it (out of range), naming the column: the drivers send
        # integers as they are, and the server's message is the one that counts.
        assert f"'{column}'" in message, message
        return
    assert exc.parameter == parameter, message
    assert message.startswith(f"parameter {parameter!r}: "), message


async def nothing_stored(db: Database) -> None:
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(everything)) == 0
    assert await db.fetch_val("SELECT 1") == 1  # the connection, or the pool, still works
    assert await released(db)


@pytest.mark.parametrize(("case", "column", "value", "holds"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("path", ["raw", "core"])
async def test_a_value_the_column_cannot_take(
    db: Database, dialect: str, path: str, case: str, column: str, value: Any, holds: set[str]
) -> None:
    if path == "raw":
        quoted = f"`{column}`" if dialect == "mysql" else f'"{column}"'  # INTEGER is a keyword
        query: Any = f"INSERT INTO dbaccess_types (id, {quoted}) VALUES (1, :value)"
        values, parameter = {"value": value}, "value"
    else:
        query, values, parameter = everything.insert(), {"id": 1, column: value}, column
    if case == "list" and DatabaseURL(str(db.url)).driver == "psycopg":
        pytest.skip(
            "psycopg binds a list as an array, and PostgreSQL assigns an array to a text "
            "column as its text ('{1,2}'); asyncpg refuses it (README: psycopg)"
        )
    if dialect in holds:
        await db.execute(query, values)
        stored = await db.fetch_val(sa.select(everything.c[column]))
        assert same(stored, value), stored
        return
    exc = await refused(db, lambda: db.execute(query, values))
    names_it(exc, parameter, column, dialect, case)
    await nothing_stored(db)


@pytest.mark.parametrize("path", ["raw", "core"])
async def test_execute_many_with_one_bad_row_stores_none(db: Database, path: str) -> None:
    rows: list[dict[str, Any]] = [{"id": n, "string": f"row {n}"} for n in range(1, 6)]
    rows[3]["string"] = "bad \udc80"
    if path == "raw":
        query: Any = "INSERT INTO dbaccess_types (id, string) VALUES (:id, :string)"
    else:
        query = everything.insert()
    exc = await refused(db, lambda: db.execute_many(query, rows))
    assert exc.parameter == "string", str(exc)
    assert "not valid Unicode" in str(exc) or "surrogate" in str(exc), str(exc)
    await nothing_stored(db)


async def test_execute_many_with_a_nan_in_one_row(db: Database, dialect: str) -> None:
    # Rows of floats take a faster check on SQLite than one value at a time: it must
    # still find the one NaN among them.
    rows = [{"id": n, "float": n + 0.5} for n in range(1, 2001)]
    rows[1500]["float"] = NAN
    query = "INSERT INTO dbaccess_types (id, float) VALUES (:id, :float)"
    if dialect == "mysql":
        query = query.replace("float", "`float`").replace(":`float`", ":float")
    if dialect == "postgresql":  # it holds NaN as it is
        await db.execute_many(query, rows)
        stored = await db.fetch_val(sa.select(everything.c.float).where(everything.c.id == 1501))
        assert math.isnan(stored)
        return
    exc = await refused(db, lambda: db.execute_many(query, rows))
    assert exc.parameter == "float", str(exc)
    assert "nan" in str(exc).lower(), str(exc)
    await nothing_stored(db)


async def test_every_method_names_the_parameter(db: Database) -> None:
    query, values = "SELECT :label AS label", {"label": "x \ud83d y"}

    async def iterate() -> None:
        async for _ in db.iterate(query, values):
            pass

    calls = [
        lambda: db.fetch_all(query, values),
        lambda: db.fetch_one(query, values),
        lambda: db.fetch_val(query, values),
        lambda: db.execute(query, values),
        iterate,
    ]
    for call in calls:
        exc = await refused(db, call)
        assert exc.parameter == "label", str(exc)
        assert "not valid Unicode" in str(exc) or "surrogate" in str(exc), str(exc)
    async with db.transaction():  # the same on a connection held by a transaction
        exc = await refused(db, lambda: db.fetch_val(query, values))
        assert exc.parameter == "label"
        assert await db.fetch_val("SELECT 2") == 2
    await nothing_stored(db)


async def test_an_unknown_object_is_never_stored_as_its_str(db: Database, dialect: str) -> None:
    class Point:
        def __str__(self) -> str:
            return "POINT(1 2)"

    exc = await refused(db, lambda: db.execute(everything.insert(), {"id": 1, "text": Point()}))
    assert exc.parameter == "text" and "Point" in str(exc), str(exc)
    await nothing_stored(db)


async def test_a_refused_value_error_is_the_drivers_class_too(db: Database, dialect: str) -> None:
    # Where the driver raised, its error stays reachable, as for every translated error.
    exc = await refused(db, lambda: db.execute(everything.insert(), {"id": 1, "integer": 2**70}))
    if dialect != "mysql":  # MySQL: the server's error (out of range)
        assert exc.orig is not None
        assert isinstance(exc, type(exc.orig))
