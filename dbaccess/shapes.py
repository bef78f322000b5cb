"""Recognise the common Core SELECTs without SQLAlchemy's cache key.

A point query such as ``select(t).where(t.c.id == 5)``, built anew for each call as
applications do, costs about 18 us to key with ``_generate_cache_key()`` (SQLAlchemy's
generic traversal), more than the query itself takes on SQLite. :func:`shape_of` keys
the few constructs such queries are made of in a fraction of that, and hands back their
literal values in the order it met them.

It is exact or it declines. Every object it keys is of a known class, exactly (no
subclass, whose compilation may differ); every attribute an instance holds is one it
keys or knows to be at its default (anything else: another clause, an option, ORM
annotations, a later SQLAlchemy's new state); class-level attributes are the same for
every instance of a class. A statement it declines (``None``) takes SQLAlchemy's cache
key as before. Tables and columns are keyed by identity: the cache entry holds the
compiled statement, which holds them, so no identity is reused while it lives; a
table's column count is in the key, so that a column appended later is seen. Types
are keyed as SQLAlchemy keys them, and only SQLAlchemy's own.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import elements, selectable

__all__ = ["shape_of"]

Shape = tuple[Any, ...]

# The instance attributes each class may hold to be keyed: all of those SQLAlchemy 2.0
# and 2.1 set when these constructs are built, with what must be keyed of each.
_SELECT_KEYED = ("_raw_columns", "_where_criteria", "_order_by_clauses")
_SELECT_ATTRIBUTES = frozenset(
    {
        *_SELECT_KEYED,
        "_label_style",
        "_limit_clause",
        "_offset_clause",
        # Set (to None) by limit() and offset(); anything else declines.
        "_fetch_clause",
        "_fetch_clause_options",
    }
)
_BINARY_ATTRIBUTES = frozenset(
    {
        "left",
        "right",
        "operator",
        "negate",
        "modifiers",
        "type",
        "_orig",  # (left, right) as given: for __bool__ only
        "_is_implicitly_boolean",
        "_propagate_attrs",
    }
)
_CLAUSE_LIST_ATTRIBUTES = frozenset(
    {"clauses", "operator", "group", "type", "_is_implicitly_boolean"}
)
_UNARY_ATTRIBUTES = frozenset(
    {"element", "operator", "modifier", "type", "wraps_column_expression", "_propagate_attrs"}
)
_CONSTANTS = (elements.Null, elements.True_, elements.False_)
_LITERALS = (elements.BindParameter, selectable._OffsetLimitParam)


class _Declined(Exception):
    """Raised inside the walk: the statement holds something not keyed here."""


def shape_of(query: Any) -> tuple[Shape, list[elements.BindParameter[Any]]] | None:
    """The shape of a plain SELECT and its literal parameters in order, or None."""
    if type(query) is not sa.Select:
        return None
    state = query.__dict__
    if not _SELECT_ATTRIBUTES.issuperset(state):
        return None
    if state.get("_fetch_clause") is not None or state.get("_fetch_clause_options"):
        return None
    literals: list[elements.BindParameter[Any]] = []
    try:
        shape = (
            tuple(_element(column, literals) for column in query._raw_columns),
            tuple(_element(criterion, literals) for criterion in query._where_criteria),
            tuple(_element(clause, literals) for clause in query._order_by_clauses),
            query._label_style,
            _optional(state.get("_limit_clause"), literals),
            _optional(state.get("_offset_clause"), literals),
        )
    except _Declined:
        return None
    return shape, literals


def _optional(element: Any, literals: list[elements.BindParameter[Any]]) -> Any:
    return None if element is None else _element(element, literals)


def _element(element: Any, literals: list[elements.BindParameter[Any]]) -> Any:
    kind = type(element)
    if kind is sa.Column:
        if type(element.table) is not sa.Table:
            raise _Declined
        return id(element)
    if kind in _LITERALS:
        if not (element.unique and element.callable is None) or (
            element.expanding or element.literal_execute or element.isoutparam
        ):
            raise _Declined  # a named parameter, a callable or a list: not a plain literal
        literals.append(element)
        return ("?", _type(element.type))
    if kind is elements.BinaryExpression:
        state = element.__dict__
        if not _BINARY_ATTRIBUTES.issuperset(state) or state.get("_propagate_attrs"):
            raise _Declined
        modifiers = tuple(element.modifiers.items())  # LIKE's escape= and the like
        if not all(value is None or type(value) is str for _, value in modifiers):
            raise _Declined
        return (
            "binary",
            _element(element.left, literals),
            _element(element.right, literals),
            element.operator,
            element.negate,
            modifiers,
            _type(element.type),
        )
    if kind is elements.BooleanClauseList:
        if not _CLAUSE_LIST_ATTRIBUTES.issuperset(element.__dict__):
            raise _Declined
        return (
            "clauses",
            element.operator,
            element.group,
            tuple(_element(clause, literals) for clause in element.clauses),
        )
    if kind is elements.UnaryExpression:
        state = element.__dict__
        if not _UNARY_ATTRIBUTES.issuperset(state) or state.get("_propagate_attrs"):
            raise _Declined
        return (
            "unary",
            _element(element.element, literals),
            element.operator,
            element.modifier,
            _type(element.type),
        )
    if kind is sa.Table:
        return ("table", id(element), len(element.columns))
    if kind in _CONSTANTS:
        return kind
    raise _Declined


def _type(type_: Any) -> Any:
    """SQLAlchemy's own key of one of its types (memoized on the instance: equal for
    equal types, such as the Integer() of two literals); a type of the application's
    (a TypeDecorator, which may lack cache_ok) declines."""
    if not type(type_).__module__.startswith("sqlalchemy."):
        raise _Declined
    return type_._static_cache_key
