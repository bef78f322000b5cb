"""Record: the row type every query returns, the same on every backend.

Most tests run once per source of records (fetch_all, fetch_one, iterate and the
RETURNING rows of execute_result) on every backend.
"""

from __future__ import annotations

import collections.abc
import copy
import gc
import pickle
from typing import Any, cast

import pytest
import sqlalchemy as sa

import dbaccess
from dbaccess import Database, InterfaceError, Record
from dbaccess.record import SPEEDUPS, ContainerRecord

from .conftest import SAMPLE_VALUES, everything, notes, users

SOURCES = ["fetch_all", "fetch_one", "iterate", "returning"]
NOTE = {"text": "hello 'world' %s :x ✓", "completed": True}


async def is_mariadb(db: Database) -> bool:
    version = await db.fetch_val("SELECT VERSION()")
    return "mariadb" in str(version).lower()


async def skip_without_returning(db: Database, dialect: str, statement: str) -> None:
    """Skip where the server cannot run `statement ... RETURNING`.

    PostgreSQL and SQLite (3.35+) have RETURNING for INSERT, UPDATE and DELETE.
    MariaDB has INSERT ... RETURNING (10.5+) and DELETE ... RETURNING, but not
    UPDATE ... RETURNING; MySQL has none.
    """
    if dialect != "mysql":
        return
    if statement == "UPDATE" or not await is_mariadb(db):
        pytest.skip(f"{statement} ... RETURNING is not supported by this server")


async def note_record(db: Database, dialect: str, source: str) -> Record:
    """Insert NOTE and read it back as one Record from `source`."""
    if source == "returning":
        await skip_without_returning(db, dialect, "INSERT")
        result = await db.execute_result(notes.insert().returning(*notes.c), NOTE)
        assert len(result.rows) == 1
        return result.rows[0]
    await db.execute(notes.insert(), NOTE)
    query = sa.select(notes)
    row: Record | None
    if source == "fetch_all":
        rows = await db.fetch_all(query)
        assert len(rows) == 1
        row = rows[0]
    elif source == "fetch_one":
        row = await db.fetch_one(query)
    else:
        rows = [record async for record in db.iterate(query)]
        assert len(rows) == 1
        row = rows[0]
    assert row is not None
    return row


async def only_iterated(db: Database, query: Any) -> Record:
    """The one record iterate() yields."""
    rows = [record async for record in db.iterate(query)]
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def note(db: Database, dialect: str, source: str) -> Record:
    return await note_record(db, dialect, source)


# -- reading one value -----------------------------------------------------------


async def test_access_by_name_attribute_index_and_column(note: Record) -> None:
    assert isinstance(note["id"], int)
    for position, (name, expected) in enumerate(
        [("id", note["id"]), ("text", NOTE["text"]), ("completed", True)]
    ):
        assert note[name] == expected
        assert getattr(note, name) == expected
        assert note[position] == expected
        assert note[notes.c[name]] == expected
        assert note._mapping[name] == expected
        # SQLAlchemy's row._mapping[column] spelling (Mapping[str, Any] in the stubs).
        assert note._mapping[cast(Any, notes.c[name])] == expected
    assert type(note.completed) is bool


async def test_negative_index(note: Record) -> None:
    assert note[-1] is True
    assert note[-2] == NOTE["text"]
    assert note[-3] == note["id"]
    with pytest.raises(IndexError):
        note[3]
    with pytest.raises(IndexError):
        note[-4]


async def test_column_of_a_labelled_select(db: Database) -> None:
    await db.execute(notes.insert(), NOTE)
    label = notes.c.text.label("t")
    query = sa.select(label, notes.c.id.label("ident"))
    for row in [
        await db.fetch_one(query),
        (await db.fetch_all(query))[0],
        await only_iterated(db, query),
    ]:
        assert row is not None
        assert list(row.keys()) == ["t", "ident"]
        assert row["t"] == row.t == row[0] == NOTE["text"]
        assert row[label] == NOTE["text"]
        assert row[query.selected_columns.t] == NOTE["text"]
        assert row[query.selected_columns.ident] == row["ident"] == row[1]
        with pytest.raises(KeyError):
            row["text"]


