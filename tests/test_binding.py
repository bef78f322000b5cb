"""Property tests: whatever value is bound comes back unchanged, on every backend,
through SQLAlchemy Core and raw SQL alike. Values are bound as data, never spliced into
the SQL, so quotes, backslashes, `:names`, `%s`, comment markers and SQL keywords inside
them are just characters.

NUL characters in text are left to test_errors.py (PostgreSQL refuses them, with a
clear error); everything else Unicode can hold is fair game.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbaccess import Database

values = sa.Table(
    "dbaccess_bound",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("v_text", sa.Text),
    sa.Column("v_short", sa.String(40)),
    sa.Column("v_int", sa.BigInteger),
    sa.Column("v_double", sa.Double),
    sa.Column("v_bytes", sa.LargeBinary),
    sa.Column("v_json", sa.JSON),
)
ids = itertools.count(1)

# What breaks naive quoting, mixed into arbitrary Unicode text (no NUL, no lone
# surrogates: neither can be encoded for the wire).
TRICKY = st.sampled_from(
    ["'", '"', "\\", "\\'", "''", ":name", ":1", "%s", "%(x)s", "?", "$1", "--", "/*", "*/", ";",
     "'); DROP TABLE dbaccess_bound; --", "\n", "\t", "\r\n", " ", "é", "✓", "😀", "\u2028"]
)  # fmt: skip
CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
TEXT = st.lists(st.one_of(TRICKY, st.text(CHARACTERS, max_size=20)), max_size=12).map("".join)
# MySQL pads nothing away from VARCHAR, but compares ignoring trailing spaces: this
# column is only read back, never compared.
SHORT = st.text(CHARACTERS, max_size=40)
INTEGERS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DOUBLES = st.floats(allow_nan=False, allow_infinity=False)
BINARY = st.binary(max_size=300)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(CHARACTERS, max_size=10)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(CHARACTERS, max_size=8), children)
    ),
    max_leaves=12,
)
ROWS = st.fixed_dictionaries(
    {
        "v_text": TEXT,
        "v_short": SHORT,
        "v_int": INTEGERS,
        "v_double": DOUBLES,
        "v_bytes": BINARY,
        "v_json": JSON,
    }
)

PROPERTY = settings(
    max_examples=60,
    deadline=None,  # a shared machine: latency is not what these tests are about
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
async def bound(database: Database) -> AsyncIterator[Database]:
    await database.execute(sa.schema.DropTable(values, if_exists=True))
    await database.execute(sa.schema.CreateTable(values))
    try:
        yield database
    finally:
        await database.execute(sa.schema.DropTable(values, if_exists=True))


def assert_same_row(read: Any, written: dict[str, Any]) -> None:
    assert read is not None
    for key, value in written.items():
        assert read[key] == value, key


@PROPERTY
@given(row=ROWS)
async def test_core_round_trip(bound: Database, row: dict[str, Any]) -> None:
    row_id = next(ids)
    await bound.execute(values.insert(), {"id": row_id, **row})
    assert_same_row(await bound.fetch_one(sa.select(values).where(values.c.id == row_id)), row)
    # Each value, bound again, matches itself as data, never as SQL.
    same = sa.select(sa.func.count()).where(
        values.c.id == row_id,
        values.c.v_text == row["v_text"],
        values.c.v_int == row["v_int"],
        values.c.v_double == row["v_double"],
        values.c.v_bytes == row["v_bytes"],
    )
    assert await bound.fetch_val(same) == 1


@PROPERTY
@given(row=ROWS)
async def test_raw_sql_round_trip(bound: Database, row: dict[str, Any]) -> None:
    # Raw SQL has no column types: JSON goes in as its text, as a driver would take it.
    row_id = next(ids)
    raw = {"id": row_id, **row, "v_json": json.dumps(row["v_json"])}
    await bound.execute(
        "INSERT INTO dbaccess_bound (id, v_text, v_short, v_int, v_double, v_bytes, v_json) "
        "VALUES (:id, :v_text, :v_short, :v_int, :v_double, :v_bytes, :v_json)",
        raw,
    )
    assert_same_row(await bound.fetch_one(sa.select(values).where(values.c.id == row_id)), row)
    found = await bound.fetch_one(
        "SELECT v_text, v_short, v_int, v_double, v_bytes FROM dbaccess_bound "
        "WHERE id = :id AND v_text = :v_text AND v_int = :v_int AND v_bytes = :v_bytes",
        {key: raw[key] for key in ("id", "v_text", "v_int", "v_bytes")},
    )
    assert found is not None
    assert found["v_text"] == row["v_text"] and found["v_int"] == row["v_int"]
    assert bytes(found["v_bytes"]) == row["v_bytes"]
    assert found["v_double"] == row["v_double"]


@PROPERTY
@given(items=st.lists(INTEGERS, max_size=20))
async def test_a_list_bound_to_in(bound: Database, items: list[int]) -> None:
    row_ids = [next(ids) for _ in range(3)]
    await bound.execute_many(
        values.insert(), [{"id": row_id, "v_int": n} for row_id, n in zip(row_ids, (1, 2, 3))]
    )
    wanted = sorted({1, 2, 3} & set(items))
    core = sa.select(values.c.v_int).where(values.c.id.in_(row_ids), values.c.v_int.in_(items))
    assert sorted(row[0] for row in await bound.fetch_all(core)) == wanted
    raw = "SELECT v_int FROM dbaccess_bound WHERE id IN :row_ids AND v_int IN :items"
    rows = await bound.fetch_all(raw, {"row_ids": row_ids, "items": items})
    assert sorted(row[0] for row in rows) == wanted
