"""Every column type round-trips identically on every backend, by every read path.

Values are written through Core inserts, execute_many and raw SQL `:name` parameters,
and read back through fetch_one, fetch_all, fetch_val, execute and iterate (inside
and outside a transaction). A value must come back equal *and* of the same Python
type, whichever way the row is read (row["col"], row.col, row[i], row[column],
row._mapping["col"]).
"""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, DataError, Record

from .conftest import SAMPLE_VALUES, Mood, everything

COLUMNS = list(SAMPLE_VALUES)

# A second row with different edge values: the other boolean and enum member, a JSON
# list at the top level, a negative non-whole-hour offset that changes the UTC date,
# empty text and bytes, and the other end of the integer range.
OTHER_VALUES: dict[str, Any] = {
    "integer": 2147483647,
    "string": "100% :x ::y %(name)s 'q' \"d\" \\ ; -- 😀",
    "text": "",
    "boolean": False,
    "float": -0.5,
    "numeric": decimal.Decimal("-0.01"),
    "date": datetime.date(1970, 1, 1),
    "time": datetime.time(0, 0, 0),
    "naive": datetime.datetime(1999, 12, 31, 23, 59, 59),
    "aware": datetime.datetime(
        2024,
        1,
        1,
        0,
        30,
        tzinfo=datetime.timezone(-datetime.timedelta(hours=7, minutes=30)),
    ),
    "mood": Mood.HAPPY,
    "json": [1, "two", {"three": [3.5, None, False]}, "ü ✓", []],
    "binary": b"",
    "custom": ["a", {"b": None, "ü": [True, 0]}],
}

NULL_VALUES: dict[str, Any] = dict.fromkeys(COLUMNS)

# (id, values) of the rows every round-trip test writes and expects back.
ROWS: list[tuple[int, dict[str, Any]]] = [(1, SAMPLE_VALUES), (2, OTHER_VALUES), (3, NULL_VALUES)]

# The columns whose None must be stored as SQL NULL. JSON is left out: SQLAlchemy's
# JSON type stores an explicit None as the JSON value `null` (none_as_null=False).
SQL_NULL_COLUMNS = [name for name in COLUMNS if name != "json"]


def assert_same(actual: Any, expected: Any, column: str) -> None:
    """Assert that a value read back is the value written, of the same type."""
    if expected is None:
        assert actual is None, f"{column}: expected None, got {actual!r}"
        return
    if column == "aware":
        # The same instant, and still tz-aware (the offset may be normalised, e.g. UTC).
        assert isinstance(actual, datetime.datetime), f"{column}: got {actual!r}"
        assert actual.tzinfo is not None and actual.utcoffset() is not None, (
            f"{column}: came back naive: {actual!r}"
        )
        assert actual == expected, f"{column}: {actual!r} is not the instant {expected!r}"
        return
    assert type(actual) is type(expected), (
        f"{column}: expected {type(expected).__name__}, got {type(actual).__name__} {actual!r}"
    )
    assert actual == expected, f"{column}: expected {expected!r}, got {actual!r}"
    if isinstance(expected, decimal.Decimal):
        assert str(actual) == str(expected), f"{column}: scale changed: {actual!r}"
    if column in ("json", "custom"):
        # == alone would take True for 1 and 1.0 for 1 inside the document.
        assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def assert_row(row: Record | None, expected_id: int, expected: dict[str, Any]) -> None:
    assert row is not None
    assert isinstance(row, Record)
    assert row["id"] == expected_id
    for column in COLUMNS:
        assert_same(row[column], expected[column], column)


def assert_rows(rows: list[Record]) -> None:
    assert [row["id"] for row in rows] == [row_id for row_id, _ in ROWS]
    for row, (row_id, values) in zip(rows, ROWS):
        assert_row(row, row_id, values)


def with_id(row_id: int, values: dict[str, Any]) -> dict[str, Any]:
    return {"id": row_id, **values}


ORDERED = sa.select(everything).order_by(everything.c.id)


async def insert_rows_many(db: Database) -> None:
    await db.execute_many(everything.insert(), [with_id(row_id, values) for row_id, values in ROWS])


# -- Core insert, Core select ------------------------------------------------------


async def test_core_insert_then_fetch_one(db: Database) -> None:
    for row_id, values in ROWS:
        await db.execute(everything.insert(), with_id(row_id, values))
    for row_id, values in ROWS:
        row = await db.fetch_one(sa.select(everything).where(everything.c.id == row_id))
        assert_row(row, row_id, values)


async def test_core_insert_without_id_then_fetch_one(db: Database) -> None:
    """The id comes from the database; execute() reports it, and it finds the row."""
    new_id = await db.execute(everything.insert(), SAMPLE_VALUES)
    assert isinstance(new_id, int)
    row = await db.fetch_one(sa.select(everything).where(everything.c.id == new_id))
    assert_row(row, new_id, SAMPLE_VALUES)


