"""A result that names a column twice (``SELECT 1 AS id, 2 AS id``, a join of two ``id``s).

Iteration, ``keys()``, ``values()``, ``items()``, ``len()`` and ``dict(row)`` behave as
in encode/databases 0.9 (which gives ``keys() == ['id', 'id']``, ``len(row) == 2`` and
``dict(row) == {'id': 2}`` on every backend), while reading the ambiguous name itself
raises, rather than silently picking one of the columns. Run with DBACCESS_PURE_PYTHON=1
too: the C and Python records must agree.
"""

from __future__ import annotations

import collections.abc
import copy
import json
import pickle
from typing import Any

import pytest
import sqlalchemy as sa

from dbaccess import Database, InterfaceError, Record

from .conftest import notes, users

TWICE = "SELECT 1 AS id, 2 AS id, 3 AS x"


async def rows_of(db: Database, query: Any) -> list[Record]:
    """The first row of ``query`` as fetch_all, fetch_one and iterate give it."""
    every = (await db.fetch_all(query))[0]
    one = await db.fetch_one(query)
    assert one is not None
    (iterated,) = [row async for row in db.iterate(query)]
    return [every, one, iterated]


async def test_names_keep_their_duplicates(database: Database) -> None:
    for row in await rows_of(database, TWICE):
        assert list(row) == ["id", "id", "x"]
        assert list(row.keys()) == list(row._mapping.keys()) == ["id", "id", "x"]
        assert len(row) == len(row._mapping) == len(row.keys()) == 3
        assert list(row.values()) == list(row._mapping.values()) == [1, 2, 3]
        assert list(row.items()) == [("id", 1), ("id", 2), ("x", 3)]
        assert list(row._mapping.items()) == [("id", 1), ("id", 2), ("x", 3)]
        assert "id" in row and "id" in row.keys()  # noqa: SIM118 - the view


async def test_dict_of_the_row_keeps_the_last_column_of_a_name(database: Database) -> None:
    for row in await rows_of(database, TWICE):
        # What dict() does with any mapping: read it by each name it yields.
        assert dict(row) == dict(row._mapping) == {"id": 2, "x": 3}
        assert {name: row[name] for name in row} == {"id": 2, "x": 3}
        assert [row[name] for name in row.keys()] == [1, 2, 3]  # noqa: SIM118 - the view
        assert dict(row.items()) == {"id": 2, "x": 3}


async def test_reading_the_ambiguous_name_still_raises(database: Database) -> None:
    for row in await rows_of(database, TWICE):
        with pytest.raises(InterfaceError, match=r"column name 'id' is ambiguous"):
            row["id"]
        with pytest.raises(InterfaceError, match=r"column name 'id' is ambiguous"):
            row._mapping["id"]
        with pytest.raises(InterfaceError, match=r"column name 'id' is ambiguous"):
            row.id  # noqa: B018
        with pytest.raises(InterfaceError, match=r"column name 'id' is ambiguous"):
            row.get("id")
        assert (row[0], row[1], row[-1], row["x"]) == (1, 2, 3, 3)


async def test_a_name_yielded_by_another_result_is_still_ambiguous(database: Database) -> None:
    first = await database.fetch_one(TWICE)
    swapped = await database.fetch_one("SELECT 3 AS x, 1 AS id, 2 AS id")
    assert first is not None and swapped is not None
    name = next(iter(first))
    # The name knows its column in `first`, which is not a column of that name here.
    with pytest.raises(InterfaceError, match="ambiguous"):
        swapped[name]
    assert dict(swapped) == {"x": 3, "id": 2}


async def test_the_names_of_a_dict_are_plain_strings_once_copied(database: Database) -> None:
    row = await database.fetch_one(TWICE)
    assert row is not None
    plain = dict(row)
    assert json.dumps(plain) == '{"id": 2, "x": 3}'
    # The name in the dict is the duplicated one (dict() keeps the first key object it
    # sees), a str subclass equal to "id"; a copy of it is the plain str.
    assert isinstance(next(iter(plain)), str) and next(iter(plain)) == "id"
    for copied in (pickle.loads(pickle.dumps(plain)), copy.deepcopy(plain)):
        assert copied == {"id": 2, "x": 3}
        assert [type(name) for name in copied] == [str, str]
    assert [str(name) for name in row] == ["id", "id", "x"]
    assert [repr(name) for name in row] == ["'id'", "'id'", "'x'"]
    assert repr(row) == "<Record id=1, id=2, x=3>"
    assert repr(row.keys()) == "RecordKeys(['id', 'id', 'x'])"


async def test_a_pickled_record_keeps_its_duplicates(database: Database) -> None:
    row = await database.fetch_one(TWICE)
    assert row is not None
    for copied in (pickle.loads(pickle.dumps(row)), copy.deepcopy(row)):
        assert list(copied.keys()) == ["id", "id", "x"]
        assert dict(copied) == {"id": 2, "x": 3}
        assert copied == row
        with pytest.raises(InterfaceError, match="ambiguous"):
            copied["id"]


async def test_keys_compare_as_a_list_in_order_and_as_a_set(database: Database) -> None:
    row = await database.fetch_one(TWICE)
    unique = await database.fetch_one("SELECT 1 AS a, 2 AS b")
    assert row is not None and unique is not None
    keys = row.keys()
    assert isinstance(keys, collections.abc.KeysView)
    assert keys == ["id", "id", "x"] and keys == ("id", "id", "x")
    assert keys != ["id", "x"] and keys != ["x", "id", "id"]
    assert keys == {"id", "x"} and keys == {"id": 0, "x": 0}.keys()
    assert keys & {"x", "y"} == {"x"}
    assert unique.keys() == ["a", "b"] and unique.keys() == {"b", "a"}
    assert unique.keys() != ["b", "a"]
    assert unique.keys() == unique._mapping.keys()


async def test_a_join_of_two_id_columns(db: Database) -> None:
    await db.execute_many(users.insert(), [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}])
    await db.execute(notes.insert(), {"id": 7, "text": "y", "completed": False})
    raw = "SELECT n.id, u.id, n.text FROM dbaccess_notes n JOIN dbaccess_users u ON u.name = n.text"
    core = (
        sa.select(notes.c.id, users.c.id, notes.c.text)
        .select_from(notes.join(users, users.c.name == notes.c.text))
        .set_label_style(sa.LABEL_STYLE_NONE)  # keeps both columns named "id"
    )
    for query in (raw, core):
        for row in await rows_of(db, query):
            assert list(row.keys()) == ["id", "id", "text"]
            assert dict(row) == {"id": 2, "text": "y"}
            assert list(row.items()) == [("id", 7), ("id", 2), ("text", "y")]
            with pytest.raises(InterfaceError, match="ambiguous"):
                row["id"]
    one = await db.fetch_one(core)
    assert one is not None
    assert (one[notes.c.id], one[users.c.id]) == (7, 2)


async def test_unique_names_are_plain_strings(database: Database) -> None:
    row = await database.fetch_one("SELECT 1 AS a, 2 AS b")
    assert row is not None
    assert [type(name) for name in row] == [str, str]
    assert [type(name) for name in row.keys()] == [str, str]  # noqa: SIM118 - the view
    assert [type(name) for name in dict(row)] == [str, str]
