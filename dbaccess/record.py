"""Record: one result row, of the same classes on every backend.

Rows are built and read in C (dbaccess/_record.c) where it was compiled at install,
else by the same code in Python (dbaccess/_record_fallback.py); ``DBACCESS_PURE_PYTHON=1``
chooses the Python one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, KeysView, Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

from .errors import InterfaceError
from .processors import Processor

if TYPE_CHECKING or os.environ.get("DBACCESS_PURE_PYTHON"):
    from ._record_fallback import MetaBase, RecordBase, make_all, untracked_subclass
else:
    try:
        from ._record import MetaBase, RecordBase, make_all, untracked_subclass
    except ImportError:  # not compiled (no C compiler at install): the same in Python
        from ._record_fallback import MetaBase, RecordBase, make_all, untracked_subclass

__all__ = ["Record", "RecordKeys", "ResultMeta"]

#: True where rows are built and read in C.
SPEEDUPS = RecordBase.__module__ == "dbaccess._record"


class ResultMeta(MetaBase):
    """What every row of one result shares: column names, lookups and processors."""

    __slots__ = ("_record_class", "keys", "names")

    def __init__(
        self,
        keys: Sequence[str],
        processors: Sequence[Processor | None] = (),
        columns: Sequence[Any] = (),
        *,
        atoms: bool = True,
    ) -> None:
        """``atoms``: whether every column's type returns atoms (numbers, text,
        datetimes); when not, every row is a ContainerRecord."""
        self.keys = tuple(keys)
        index: dict[Any, int | None] = {}
        ambiguous: set[str] = set()
        for position, key in enumerate(self.keys):
            if key in index:
                ambiguous.add(key)
            else:
                index[key] = position
        for key in ambiguous:
            # Not a position: the read fails the fast lookup, and the slow path of
            # Record.__getitem__ then reports the name as ambiguous.
            index[key] = None
        #: The names a record yields (iteration, keys()): a duplicated name as a
        #: _DuplicateName, which reads its own column (see there).
        self.names: tuple[str, ...] = (
            tuple(
                _DuplicateName(key, position) if key in ambiguous else key
                for position, key in enumerate(self.keys)
            )
            if ambiguous
            else self.keys
        )
        # Columns of a Core query: `row[table.c.name]` finds the column by identity.
        for position, column in enumerate(columns[: len(self.keys)]):
            index[column] = position
        # Positions too, so that every lookup is one dict access.
        width = len(self.keys)
        for position in range(width):
            index[position] = index[position - width] = position
        self.index = index
        #: (position, processor) for the columns that need converting.
        self.processors = tuple(
            (position, processor)
            for position, processor in enumerate(processors[:width])
            if processor is not None
        )

        # A record is of a class the garbage collector does not see (allocating one per
        # row otherwise triggers a full collection every few results) unless one of its
        # values is or may become a container, through which a reference cycle could
        # come back to it: make_all() looks at the driver's values, and here the
        # processors say whether what they return can be one (a dict from JSON).
        self._record_class = Record if atoms else ContainerRecord

    def make(self, row: Sequence[Any]) -> Record:
        """Wrap a driver row; its values are converted when the row is first read."""
        return self.make_all((row,))[0]

    def make_all(self, rows: Sequence[Sequence[Any]]) -> list[Record]:
        """Wrap every driver row of a result."""
        return make_all(self._record_class, ContainerRecord, self, rows)


if TYPE_CHECKING:
    _Mapping = Mapping[str, Any]
else:
    # At run time Record is registered as a Mapping instead (end of module): ABCMeta
    # as metaclass would keep untracked_subclass() from deriving from it.
    _Mapping = object


class _RecordMethods(RecordBase, _Mapping):
    """What a record does beyond reading one value (RecordBase does that)."""

    # _meta, _raw (the driver's row) and _values (the converted values, None until the
    # first read; the driver's row itself when no column needs converting) are slots of
    # RecordBase, which also reads rows: `record[key]` and `_row()`.
    __slots__ = ()

    _meta: ResultMeta

    @property
    def _mapping(self) -> Mapping[Any, Any]:
        return self

    def _slow_getitem(self, values: Sequence[Any], key: Any) -> Any:
        if isinstance(key, slice):
            # A tuple, whatever holds the values (the driver's row, a list of converted
            # values, the C record's own), as asyncpg's records and SQLAlchemy's rows give.
            return tuple(values[key])
        index = self._meta.index
        name = key
        if type(key) is not str and isinstance(getattr(key, "name", None), str):
            # A column object of another select, with a name this result has.
            name = key.name
        try:
            position = index[name]
        except (KeyError, TypeError):
            if isinstance(key, int) and not isinstance(key, bool):
                raise IndexError(f"Record index {key} out of range ({len(self)} columns)") from None
            raise KeyError(key) from None
        if position is None:
            if type(key) is _DuplicateName and key.reads(self._meta.keys):
                return values[key.position]
            raise InterfaceError(
                f"column name {name!r} is ambiguous: the result has it more than once; "
                "read it by position or by column object, or label the columns"
            )
        return values[position]

    def __getattr__(self, name: str) -> Any:
        if name in _SLOTS:  # unset: a record made by __new__ alone holds no row
            raise AttributeError(f"the Record holds no row ({name} is unset)")
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"Record has no column {name!r}; its columns are {', '.join(self._meta.keys)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.names)

    def __len__(self) -> int:
        return len(self._meta.keys)

    def __contains__(self, key: object) -> bool:
        return type(key) is not int and key in self._meta.index

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> RecordKeys:
        return RecordKeys(self)

    def values(self) -> Any:
        return list(self._row())

    def items(self) -> Any:
        return list(zip(self._meta.keys, self._row()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._meta.keys == other._meta.keys and tuple(self._row()) == tuple(other._row())
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        if isinstance(other, tuple):
            return tuple(self._row()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.items())
        return f"<Record {fields}>"

    def __reduce__(self) -> tuple[Any, tuple[tuple[str, ...], tuple[Any, ...]]]:
        # Names and converted values, whatever the protocol: a copy needs no meta.
        return _unpickle, (self._meta.keys, tuple(self._row()))


_SLOTS = frozenset(("_meta", "_raw", "_values"))


class _DuplicateName(str):
    """A column name that a result has more than once, as iterating a record yields it.

    Equal to the plain name, and hashed and pickled as it is, but it knows which of the
    columns it names: ``row["id"]`` is ambiguous and raises, yet ``dict(row)`` and
    ``{name: row[name] for name in row}``, which read the record by each name it
    yields, work as with encode/databases (the last column of a name wins in a dict).
    """

    position: int

    def __new__(cls, name: str, position: int) -> _DuplicateName:
        self = super().__new__(cls, name)
        self.position = position
        return self

    def reads(self, keys: tuple[str, ...]) -> bool:
        """Whether this names a column of a result with these names (not of another)."""
        return self.position < len(keys) and keys[self.position] == self

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        # A copy is the plain name: the position means nothing outside its record.
        return str, (str(self),)


class RecordKeys(KeysView[str]):
    """The column names of a record in order, a duplicated name as often as it appears.

    A set-like view, as ``dict.keys()`` is (equal to a set of the same names), that also
    compares equal to a list or tuple of the same names in the same order (as
    SQLAlchemy's ``RowMapping.keys()`` does).
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, RecordKeys)):
            return list(self) == list(other)
        if isinstance(other, Set):
            return set(self) == other  # as sets, a duplicated name counts once
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(map(str, self))!r})"