async def test_omitted_columns_read_back_as_null(db: Database) -> None:
    await db.execute(everything.insert(), {"id": 7})
    row = await db.fetch_one(sa.select(everything))
    assert_row(row, 7, NULL_VALUES)


async def test_python_none_is_stored_as_sql_null(db: Database) -> None:
    """None binds as SQL NULL, not as a string or a zero, for every non-JSON column."""
    await db.execute(everything.insert(), with_id(3, NULL_VALUES))
    for column in SQL_NULL_COLUMNS:
        count = await db.fetch_val(
            sa.select(sa.func.count()).select_from(everything).where(everything.c[column].is_(None))
        )
        assert count == 1, column


async def test_booleans_true_and_false(db: Database) -> None:
    await db.execute_many(
        everything.insert(),
        [{"id": 1, "boolean": True}, {"id": 2, "boolean": False}, {"id": 3, "boolean": None}],
    )
    rows = await db.fetch_all(sa.select(everything.c.boolean).order_by(everything.c.id))
    assert [row["boolean"] for row in rows] == [True, False, None]
    assert [type(row["boolean"]) for row in rows] == [bool, bool, type(None)]
    # And a boolean bound in a WHERE clause matches the right row.
    found = await db.fetch_val(sa.select(everything.c.id).where(everything.c.boolean.is_(False)))
    assert found == 2
    found = await db.fetch_val(sa.select(everything.c.id).where(everything.c.boolean == True))  # noqa: E712
    assert found == 1


@pytest.mark.parametrize(
    "text",
    [
        'it\'s "quoted"',
        "100% %s %(name)s %%",
        ":name ::text :1 a:b",
        "back\\slash \\n \\' \\%",
        "héllo ✓ ü 中文 😀",
        "",
        "  padded  ",
        "line\nbreak\ttab\r",
    ],
    ids=["quotes", "percent", "colons", "backslashes", "unicode", "empty", "spaces", "control"],
)
async def test_string_round_trips(db: Database, text: str) -> None:
    await db.execute(everything.insert(), {"id": 1, "string": text, "text": text})
    row = await db.fetch_one(sa.select(everything.c.string, everything.c.text))
    assert row is not None
    assert row["string"] == text
    assert row["text"] == text
    # The same value bound in a WHERE clause finds the row.
    assert await db.fetch_val(sa.select(everything.c.id).where(everything.c.string == text)) == 1


async def test_binary_keeps_every_byte_value(db: Database) -> None:
    data = bytes(range(256)) + bytes(reversed(range(256)))
    await db.execute(everything.insert(), {"id": 1, "binary": data})
    value = await db.fetch_val(sa.select(everything.c.binary))
    assert type(value) is bytes
    assert value == data


async def test_aware_datetime_keeps_its_instant(db: Database) -> None:
    """Offsets east and west of UTC, and UTC itself, come back as the same instant."""
    instants = [
        datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.timezone.utc),
        datetime.datetime(
            2024, 2, 29, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=9, minutes=30))
        ),
        datetime.datetime(
            2023, 12, 31, 22, 0, tzinfo=datetime.timezone(-datetime.timedelta(hours=5))
        ),
    ]
    await db.execute_many(
        everything.insert(),
        [{"id": i, "aware": value} for i, value in enumerate(instants, start=1)],
    )
    rows = await db.fetch_all(sa.select(everything.c.aware).order_by(everything.c.id))
    for row, expected in zip(rows, instants):
        assert_same(row["aware"], expected, "aware")
    # Comparing with an aware value in another zone finds the same row.
    other_zone = instants[1].astimezone(datetime.timezone(datetime.timedelta(hours=-3)))
    found = await db.fetch_val(sa.select(everything.c.id).where(everything.c.aware == other_zone))
    assert found == 2


async def test_naive_datetimes_bound_one_at_a_time_and_in_bulk_read_back_equal(
    db: Database, dialect: str
) -> None:
    """Whole seconds and microseconds, early years and late, come back as written and
    find their row (SQLite stores them as text)."""
    values = [
        datetime.datetime(2024, 2, 29, 13, 14, 15),
        datetime.datetime(2024, 2, 29, 13, 14, 16, 1),
        datetime.datetime(1000, 1, 1, 0, 0, 0, 999999),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 123456),
    ]
    if dialect == "mysql":  # a DATETIME column without a precision keeps whole seconds
        values = [value.replace(microsecond=0) for value in values]
    await db.execute(everything.insert(), {"id": 1, "naive": values[0]})
    await db.execute_many(
        everything.insert(), [{"id": i, "naive": v} for i, v in enumerate(values[1:], start=2)]
    )
    rows = await db.fetch_all(sa.select(everything.c.naive).order_by(everything.c.id))
    for row, expected in zip(rows, values, strict=True):
        assert_same(row["naive"], expected, "naive")
    for i, value in enumerate(values, start=1):
        found = await db.fetch_val(sa.select(everything.c.id).where(everything.c.naive == value))
        assert found == i


