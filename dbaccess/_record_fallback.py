"""The Python twin of dbaccess/_record.c, used where the C module could not be built.

It behaves the same (the record tests run on both) and is the reference for the types:
mypy reads this module. See dbaccess/_record.c for what each part does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, TypeVar

from .processors import converter

__all__ = ["MetaBase", "RecordBase", "make_all", "untracked_subclass"]

_R = TypeVar("_R", bound="RecordBase")


class MetaBase:
    __slots__ = ("_convert", "_processors", "index")

    index: dict[Any, int | None]

    @property
    def processors(self) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        return self._processors

    @processors.setter
    def processors(self, pairs: tuple[tuple[int, Callable[[Any], Any]], ...]) -> None:
        self._processors = pairs
        self._convert = converter(pairs)


class RecordBase:
    __slots__ = ("_meta", "_raw", "_values")

    def __init__(self, meta: MetaBase, raw: Sequence[Any], values: Sequence[Any] | None) -> None:
        self._meta = meta
        self._raw = raw
        self._values = values

    def _row(self) -> Sequence[Any]:
        values = self._values
        if values is None:
            values = self._values = self._raw = self._meta._convert(self._raw)
        return values

    def __getitem__(self, key: Any) -> Any:
        # The hot path: one check, two C-level lookups; anything unusual fails one of
        # the lookups and goes to _slow_getitem.
        values = self._values
        if values is None:  # the first read (written out, as it is hot)
            values = self._values = self._raw = self._meta._convert(self._raw)
        try:
            return values[self._meta.index[key]]  # type: ignore[index]
        except (KeyError, TypeError):
            return self._slow_getitem(values, key)

    def _slow_getitem(self, values: Sequence[Any], key: Any) -> Any:
        raise NotImplementedError  # Record defines it


def make_all(
    cls: type[_R], container_cls: type[_R], meta: MetaBase, rows: Sequence[Sequence[Any]]
) -> list[_R]:
    # Every class here is known to the garbage collector: container_cls, which the C
    # version takes for rows holding a container, is not needed.
    # map() calls the class without a Python loop around it: about 8% faster.
    if meta.processors:
        return list(map(cls, repeat(meta), rows, repeat(None)))
    return list(map(cls, repeat(meta), rows, rows))


def untracked_subclass(base: type[_R], name: str, doc: str | None) -> type[_R]:
    # In C, a class whose instances the garbage collector does not know. Python cannot
    # make one: this is a plain subclass.
    module, _, qualname = name.rpartition(".")
    return type(qualname, (base,), {"__slots__": (), "__module__": module, "__doc__": doc})
