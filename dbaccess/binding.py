"""Binding: a statement's arguments from the caller's values.

Two paths give the same arguments (tests/test_binding_paths.py checks it): the fast one,
when every parameter takes the caller's value of its own name, picks the values with
``operator.itemgetter`` and converts them by the parameters' types; the general one
goes through SQLAlchemy's ``construct_params()`` (literal values of a Core statement,
Python-side defaults, ``IN`` lists) and ``construct_expanded_state()``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from .errors import DataError, InterfaceError, ProgrammingError
from .processors import Processor, converter

if TYPE_CHECKING:
    from .statement import Statement

__all__ = ["EMPTY", "bind", "binder", "check_values", "names_of", "refused"]

EMPTY: Mapping[str, Any] = MappingProxyType({})


class _DefaultContext:
    """The part of SQLAlchemy's execution context that column default callables use."""

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        self.current_parameters = parameters

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> Mapping[str, Any]:
        return self.current_parameters


def with_defaults(
    defaults: tuple[tuple[str, Any], ...], values: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Fill in the Python-side defaults SQLAlchemy leaves to its execution context."""
    filled = dict(values)
    context = _DefaultContext(filled)
    for key, default in defaults:
        if key not in values:
            filled[key] = default.arg(context) if default.is_callable else default.arg
    return filled


def names_of(names: set[str]) -> str:
    return ", ".join(repr(name) for name in sorted(names))


def check_values(values: Any) -> Mapping[str, Any]:
    if type(values) is dict:
        return values
    if values is None:
        return EMPTY
    if not isinstance(values, Mapping):
        raise InterfaceError(
            f"query values must be a mapping of parameter names to values, "
            f"not {type(values).__name__}"
        )
    return values


def binder(
    names: tuple[str, ...], processors: tuple[Processor | None, ...]
) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """values -> the arguments for parameters ``names``, converted by ``processors``."""
    if not names:
        return lambda values: ()
    get: Callable[[Mapping[str, Any]], Any] = operator.itemgetter(*names)
    if len(names) == 1:
        (name,) = names

        def get(values: Mapping[str, Any]) -> tuple[Any, ...]:
            return (values[name],)

    pairs = [(position, process) for position, process in enumerate(processors) if process]
    if not pairs:
        return get
    convert = converter(pairs)
    return lambda values: convert(get(values))


def bind(
    statement: Statement,
    values: Mapping[str, Any],
    extracted: Sequence[BindParameter[Any]] | None,
) -> tuple[str, Sequence[Any]]:
    if statement.defaults:
        values = with_defaults(statement.defaults, values)
    if statement.binder is not None:
        try:
            return statement.sql, statement.binder(values)
        except KeyError:
            pass  # a parameter without a value: a literal of the query, or an error
        except (ValueError, TypeError) as exc:
            raise refused(statement, values, exc) from exc
    missing = statement.required - values.keys()
    if missing:
        raise ProgrammingError(f"missing value for parameter {names_of(set(missing))}")
    processors = statement.processors
    compiled = statement.compiled
    assert isinstance(compiled, SQLCompiler)  # only SQL statements take parameters
    try:
        # Unescaped names: the ones positiontup holds (a column named "a b" is
        # escaped to "a_b" in SQLAlchemy's own parameter dict).
        params = compiled.construct_params(
            values, extracted_parameters=extracted, escape_names=False
        )
        if not statement.expanding:
            return statement.sql, [
                params[name] if process is None else process(params[name])
                for name, process in zip(statement.names, processors)
            ]
        state = compiled.construct_expanded_state(params, escape_names=False)
        by_name = dict(zip(statement.names, processors))
        extra = state.processors
        args = []
        for name in state.positiontup or ():
            value = state.parameters[name]
            process = extra.get(name) or by_name.get(name)
            args.append(value if process is None else process(value))
    except sa_exc.InvalidRequestError as exc:
        raise ProgrammingError(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise refused(statement, values, exc) from exc
    return state.statement, args


def refused(statement: Statement, values: Mapping[str, Any], exc: Exception) -> DataError:
    """The error for a value its parameter's type refuses, naming the parameter."""
    for name, process in zip(statement.names, statement.processors):
        if process is not None and name in values:
            try:
                process(values[name])
            except (ValueError, TypeError):
                kind = type(values[name]).__name__
                return DataError(f"parameter {name!r} refuses its value (a {kind}): {exc}")
    return DataError(f"cannot bind the values: {exc}")
