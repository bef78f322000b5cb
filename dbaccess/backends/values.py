"""Values a backend cannot take, and the error that says which one.

Where a driver would change a value without a word (SQLite stores NaN as NULL; the
MySQL drivers store the ``str()`` of an object they do not know, asyncmy even of a
dict), the backend checks the arguments before sending them, in one pass, looking only
at values of the few types concerned. Where a driver refuses a value with an exception
of its own (a codec's, a binding error), nothing is checked beforehand: on that error
path alone the backend looks for the value again, to say which one and why.

The error carries the argument's position (``DBAccessError.argument_index``); the connection,
which knows the parameters' names, names the parameter in the message
(``DBAccessError.parameter``).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DataError, DBAccessError, translate

__all__ = ["Problem", "a", "container_problem", "find_refused", "refused", "text_problem"]

#: What is wrong with a value for a backend, or None when it takes it.
Problem = Callable[[Any], "str | None"]


def a(kind: str) -> str:
    """``kind`` with its indefinite article: "a dict", "an int"."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def text_problem(value: str) -> str | None:
    """Why ``value`` is not text a database can store (a lone surrogate), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end]
        return f"a str that is not valid Unicode text ({exc.reason}: {bad!r} at index {exc.start})"
    return None


def container_problem(value: Any) -> str | None:
    """Why a dict, list, tuple or set cannot be bound as one value, or None."""
    if isinstance(value, dict):
        return (
            "a dict cannot be bound as one value; store it in a JSON column, or "
            "serialise it (json.dumps) first"
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = a(type(value).__name__)
        return f"{kind} cannot be bound as one value (only to `IN (:name)` in raw SQL)"
    return None


def non_finite(value: Any) -> bool:
    """Whether ``value`` is a float or Decimal NaN or infinity."""
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    return isinstance(value, decimal.Decimal) and not value.is_finite()


def find_refused(args: Sequence[Any], problem: Problem) -> tuple[int, str] | None:
    """The position of the first argument ``problem`` finds wrong, and what is wrong."""
    for position, value in enumerate(args):
        found = problem(value)
        if found is not None:
            return position, found
    return None


def refused(
    position: int | None,
    message: str,
    orig: BaseException | None = None,
    cls: type[DBAccessError] = DataError,
) -> DBAccessError:
    """The error for a value the backend cannot take (the driver's ``orig`` kept)."""
    error = cls(message) if orig is None else translate(orig, cls, message)
    error.argument_index = position
    return error


def driver_refused(
    exc: BaseException,
    args: Sequence[Any],
    problem: Problem,
    cls: type[DBAccessError] = DataError,
) -> DBAccessError:
    """The error for a driver's refusal of one of ``args``: the value found again when
    ``problem`` recognises it, the driver's message (never an empty one) otherwise."""
    found = find_refused(args, problem)
    if found is not None:
        position, message = found
        return refused(position, message, exc, cls)
    text = str(exc) or f"the driver refused the values ({type(exc).__name__}, with no message)"
    return refused(None, text, exc, cls)
