"""The record type itself, without a database: what its C part (dbaccess/_record.c)
must get right that no query shows, on whichever implementation is in use. CI runs
these twice: with the C part, and with DBACCESS_PURE_PYTHON=1."""

from __future__ import annotations

import datetime
import gc
import os
import pickle
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from dbaccess.compiler import Compiler
from dbaccess.processors import bind_processor, returns_atoms
from dbaccess.record import SPEEDUPS, ContainerRecord, Record, ResultMeta

from .conftest import IN_CI


def test_the_c_part_is_built_on_ci() -> None:
    if os.environ.get("DBACCESS_PURE_PYTHON"):
        pytest.skip("DBACCESS_PURE_PYTHON=1 chooses the Python implementation")
    if not IN_CI:
        pytest.skip("only CI requires the C part (pip install -e . compiles it)")
    assert SPEEDUPS, "dbaccess._record did not build or import: rows are read in Python"


def test_reading_rows_holds_no_stray_references() -> None:
    value, row = object(), ("text", 1)
    value_refs, row_refs = sys.getrefcount(value), sys.getrefcount(row)
    converted = ResultMeta(["a", "b"], [None, lambda v: (v, value)])
    plain, single = ResultMeta(["a", "b"]), ResultMeta(["a"])
    gc.collect()  # what earlier tests left (their metas refer to the classes too)
    # Each record holds a reference to its class, given back when it is freed.
    class_refs = sys.getrefcount(Record), sys.getrefcount(ContainerRecord)
    for _ in range(1000):
        for meta in (converted, plain):
            (record,) = meta.make_all([row])
            assert record["a"] == record[0] == "text"
            assert record._row()[0] == "text"
            with pytest.raises(KeyError):
                record["missing"]
            with pytest.raises(IndexError):
                record[2]
            assert record[0:1] == ["text"] or record[0:1] == ("text",)
    containing = single.make_all([([value],)] * 1000)
    assert {type(record) for record in containing} == {ContainerRecord if SPEEDUPS else Record}
    del record, containing
    gc.collect()
    assert sys.getrefcount(value) == value_refs
    assert sys.getrefcount(row) == row_refs
    assert (sys.getrefcount(Record), sys.getrefcount(ContainerRecord)) == class_refs


def test_a_record_in_a_reference_cycle_is_collected() -> None:
    collected: list[bool] = []

    class Witness:
        def __del__(self) -> None:
            collected.append(True)

    holder: list[Any] = [Witness()]
    (record,) = ResultMeta(["holder"]).make_all([(holder,)])
    holder.append(record)  # record -> row -> holder -> record
    del holder, record
    gc.collect()
    assert collected == [True]


def test_a_record_in_a_cycle_made_through_a_converted_value_is_collected() -> None:
    collected: list[bool] = []

    class Witness:
        def __del__(self) -> None:
            collected.append(True)

    # The driver's row holds only text; converting it makes a container (as JSON does,
    # whose type the compiler reports as not returning atoms).
    meta = ResultMeta(["doc"], [lambda text: {"text": text}], atoms=False)
    (record,) = meta.make_all([("{}",)])
    record["doc"]["self"] = record  # record -> values -> dict -> record
    record["doc"]["witness"] = Witness()
    del record
    gc.collect()
    assert collected == [True]


@pytest.mark.skipif(not SPEEDUPS, reason="in Python every record is known to the collector")
def test_only_records_that_may_hold_a_container_are_known_to_the_collector() -> None:
    plain, nested, with_uuid = ResultMeta(["a", "b"]).make_all(
        [("text", 1), ("text", [1]), ("text", uuid.uuid4())]
    )
    assert type(plain) is Record and not gc.is_tracked(plain)
    assert type(with_uuid) is Record and not gc.is_tracked(with_uuid)  # a UUID is immutable
    assert type(nested) is ContainerRecord and gc.is_tracked(nested)  # its list could lead back
    # Values that converting turns into containers (JSON): the compiler says so.
    (converted,) = ResultMeta(["a"], [lambda v: [v]], atoms=False).make_all([("text",)])
    assert type(converted) is ContainerRecord and gc.is_tracked(converted)
    assert converted["a"] == ["text"]