async def test_columns_of_a_select_from_two_tables(db: Database) -> None:
    await db.execute(users.insert(), {"id": 5, "name": "ann"})
    await db.execute(notes.insert(), {"id": 9, "text": "ann", "completed": False})
    query = sa.select(notes.c.text, users.c.name).select_from(
        notes.join(users, users.c.name == notes.c.text)
    )
    row = await db.fetch_one(query)
    assert row is not None
    assert row[notes.c.text] == row[users.c.name] == "ann"
    assert row["text"] == row["name"] == "ann"


# -- the Mapping protocol ----------------------------------------------------------


async def test_mapping_is_a_real_mapping(note: Record) -> None:
    mapping = note._mapping
    assert isinstance(mapping, collections.abc.Mapping)
    expected = {"id": note["id"], **NOTE}
    assert dict(mapping) == expected
    assert dict(note) == expected
    assert dict(mapping.items()) == expected
    assert mapping.get("text") == NOTE["text"]
    assert mapping.get("missing") is None
    assert mapping.get("missing", 42) == 42
    assert len(mapping) == 3
    assert list(mapping) == ["id", "text", "completed"]


async def test_keys_values_items_len_iter_and_contains(note: Record) -> None:
    row_id = note["id"]
    assert list(note.keys()) == ["id", "text", "completed"]
    assert list(note.values()) == [row_id, NOTE["text"], True]
    assert list(note.items()) == [("id", row_id), ("text", NOTE["text"]), ("completed", True)]
    assert len(note) == 3
    # Iterating yields the column names, as in encode/databases.
    assert list(note) == ["id", "text", "completed"]
    assert [note[key] for key in note] == [row_id, NOTE["text"], True]
    assert "text" in note
    assert "completed" in note._mapping
    assert "missing" not in note
    assert "missing" not in note._mapping


async def test_equality_with_a_dict(note: Record) -> None:
    row_id = note["id"]
    assert note == {"id": row_id, **NOTE}
    assert note._mapping == {"id": row_id, **NOTE}
    assert {"id": row_id, **NOTE} == note
    assert note != {"id": row_id, **NOTE, "completed": False}
    assert note != {"id": row_id, "text": NOTE["text"]}
    assert note != {"id": row_id, **NOTE, "extra": 1}


async def test_repr_shows_names_and_values(note: Record) -> None:
    text = repr(note)
    assert repr(NOTE["text"]) in text
    assert f"id={note['id']!r}" in text
    assert "completed=True" in text


async def test_records_of_the_same_row_compare_equal(db: Database) -> None:
    await db.execute(notes.insert(), NOTE)
    first = await db.fetch_one(sa.select(notes))
    second = (await db.fetch_all(sa.select(notes)))[0]
    third = await only_iterated(db, sa.select(notes))
    assert first == second == third
    await db.execute(notes.update().values(completed=False))
    assert await db.fetch_one(sa.select(notes)) != first


# -- errors ------------------------------------------------------------------------


async def test_unknown_name_raises_key_error(note: Record) -> None:
    with pytest.raises(KeyError, match="missing"):
        note["missing"]
    with pytest.raises(KeyError):
        note._mapping["missing"]
    with pytest.raises(KeyError):
        note[users.c.name]  # a column the query did not select


async def test_unknown_attribute_raises_attribute_error(note: Record) -> None:
    with pytest.raises(AttributeError) as info:
        note.missing  # noqa: B018
    message = str(info.value)
    # Says what was asked for and what there is.
    assert "missing" in message
    for column in ("id", "text", "completed"):
        assert column in message
    assert not hasattr(note, "missing")
    assert getattr(note, "missing", "default") == "default"


async def test_duplicated_column_names_are_ambiguous_by_name(db: Database) -> None:
    await db.execute_many(users.insert(), [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}])
    await db.execute(notes.insert(), {"id": 7, "text": "y", "completed": False})
    raw = "SELECT n.id, u.id, n.text FROM dbaccess_notes n JOIN dbaccess_users u ON u.name = n.text"
    row = await db.fetch_one(raw)
    assert row is not None
    # Reading "id" cannot pick one of the two: a clear error rather than a silent guess.
    with pytest.raises(InterfaceError, match=r"'id'.*ambiguous"):
        row["id"]
    with pytest.raises(InterfaceError, match="ambiguous"):
        row.id  # noqa: B018
    # By position both are there, and the unambiguous column reads by name.
    assert (row[0], row[1], row[2]) == (7, 2, "y")
    assert row["text"] == row.text == "y"