async def test_boolean_takes_bools_none_and_zero_or_one_only(db: Database) -> None:
    values = [True, False, None, 1, 0]
    await db.execute(everything.insert(), {"id": 1, "boolean": values[0]})
    await db.execute_many(
        everything.insert(),
        [{"id": i, "boolean": v} for i, v in enumerate(values[1:], start=2)],
    )
    rows = await db.fetch_all(sa.select(everything.c.boolean).order_by(everything.c.id))
    assert [row.boolean for row in rows] == [True, False, None, True, False]
    assert [type(row.boolean) for row in rows] == [bool, bool, type(None), bool, bool]
    # SQLAlchemy's Boolean refuses anything else before it reaches the database: a
    # DataError that names the parameter, whichever path bound it.
    with pytest.raises(DataError, match="parameter 'boolean' refuses its value"):
        await db.execute(everything.insert(), {"id": 9, "boolean": 2})
    with pytest.raises(DataError, match="parameter 'boolean' refuses its value"):
        await db.execute_many(everything.insert(), [{"id": 9, "boolean": "yes"}])
    with pytest.raises(DataError, match="parameter 'boolean' refuses its value"):
        await db.execute_many(
            everything.insert(), [{"id": 9, "boolean": True}, {"id": 10, "boolean": 2}]
        )
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(everything)) == 5


# -- execute_many, fetch_all ---------------------------------------------------------


async def test_execute_many_then_fetch_all(db: Database) -> None:
    await insert_rows_many(db)
    assert_rows(await db.fetch_all(ORDERED))


async def test_execute_many_inside_transaction_then_fetch_all(db: Database) -> None:
    async with db.transaction():
        await insert_rows_many(db)
        assert_rows(await db.fetch_all(ORDERED))
    assert_rows(await db.fetch_all(ORDERED))


async def test_fetch_all_on_a_connection(db: Database) -> None:
    await insert_rows_many(db)
    async with db.connection() as connection:
        assert_rows(await connection.fetch_all(ORDERED))


# -- iterate ---------------------------------------------------------------------------


async def test_iterate(db: Database) -> None:
    await insert_rows_many(db)
    assert_rows([row async for row in db.iterate(ORDERED)])


async def test_iterate_inside_transaction(db: Database) -> None:
    """Inside a transaction rows stream on the transaction's connection (another path)."""
    async with db.transaction():
        await insert_rows_many(db)
        assert_rows([row async for row in db.iterate(ORDERED)])


# -- single values ---------------------------------------------------------------------


async def test_fetch_val_and_execute_convert_each_column(db: Database) -> None:
    await insert_rows_many(db)
    for row_id, values in ROWS:
        where = everything.c.id == row_id
        for column in COLUMNS:
            query = sa.select(everything.c[column]).where(where)
            assert_same(await db.fetch_val(query), values[column], column)
            assert_same(await db.execute(query), values[column], column)
        row_query = sa.select(everything).where(where)
        for column in COLUMNS:
            assert_same(await db.fetch_val(row_query, column=column), values[column], column)


# -- one value, every way of reading it ---------------------------------------------------


def assert_all_paths_agree(row: Record, expected: dict[str, Any]) -> None:
    as_dict = dict(row._mapping)
    values = list(row.values())
    items = dict(row.items())
    keys = list(row.keys())
    for column in COLUMNS:
        index = keys.index(column)
        reads = {
            'row["col"]': row[column],
            "row.col": getattr(row, column),
            "row[index]": row[index],
            "row[table.c.col]": row[everything.c[column]],
            'row._mapping["col"]': row._mapping[column],
            "dict(row._mapping)": as_dict[column],
            "row.values()": values[index],
            "row.items()": items[column],
        }
        for path, value in reads.items():
            assert_same(value, expected[column], f"{column} via {path}")


@pytest.mark.parametrize("path", ["fetch_one", "fetch_all", "iterate"])
async def test_every_accessor_reads_the_same_value(db: Database, path: str) -> None:
    """databases once decoded JSON on one access path and not on another."""
    await insert_rows_many(db)
    if path == "fetch_one":
        rows = [
            await db.fetch_one(sa.select(everything).where(everything.c.id == i)) for i, _ in ROWS
        ]
    elif path == "fetch_all":
        rows = list(await db.fetch_all(ORDERED))
    else:
        rows = [row async for row in db.iterate(ORDERED)]
    assert len(rows) == len(ROWS)
    for row, (_, values) in zip(rows, ROWS):
        assert row is not None
        assert_all_paths_agree(row, values)
    # JSON is decoded on every path, never handed back as a string.
    first = rows[0]
    assert first is not None
    assert isinstance(first.json, dict) and isinstance(first._mapping["json"], dict)
    assert isinstance(first.custom, dict) and isinstance(first[everything.c.custom], dict)