@pytest.mark.parametrize(
    ("type_", "atoms"),
    [
        (sa.Integer(), True),
        (sa.BigInteger(), True),
        (sa.String(10), True),
        (sa.Text(), True),
        (sa.Float(), True),
        (sa.Double(), True),
        (sa.Numeric(10, 2), True),
        (sa.Boolean(), True),
        (sa.DateTime(timezone=True), True),
        (sa.Date(), True),
        (sa.Time(), True),
        (sa.Interval(), True),
        (sa.LargeBinary(), True),
        (sa.Uuid(), True),
        (sa.types.NullType(), True),  # raw SQL: make_all() looks at each value
        (sa.JSON(), False),
        (sa.ARRAY(sa.Integer()), False),
        (sa.Enum("a", "b"), False),
        (sa.PickleType(), False),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value),
)
def test_which_column_types_return_atoms(type_: Any, atoms: bool) -> None:
    # A result with any column of a type that may return a container is made of
    # ContainerRecords, which the garbage collector knows.
    assert returns_atoms(type_) is atoms
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("x", type_))
    statement = Compiler(sqlite.dialect()).compile(sa.select(table), None).statement
    meta = statement.meta(("id", "x"))
    assert type(meta.make((1, None))) is (Record if atoms else ContainerRecord)


def test_a_converted_record_reads_like_any_other() -> None:
    # A plain record keeps its converted values in a sequence of its own (in C, one the
    # garbage collector does not know); a ContainerRecord in a list.
    for atoms in (True, False):
        meta = ResultMeta(["a", "b", "c"], [None, str.upper, None], atoms=atoms)
        (record,) = meta.make_all([(1, "x", 2.5)])
        assert record["b"] == record.b == record[1] == record[-2] == "X"
        assert record[0:2] == (1, "X") or record[0:2] == [1, "X"]
        assert list(record.values()) == [1, "X", 2.5]
        assert record.items() == [("a", 1), ("b", "X"), ("c", 2.5)]
        assert record == (1, "X", 2.5)
        assert record == {"a": 1, "b": "X", "c": 2.5}
        copied = pickle.loads(pickle.dumps(record))
        assert copied == record and repr(copied) == repr(record) == "<Record a=1, b='X', c=2.5>"
        with pytest.raises(IndexError):
            record[3]
        if SPEEDUPS:
            assert gc.is_tracked(record._row()) is not atoms


def test_record_classes() -> None:
    assert issubclass(ContainerRecord, Record)
    assert issubclass(Record, Mapping)
    assert Record.__module__ == "dbaccess.record" and Record.__qualname__ == "Record"
    assert Record.__doc__ and Record.__doc__.startswith("A result row.")


def test_a_record_read_before_it_holds_a_row_fails_cleanly() -> None:
    empty = Record.__new__(Record)
    # The C part says TypeError; the Python one finds its slots unset.
    expected = TypeError if SPEEDUPS else AttributeError
    with pytest.raises(expected):
        empty["a"]
    with pytest.raises(expected):
        empty._row()


def test_a_record_refuses_a_meta_of_another_type() -> None:
    with pytest.raises((TypeError, AttributeError)):
        Record(object(), (1,), (1,))["a"]  # type: ignore[arg-type]


def test_a_failing_conversion_propagates_and_the_row_stays_unconverted() -> None:
    def refuse(value: Any) -> Any:
        raise ValueError(f"cannot convert {value!r}")

    (record,) = ResultMeta(["a"], [refuse]).make_all([("x",)])
    for _ in range(2):  # the second read tries again rather than reading garbage
        with pytest.raises(ValueError, match="cannot convert 'x'"):
            record["a"]
    assert record._raw == ("x",)


class _Moment(datetime.datetime):
    """A datetime subclass: its text is the dialect's business, not the fast path's."""


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(1, 1, 1),
        datetime.datetime(999, 12, 31, 23, 59, 59),
        datetime.datetime(2001, 2, 3, 4, 5, 6, 7),
        datetime.datetime(2024, 1, 1, 0, 0, 1),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999_999),
        datetime.datetime(2024, 3, 31, 2, 30, fold=1),
        datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc),
        _Moment(2024, 1, 1, 12, 0, 0, 5),
        datetime.date(2024, 1, 1),
        None,
    ],
)
def test_sqlite_datetimes_bind_as_the_dialects_own_text(value: Any) -> None:
    # The SQLite DateTime processor writes naive datetimes itself (in C where built, in
    # Python otherwise); every value, those it hands back to the dialect included, must
    # come out as SQLAlchemy's own processor writes it.
    dialect = sqlite.dialect()
    ours = bind_processor(sa.DateTime(), dialect)
    theirs = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value)
