"""Compile a query and its values into SQL, driver arguments and result metadata.

Everything SQLAlchemy-specific happens here and in the modules beside it, once, before
a backend sees the query: backends receive a SQL string in their driver's parameter
style and a sequence of arguments already converted by the column types.

The jobs, one module each: this one caches statements and compiles Core expressions
with the dialect of the driver in use, through SQLAlchemy's public API
(``ClauseElement.compile()``); rawsql.py makes raw SQL strings ``text()`` clauses (and
their ``IN`` lists); shapes.py recognises plain Core SELECTs; binding.py makes the
arguments; statement.py holds what a compiled statement knows.

Compiled statements are cached: raw SQL by its text and the shape of its values; plain
Core SELECTs by their shape (shapes.py); other Core expressions by SQLAlchemy's cache
key (the key its own compiled cache uses), except those holding a type without
``cache_ok``, which are compiled on each call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.cache_key import NO_CACHE
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.sql.expression import Executable

from .binding import EMPTY, bind, check_values, names_of, refused
from .errors import InterfaceError, ProgrammingError
from .processors import bind_processor, result_processor, returns_atoms
from .rawsql import RETURNING, kind_of, text_clause
from .shapes import shape_of
from .statement import CompiledQuery, Statement

__all__ = ["CompiledQuery", "Compiler", "Statement"]

Query = ClauseElement | str

_Entry = TypeVar("_Entry")


class Compiler:
    """Compiles queries for one dialect and caches what it compiled.

    Raw SQL is cached by its text and the names and types of its values; Core
    expressions by SQLAlchemy's own cache key, so a Core query costs what raw SQL costs
    once its shape has been seen.
    """

    def __init__(self, dialect: Dialect, cache_size: int = 512) -> None:
        self.dialect = dialect
        self._arrays = dialect.name == "postgresql"
        self._cache_size = cache_size
        self._text_cache: dict[tuple[Any, ...], Statement] = {}
        self._core_cache: dict[tuple[Any, ...], Statement] = {}
        #: A shape's statement and where each parameter is among its literals; None for
        #: a shape whose parameters are not all literals (it takes the cache key).
        self._shape_cache: dict[Any, tuple[Statement, tuple[int, ...]] | None] = {}

    def compile(self, query: Query, values: Mapping[str, Any] | None) -> CompiledQuery:
        """Compile one query with one set of values."""
        values = check_values(values)
        if type(query) is str:
            statement = self._text_statement(query, values)
            return CompiledQuery(*bind(statement, values, None), statement)
        if not values:
            shaped = self._shaped(query)
            if shaped is not None:
                return shaped
        statement, extracted = self._core_statement(query, values)
        return CompiledQuery(*bind(statement, values, extracted), statement)

    def _shaped(self, query: Any) -> CompiledQuery | None:
        """A plain SELECT recognised by its shape (see shapes.py), or None."""
        found = shape_of(query)
        if found is None:
            return None
        shape, literals = found
        cache = self._shape_cache
        if shape in cache:
            entry = cache[shape]
        else:
            entry = self._compile_shape(query, literals)
            self._remember(cache, shape, entry)
        if entry is None:
            return None  # a shape whose parameters are not all its literals
        statement, positions = entry
        try:
            args = [
                literals[at].value if process is None else process(literals[at].value)
                for at, process in zip(positions, statement.processors)
            ]
        except (ValueError, TypeError) as exc:
            raise refused(statement, EMPTY, exc) from exc
        return CompiledQuery(statement.sql, args, statement)

    def _compile_shape(
        self, query: ClauseElement, literals: list[BindParameter[Any]]
    ) -> tuple[Statement, tuple[int, ...]] | None:
        """Compile a shape's first query: each parameter's place among its literals."""
        statement = self._compile_core(query, EMPTY, (), None)
        compiled = statement.compiled
        if statement.expanding or statement.defaults or not isinstance(compiled, SQLCompiler):
            return None
        place = {id(literal): at for at, literal in enumerate(literals)}
        positions = tuple(place.get(id(compiled.binds[name]), -1) for name in statement.names)
        if -1 in positions:
            return None  # a parameter SQLAlchemy made of something else
        return statement, positions

    def compile_many(
        self, query: Query, many_values: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, list[Sequence[Any]]]]:
        """Compile one query for many sets of values: one (sql, [args...]) per shape."""
        if isinstance(many_values, (str, bytes, Mapping)) or not isinstance(many_values, Sequence):
            raise InterfaceError(
                "execute_many() takes a list of mappings of values, "
                f"not {type(many_values).__name__}"
            )
        batches: list[tuple[str, list[Sequence[Any]]]] = []
        batch: list[Sequence[Any]] = []
        shape: tuple[str, ...] | None = None
        statement: Statement | None = None
        extracted: Sequence[BindParameter[Any]] | None = None
        # The fast path for rows with the keys of the row that compiled the statement:
        # the binder of a Core statement whose parameters are exactly those keys.
        same_keys: Callable[[Mapping[str, Any]], Sequence[Any]] | None = None
        width = 0
        for values in many_values:
            if same_keys is not None and type(values) is dict and len(values) == width:
                try:
                    batch.append(same_keys(values))
                    continue
                except KeyError:
                    pass  # other keys than the statement's: compiled below
                except (ValueError, TypeError):
                    pass  # a value its type refuses: _bind below names it
            values = check_values(values)
            if type(query) is str:
                # Raw SQL converts values by their Python types: look up each row's shape.
                statement = self._text_statement(query, values)
            elif statement is None or tuple(values) != shape:
                shape = tuple(values)
                statement, extracted = self._core_statement(query, values)
                # A row of as many keys that has a value for every parameter has
                # exactly these keys (nothing unknown to report, no default to apply).
                exact = not statement.defaults and set(statement.names) == set(shape)
                same_keys = statement.binder if exact else None
                width = len(shape)
            sql, args = bind(statement, values, extracted)
            if not batches or batches[-1][0] != sql:  # new keys, or an IN list of new length
                batch = []
                batches.append((sql, batch))
            batch.append(args)
        return batches

    def _remember(self, cache: dict[Any, _Entry], key: Any, statement: _Entry) -> None:
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]  # the oldest entry
        cache[key] = statement

    def _text_statement(self, sql: str, values: Mapping[str, Any]) -> Statement:
        key: tuple[Any, ...] = (sql, *values, *map(kind_of, values.values()))
        statement = self._text_cache.get(key)
        if statement is None:
            statement = self._compile_text(sql, values)
            self._remember(self._text_cache, key, statement)
        return statement

    def _compile_text(self, sql: str, values: Mapping[str, Any]) -> Statement:
        clause, returns_rows, is_insert = text_clause(sql, values, self._arrays)
        return self._make(clause, values, returns_rows=returns_rows, is_insert=is_insert)

    def _core_statement(
        self, query: Any, values: Mapping[str, Any]
    ) -> tuple[Statement, Sequence[BindParameter[Any]] | None]:
        if not (isinstance(query, ClauseElement) and isinstance(query, Executable)):
            raise InterfaceError(
                "a query must be a SQL string or a SQLAlchemy Core statement that can be "
                f"executed (select, insert, text, DDL...), not {type(query).__name__}"
            )
        column_keys = tuple(values) if isinstance(query, UpdateBase) else ()
        # SQLAlchemy's structural key of the statement (its own compiled cache uses it):
        # equal for queries that differ only in literal values, which it extracts.
        generate = getattr(query, "_generate_cache_key", None)
        cache_key = _quietly(generate) if generate is not None else None
        if cache_key is None:  # DDL, or a construct SQLAlchemy does not cache
            return self._compile_core(query, values, column_keys, None), None
        # The names of the values too: compiling checks them, so an unknown name is
        # refused on every call, not only on the first.
        key = (cache_key.key, column_keys or tuple(values))
        statement = self._core_cache.get(key)
        if statement is None:
            statement = self._compile_core(query, values, column_keys, cache_key)
            # A type without cache_ok stands in the key as NO_CACHE, whatever its
            # state: two instances (a TypeDecorator's arguments) would share one entry,
            # and the second would be served the first's processors. Such a query is
            # compiled anew on each call, as encode/databases compiled every query.
            if not _uncacheable(cache_key.key):
                self._remember(self._core_cache, key, statement)
        return statement, cache_key.bindparams

    def _compile_core(
        self,
        query: ClauseElement,
        values: Mapping[str, Any],
        column_keys: tuple[str, ...],
        cache_key: Any,
    ) -> Statement:
        if isinstance(query, TextClause):
            returns_rows = bool(RETURNING.search(query.text))
        else:
            returns_rows = bool(getattr(query, "is_select", False))
        return self._make(
            query,
            values,
            column_keys=list(column_keys) if isinstance(query, UpdateBase) else None,
            cache_key=cache_key,
            returns_rows=returns_rows,
            is_insert=bool(getattr(query, "is_insert", False)),
        )

    def _make(
        self,
        clause: ClauseElement,
        values: Mapping[str, Any],
        *,
        returns_rows: bool,
        is_insert: bool,
        column_keys: list[str] | None = None,
        cache_key: Any = None,
    ) -> Statement:
        dialect = self.dialect
        options: dict[str, Any] = {}
        if column_keys is not None:
            options["column_keys"] = column_keys
        if cache_key is not None:
            options["cache_key"] = cache_key
        try:
            compiled = clause.compile(dialect=dialect, **options)
        except sa_exc.UnsupportedCompilationError as exc:
            raise ProgrammingError(f"cannot compile the query for {dialect.name}: {exc}") from exc
        except (sa_exc.CompileError, sa_exc.ArgumentError) as exc:
            raise ProgrammingError(f"cannot compile the query: {exc}") from exc
        if "\x00" in compiled.string:
            raise ProgrammingError("the SQL text contains a NUL byte")
        if not isinstance(compiled, SQLCompiler):  # DDL: no parameters, no rows
            return Statement(compiled)

        binds = compiled.binds
        names = tuple(compiled.positiontup or ())
        expanding = bool(compiled.post_compile_params or compiled.literal_execute_params)
        columns: tuple[Any, ...]
        implicit = False
        pk_position = None
        if is_insert and isinstance(clause, UpdateBase) and not expanding:
            primary_key = list(getattr(clause.table, "primary_key", ()))
            if len(primary_key) == 1 and primary_key[0].key in names:
                pk_position = names.index(primary_key[0].key)
        if isinstance(clause, UpdateBase):
            columns = tuple(compiled.effective_returning or ())
            # RETURNING that the user did not ask for reports the new primary key.
            implicit = bool(columns) and not len(clause.exported_columns)
        else:
            columns = tuple(getattr(clause, "selected_columns", ()))
        accepted = set(binds)
        if column_keys and isinstance(clause, UpdateBase):
            # SQLAlchemy skips keys that name no column: a misspelt one would vanish.
            columns_of_table = set(getattr(clause.table, "c", {}).keys())
            accepted |= set(column_keys) & columns_of_table
        result_processors = tuple(result_processor(c.type, dialect) for c in columns)
        unknown = set(values) - accepted
        if unknown:
            raise ProgrammingError(
                f"unknown parameter {names_of(unknown)} for this query; "
                f"its parameters are: {names_of(accepted - set(unknown)) or 'none'}"
            )
        return Statement(
            compiled,
            names=names,
            processors=tuple(bind_processor(binds[name].type, dialect) for name in names),
            expanding=expanding,
            # Parameters named by their own key take the caller's value of that name.
            by_key=all(binds[name].key == name for name in names),
            required=frozenset(n for n in names if binds[n].required),
            defaults=(
                *((c.key, c.default) for c in compiled.insert_prefetch),
                *((c.key, c.onupdate) for c in compiled.update_prefetch),
            ),
            returns_rows=returns_rows or bool(columns),
            is_insert=is_insert,
            implicit_returning=implicit,
            pk_position=pk_position,
            result_columns=columns,
            result_processors=result_processors,
            result_atoms=all(returns_atoms(column.type) for column in columns),
        )


#: SQLAlchemy's warning about a construct that cannot be part of a cache key (a custom
#: FunctionElement or ColumnElement written without `inherit_cache`, as many apps written
#: for encode/databases have). encode/databases never asked for cache keys, so it never
#: showed this warning; such a query is compiled anew on each call, as it was there.
_UNCACHEABLE = (
    r"Class .* will not make use of SQL compilation caching"
    # A TypeDecorator or UserDefinedType without `cache_ok`: see _uncacheable().
    r"|.* will not produce a cache key because the ``cache_ok``"
)


def _uncacheable(key: Any) -> bool:
    """Whether a cache key holds SQLAlchemy's NO_CACHE (a type without cache_ok)."""
    if key is NO_CACHE:
        return True
    if type(key) is tuple:
        return any(_uncacheable(part) for part in key)
    return False


def _quietly(generate: Callable[[], Any]) -> Any:
    """Generate a statement's cache key without SQLAlchemy's warnings about caching."""
    # catch_warnings() costs 1-3 us a call on this project's (busy) machine, next to the
    # 7 us or more the key takes. It cannot be kept to the calls that need it: SQLAlchemy
    # warns once per class, at the first key that meets it, deep inside the query.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _UNCACHEABLE, sa_exc.SAWarning)
        return generate()
