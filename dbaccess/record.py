"""Record: one result row, the same type on every backend."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import InterfaceError
from .processors import Processor

__all__ = ["Record", "ResultMeta"]


class ResultMeta:
    """What every row of one result shares: column names, lookups and processors."""

    __slots__ = ("index", "keys", "processors")

    def __init__(
        self,
        keys: Sequence[str],
        processors: Sequence[Processor | None] = (),
        columns: Sequence[Any] = (),
    ) -> None:
        self.keys = tuple(keys)
        index: dict[Any, int] = {}
        ambiguous: set[str] = set()
        for position, key in enumerate(self.keys):
            if key in index:
                ambiguous.add(key)
            else:
                index[key] = position
        for key in ambiguous:
            index[key] = -1  # looked up by name, refused as ambiguous
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
            for position, processor in enumerate(processors)
            if processor is not None
        )

    def make(self, row: Sequence[Any]) -> Record:
        """Wrap a driver row; its values are converted when the row is first read."""
        return Record(self, row)

    def make_all(self, rows: Sequence[Sequence[Any]]) -> list[Record]:
        return [Record(self, row) for row in rows]

    def convert(self, row: Sequence[Any]) -> list[Any]:
        """Apply the column types' result processors to one driver row."""
        values = list(row)
        for position, processor in self.processors:
            values[position] = processor(values[position])
        return values


class Record(Mapping[str, Any]):
    """A result row.

    Read it as ``row["name"]``, ``row.name``, ``row[0]`` or ``row[table.c.name]``;
    ``row._mapping`` is a read-only mapping of column names to values, so
    ``dict(row._mapping)`` (and ``dict(row)``) give a plain dict. Iterating a
    record yields its column names, as in encode/databases.

    Values are converted by their column types (JSON decoded, datetimes parsed...)
    once, when the row is first read: rows fetched and never read cost no conversion.
    """

    __slots__ = ("_meta", "_pending", "_values")

    def __init__(self, meta: ResultMeta, values: Sequence[Any]) -> None:
        self._meta = meta
        self._values = values
        self._pending = bool(meta.processors)

    def _row(self) -> Sequence[Any]:
        if self._pending:
            self._values = self._meta.convert(self._values)
            self._pending = False
        return self._values

    @property
    def _mapping(self) -> Mapping[Any, Any]:
        return self

    def __getitem__(self, key: Any) -> Any:
        try:
            position: int = self._meta.index[key]
        except (KeyError, TypeError):
            found = self._slow_position(key)
            if found is None:  # a slice
                return self._row()[key]
            position = found
        if position < 0:
            raise InterfaceError(
                f"column name {key!r} is ambiguous: the result has it more than once; "
                "read it by position or by column object, or label the columns"
            )
        return (self._row() if self._pending else self._values)[position]

    def _slow_position(self, key: Any) -> int | None:
        if isinstance(key, slice):
            return None
        if type(key) is not str and isinstance(getattr(key, "name", None), str):
            # A column object of another select, with a name this result has.
            name_position = self._meta.index.get(key.name)
            if name_position is not None:
                return name_position
        if isinstance(key, int) and not isinstance(key, bool):
            raise IndexError(f"Record index {key} out of range ({len(self)} columns)")
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"Record has no column {name!r}; its columns are {', '.join(self._meta.keys)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.keys)

    def __len__(self) -> int:
        return len(self._meta.keys)

    def __contains__(self, key: object) -> bool:
        return type(key) is not int and key in self._meta.index

    def keys(self) -> Any:
        return dict.fromkeys(self._meta.keys).keys()

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

    def __getstate__(self) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        return self._meta.keys, tuple(self._row())

    def __setstate__(self, state: tuple[tuple[str, ...], tuple[Any, ...]]) -> None:
        keys, values = state
        self._meta = ResultMeta(keys)
        self._values = values
        self._pending = False