class Record(_RecordMethods):
    """A result row.

    Read it as ``row["name"]``, ``row.name``, ``row[0]`` or ``row[table.c.name]``;
    ``row._mapping`` is a read-only mapping of column names to values, so
    ``dict(row._mapping)`` (and ``dict(row)``) give a plain dict. Iterating a
    record yields its column names, as in encode/databases.

    Values are converted by their column types (JSON decoded, datetimes parsed...)
    once, when the row is first read: rows fetched and never read cost no conversion.

    A row whose values include a container (an array, a JSON document) is of the
    subclass ContainerRecord; check rows with ``isinstance(row, Record)``.
    """

    __slots__ = ()


if not TYPE_CHECKING:
    # The same class, made in C so that the garbage collector does not know its
    # instances (a class statement's class always has GC); see dbaccess/_record.c.
    Record = untracked_subclass(_RecordMethods, f"{__name__}.Record", Record.__doc__)


class ContainerRecord(Record):
    """A record with a container among its values, which the garbage collector knows,
    so that a reference cycle through one of its values is collected."""

    __slots__ = ()


# A read-only mapping of column names to values.
Mapping.register(Record)


def _unpickle(keys: tuple[str, ...], values: tuple[Any, ...]) -> Record:
    return ResultMeta(keys).make(values)