async def test_duplicated_column_names_read_by_column_object(db: Database) -> None:
    await db.execute_many(users.insert(), [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}])
    await db.execute(notes.insert(), {"id": 7, "text": "y", "completed": False})
    # LABEL_STYLE_NONE keeps both columns named "id" in the SQL.
    query = (
        sa.select(notes.c.id, users.c.id)
        .select_from(notes.join(users, users.c.name == notes.c.text))
        .set_label_style(sa.LABEL_STYLE_NONE)
    )
    for row in [
        await db.fetch_one(query),
        (await db.fetch_all(query))[0],
        await only_iterated(db, query),
    ]:
        assert row is not None
        assert row[notes.c.id] == 7
        assert row[users.c.id] == 2
        assert (row[0], row[1]) == (7, 2)
        with pytest.raises(InterfaceError, match="ambiguous"):
            row["id"]


async def test_default_label_style_disambiguates_duplicated_names(db: Database) -> None:
    await db.execute_many(users.insert(), [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}])
    await db.execute(notes.insert(), {"id": 7, "text": "y", "completed": False})
    query = sa.select(notes.c.id, users.c.id).select_from(
        notes.join(users, users.c.name == notes.c.text)
    )
    row = await db.fetch_one(query)
    assert row is not None
    assert row[notes.c.id] == row["id"] == 7
    assert row[users.c.id] == row[1] == 2


# -- one type everywhere -------------------------------------------------------------


async def test_one_record_type_on_every_backend(note: Record) -> None:
    assert type(note) is dbaccess.Record
    assert type(note._mapping) is not dict  # a view of the row, not a copy


async def test_rows_holding_a_container_are_container_records(db: Database) -> None:
    # Records of plain values are of a class the garbage collector does not know;
    # a value that is or may become a container (JSON, an enum member) needs it.
    await db.execute(everything.insert(), {"id": 1, **SAMPLE_VALUES})
    plain_columns = [everything.c[name] for name in ("id", "string", "naive", "boolean")]
    plain = await db.fetch_one(sa.select(*plain_columns, everything.c.numeric))
    assert plain is not None
    assert type(plain) is Record
    for column in ("json", "custom", "mood"):
        row = await db.fetch_one(sa.select(everything.c.id, everything.c[column]))
        assert row is not None
        assert type(row) is ContainerRecord, column
        assert isinstance(row, Record)
        if SPEEDUPS:
            assert gc.is_tracked(row) and not gc.is_tracked(plain)


async def test_records_from_every_api_are_records(db: Database) -> None:
    await db.execute(notes.insert(), NOTE)
    query = sa.select(notes)
    records: list[Any] = [
        *(await db.fetch_all(query)),
        await db.fetch_one(query),
        *[row async for row in db.iterate(query)],
        *(await db.fetch_all("SELECT id, text FROM dbaccess_notes")),
        await db.fetch_one("SELECT id, text FROM dbaccess_notes"),
    ]
    async with db.connection() as connection:
        records += [
            *(await connection.fetch_all(query)),
            await connection.fetch_one(query),
            *[row async for row in connection.iterate(query)],
        ]
    async with db.transaction():
        records += [
            *(await db.fetch_all(query)),
            *[row async for row in db.iterate(query)],
        ]
    assert len(records) == 10
    assert {type(record) for record in records} == {dbaccess.Record}


# -- pickling ----------------------------------------------------------------------


async def test_record_survives_pickling(note: Record) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copied = pickle.loads(pickle.dumps(note, protocol=protocol))
        assert isinstance(copied, Record)
        assert copied == note
        assert note == copied
        assert dict(copied) == dict(note)
        assert list(copied.keys()) == list(note.keys())
        assert copied["text"] == copied.text == copied[1] == copied[-2] == NOTE["text"]
        assert copied[notes.c.text] == NOTE["text"]
        assert repr(copied) == repr(note)
        with pytest.raises(AttributeError, match="missing"):
            copied.missing  # noqa: B018


async def test_record_of_every_type_survives_pickling_and_copying(db: Database) -> None:
    await db.execute(everything.insert(), {"id": 1, **SAMPLE_VALUES})
    row = await db.fetch_one(sa.select(everything))
    assert row is not None
    for copied in (pickle.loads(pickle.dumps(row)), copy.copy(row), copy.deepcopy(row)):
        assert isinstance(copied, Record)
        assert copied == row
        assert dict(copied._mapping) == dict(row._mapping)
        assert copied.json == SAMPLE_VALUES["json"]
        assert copied.binary == SAMPLE_VALUES["binary"]


