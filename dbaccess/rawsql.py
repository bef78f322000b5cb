"""Raw SQL: a SQL string with ``:name`` parameters made a ``text()`` clause.

A list or tuple bound right after ``IN`` expands to one parameter per item (on
PostgreSQL, becomes one array parameter compared with ``= ANY``); on PostgreSQL a value
whose type SQLAlchemy would guess wrong is given the right one (see below).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.types import BigInteger, NullType, TypeEngine

from .binding import names_of
from .errors import ProgrammingError

__all__ = ["RETURNING", "kind_of", "text_clause"]

RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_INSERT = re.compile(r"^\s*(INSERT|REPLACE)\b", re.IGNORECASE)


_PARAMETER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _in_list(name: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?P<not>NOT\s+)?IN\s*(?:\(\s*:{name}\s*\)|:{name})(?!\w)", re.IGNORECASE)


def _any_or_all(name: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return f"<> ALL(:{name})" if match.group("not") else f"= ANY(:{name})"

    return replace


#: The kind of an integer that does not fit in 32 bits.
_BIG_INT = "bigint"

#: Raw SQL on PostgreSQL: the type a parameter is cast to, where SQLAlchemy's guess from
#: the Python value would be wrong. No cast for strings: the server infers their type
#: from where they go (json, uuid, inet, an enum...), as raw asyncpg lets it. BIGINT for
#: integers beyond 32 bits, which `::INTEGER` refuses (smaller ones keep `::INTEGER`,
#: which functions taking an int4, such as pg_terminate_backend(), need).
_POSTGRES_RAW_TYPES: dict[Any, Callable[[], TypeEngine[Any]]] = {
    str: NullType,
    _BIG_INT: BigInteger,
}


def kind_of(value: Any) -> Any:
    kind = type(value)
    if kind is list or kind is tuple:
        return (kind, type(value[0]) if value else None)
    if kind is int and not -0x80000000 <= value <= 0x7FFFFFFF:
        return _BIG_INT
    return kind


def text_clause(sql: str, values: Mapping[str, Any], arrays: bool) -> tuple[TextClause, bool, bool]:
    """The clause for ``sql`` with these values, whether it returns rows (RETURNING),
    and whether it inserts; ``arrays``: PostgreSQL's array parameters for IN lists."""
    if "\x00" in sql:
        raise ProgrammingError("the SQL text contains a NUL byte")
    declared = set(_PARAMETER.findall(sql))
    unknown = set(values) - declared
    if unknown:
        raise ProgrammingError(
            f"unknown parameter {names_of(unknown)} for this query; "
            f"its parameters are: {names_of(declared) or 'none'}"
        )
    binds: list[BindParameter[Any]] = []
    for name, value in values.items():
        in_list = _in_list(name)
        raw_type = _POSTGRES_RAW_TYPES.get(kind_of(value)) if arrays else None
        if raw_type is not None:
            binds.append(bindparam(name, value, type_=raw_type()))
        elif not isinstance(value, (list, tuple)) or not in_list.search(sql):
            binds.append(bindparam(name, value))
        elif arrays:
            # PostgreSQL compares with an array parameter: one statement for every
            # list length (and an empty list needs no element type).
            sql = in_list.sub(_any_or_all(name), sql)
            binds.append(bindparam(name, list(value), type_=NullType()))
        else:
            # `IN (:ids)` would expand to `IN ((1, 2))`, a row, not a list.
            sql = in_list.sub(rf"\g<not>IN :{name}", sql)
            binds.append(bindparam(name, value, expanding=True))
    return (
        text(sql).bindparams(*binds),
        bool(RETURNING.search(sql)),
        bool(_INSERT.match(sql)),
    )