# -- raw SQL parameters ------------------------------------------------------------------

RAW_COLUMNS = [
    "integer",
    "string",
    "text",
    "boolean",
    "float",
    "numeric",
    "date",
    "time",
    "naive",
    "aware",
    "binary",
]


def quote(dialect: str, name: str) -> str:
    # Several of the columns are reserved words; MySQL quotes with backticks by default.
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def raw_insert(dialect: str) -> str:
    names = ["id", *RAW_COLUMNS]
    columns = ", ".join(quote(dialect, name) for name in names)
    params = ", ".join(f":{name}" for name in names)
    return f"INSERT INTO dbaccess_types ({columns}) VALUES ({params})"


def raw_values(row_id: int, source: dict[str, Any]) -> dict[str, Any]:
    return {"id": row_id, **{name: source[name] for name in RAW_COLUMNS}}


async def test_raw_sql_binds_python_values(db: Database, dialect: str) -> None:
    """str, int, float, Decimal, bool, None, date, time, datetime and bytes bound as
    `:name` parameters of raw SQL are stored as their Core counterparts would be."""
    await db.execute(raw_insert(dialect), raw_values(1, SAMPLE_VALUES))
    await db.execute_many(
        raw_insert(dialect), [raw_values(2, OTHER_VALUES), raw_values(3, NULL_VALUES)]
    )
    rows = await db.fetch_all(ORDERED)
    assert len(rows) == 3
    for row, (row_id, values) in zip(rows, ROWS):
        assert row["id"] == row_id
        for column in RAW_COLUMNS:
            assert_same(row[column], values[column], column)


async def test_raw_sql_execute_many_converts_each_row_by_its_own_values(
    db: Database, dialect: str
) -> None:
    """Raw SQL has no column types: each value is converted by its own Python type.
    A first row of NULLs must not decide how the values of the next rows are bound."""
    await db.execute_many(
        raw_insert(dialect),
        [raw_values(3, NULL_VALUES), raw_values(1, SAMPLE_VALUES), raw_values(2, OTHER_VALUES)],
    )
    rows = await db.fetch_all(ORDERED)
    assert len(rows) == 3
    for row, (row_id, values) in zip(rows, ROWS):
        assert row["id"] == row_id
        for column in RAW_COLUMNS:
            assert_same(row[column], values[column], column)


async def test_raw_sql_parameters_match_stored_values(db: Database, dialect: str) -> None:
    """A value bound in a raw WHERE clause compares equal to the same value stored."""
    await insert_rows_many(db)
    for row_id, values in ROWS[:2]:
        for column in RAW_COLUMNS:
            found = await db.fetch_all(
                f"SELECT {quote(dialect, 'id')} FROM dbaccess_types "
                f"WHERE {quote(dialect, column)} = :value",
                {"value": values[column]},
            )
            assert [row[0] for row in found] == [row_id], column
    # None binds as NULL: `= NULL` matches nothing, IS NULL finds the NULL row.
    for column in RAW_COLUMNS:
        matched = await db.fetch_all(
            f"SELECT {quote(dialect, 'id')} FROM dbaccess_types "
            f"WHERE {quote(dialect, column)} = :v",
            {"v": None},
        )
        assert matched == [], column


async def test_raw_sql_reads_plain_values_back(db: Database, dialect: str) -> None:
    """Raw SQL has no column types to convert by: values whose storage is the same on
    every backend (text, integers, floats, bytes, NULL) come back as they went in."""
    plain = ["integer", "string", "text", "float", "binary"]
    await db.execute(raw_insert(dialect), raw_values(1, SAMPLE_VALUES))
    await db.execute(raw_insert(dialect), raw_values(2, NULL_VALUES))
    columns = ", ".join(quote(dialect, name) for name in plain)
    rows = await db.fetch_all(
        f"SELECT {columns} FROM dbaccess_types ORDER BY {quote(dialect, 'id')}"
    )
    assert len(rows) == 2
    for column in plain:
        assert_same(rows[0][column], SAMPLE_VALUES[column], column)
        assert rows[1][column] is None, column


async def test_raw_sql_bound_value_in_select_list(db: Database) -> None:
    """A string parameter that looks like a placeholder is data, not SQL."""
    text = SAMPLE_VALUES["string"]
    assert await db.fetch_val("SELECT :value", {"value": text}) == text