# -- RETURNING rows ----------------------------------------------------------------


async def test_insert_returning_rows_are_records(db: Database, dialect: str) -> None:
    await skip_without_returning(db, dialect, "INSERT")
    result = await db.execute_result(
        notes.insert().returning(notes.c.id, notes.c.text, notes.c.completed), NOTE
    )
    assert len(result.rows) == 1
    row = result.rows[0]
    assert isinstance(row, Record)
    assert list(row.keys()) == ["id", "text", "completed"]
    assert row.text == row[notes.c.text] == row[1] == NOTE["text"]
    assert row.completed is True  # converted by the column type, as on a select
    assert row == await db.fetch_one(sa.select(notes))


async def test_raw_insert_returning_rows_are_records(db: Database, dialect: str) -> None:
    await skip_without_returning(db, dialect, "INSERT")
    result = await db.execute_result(
        "INSERT INTO dbaccess_notes (text, completed) VALUES (:text, :completed) "
        "RETURNING id, text",
        NOTE,
    )
    assert len(result.rows) == 1
    row = result.rows[0]
    assert isinstance(row, Record)
    assert list(row.keys()) == ["id", "text"]
    assert row.text == row["text"] == row[1] == NOTE["text"]
    assert row.id == await db.fetch_val(sa.select(notes.c.id))


async def test_update_returning_rows_are_records(db: Database, dialect: str) -> None:
    await skip_without_returning(db, dialect, "UPDATE")
    await db.execute_many(
        notes.insert(),
        [{"id": 1, "text": "a", "completed": False}, {"id": 2, "text": "b", "completed": False}],
    )
    result = await db.execute_result(
        notes.update().values(completed=True).returning(notes.c.id, notes.c.completed)
    )
    rows = sorted(result.rows, key=lambda row: row["id"])
    assert all(isinstance(row, Record) for row in rows) and len(rows) == 2
    assert [dict(row) for row in rows] == [
        {"id": 1, "completed": True},
        {"id": 2, "completed": True},
    ]
    assert rows[1][notes.c.completed] is True


async def test_delete_returning_rows_are_records(db: Database, dialect: str) -> None:
    await skip_without_returning(db, dialect, "DELETE")
    await db.execute(notes.insert(), {"id": 3, **NOTE})
    result = await db.execute_result(
        notes.delete().where(notes.c.id == 3).returning(notes.c.id, notes.c.text)
    )
    assert len(result.rows) == 1
    row = result.rows[0]
    assert isinstance(row, Record)
    assert row == {"id": 3, "text": NOTE["text"]}
    assert row[notes.c.text] == row.text == NOTE["text"]


@pytest.mark.parametrize("columns", ["plain", "converted", "container"])
@pytest.mark.parametrize("path", ["raw", "core"])
async def test_a_slice_is_a_tuple_whatever_holds_the_row(
    db: Database, columns: str, path: str
) -> None:
    # Plain columns leave the driver's row as it is; a datetime is converted into a list
    # of the record's own; a JSON column makes a ContainerRecord. The C record and its
    # Python twin (CI runs this file on both) give the same slices.
    await db.execute(everything.insert(), {"id": 1, **SAMPLE_VALUES})
    chosen = {
        "plain": ["id", "integer", "string"],
        "converted": ["id", "integer", "naive"],
        "container": ["id", "integer", "json"],
    }[columns]
    if path == "raw":
        quoted = ", ".join(f'"{name}"' if name != "id" else name for name in chosen)
        dialect = db.url.dialect
        if dialect.startswith("mysql") or dialect == "mariadb":
            quoted = quoted.replace('"', "`")
        query: Any = f"SELECT {quoted} FROM dbaccess_types"
    else:
        query = sa.select(*(everything.c[name] for name in chosen))
    row = await db.fetch_one(query)
    assert row is not None
    whole = row[0:3]
    assert type(whole) is tuple, type(whole)
    assert whole[:2] == (1, SAMPLE_VALUES["integer"])
    assert type(row[1:]) is tuple and len(row[1:]) == 2
    assert row[::-1] == whole[::-1]
