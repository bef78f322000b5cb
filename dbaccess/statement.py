"""A compiled statement, reusable for any values of its shape, and one query ready for
the driver (its SQL, its arguments and its statement).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.sql.compiler import Compiled

from .binding import binder
from .processors import Processor
from .record import ResultMeta

__all__ = ["CompiledQuery", "Statement"]

#: Statements that change a connection's session state, which must not reach the next
#: user of the pooled connection: settings, cursors, prepared statements, temporary
#: objects, session locks and listeners, MySQL user variables and LOCK TABLES, SQLite
#: pragma assignments and attached databases. Matched once per distinct statement (at
#: compile time); a false positive costs one reset of the connection, never a leak.
_CHANGES_SESSION = re.compile(
    r"(?:^|;)\s*(?:(?:SET|RESET|LISTEN|UNLISTEN|DECLARE|PREPARE|DEALLOCATE|DISCARD|USE"
    r"|ATTACH|DETACH|HANDLER|LOCK\s+TABLES|CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?)\b"
    r"|PRAGMA\s+[\w.]+\s*=)"
    r"|\b(?:pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock"
    r"|pg_try_advisory_lock_shared|set_config|GET_LOCK)\s*\("
    r"|@\w+\s*:=|\bINTO\s+@",
    re.IGNORECASE,
)


class Statement:
    """A compiled query, reusable for any values of the same shape."""

    __slots__ = (
        "_metas",
        "binder",
        "changes_session",
        "compiled",
        "defaults",
        "expanding",
        "implicit_returning",
        "is_insert",
        "names",
        "pk_position",
        "processors",
        "required",
        "result_atoms",
        "result_columns",
        "result_processors",
        "returns_rows",
        "sql",
    )

    def __init__(
        self,
        compiled: Compiled,
        *,
        names: tuple[str, ...] = (),
        processors: tuple[Processor | None, ...] = (),
        expanding: bool = False,
        by_key: bool = True,
        required: frozenset[str] = frozenset(),
        defaults: tuple[tuple[str, Any], ...] = (),
        returns_rows: bool = False,
        is_insert: bool = False,
        implicit_returning: bool = False,
        pk_position: int | None = None,
        result_columns: tuple[Any, ...] = (),
        result_processors: tuple[Processor | None, ...] = (),
        result_atoms: bool = True,
    ) -> None:
        self.compiled = compiled
        self.sql: str = compiled.string
        #: Whether running it changes the connection's session state (see above): the
        #: connection is then reset before it goes back to the pool.
        self.changes_session = bool(_CHANGES_SESSION.search(self.sql))
        self.names = names
        self.processors = processors
        self.expanding = expanding
        self.required = required
        #: Python-side column defaults (insert) and onupdate values (update), by key.
        self.defaults = defaults
        #: values -> arguments, when each parameter takes the caller's value of its own
        #: name (converted by its type): the fast path, which raises KeyError when a
        #: name has no value (then SQLAlchemy binds it: a literal, or an error).
        self.binder = binder(names, processors) if by_key and not expanding else None
        self.returns_rows = returns_rows
        self.is_insert = is_insert
        #: True when RETURNING was added by SQLAlchemy to report the new primary key.
        self.implicit_returning = implicit_returning
        #: Where the argument for a single-column primary key given by the caller is.
        self.pk_position = pk_position
        self.result_columns = result_columns
        self.result_processors = result_processors
        #: Whether the result processors return only atoms (numbers, text, datetimes).
        self.result_atoms = result_atoms
        self._metas: dict[tuple[str, ...], ResultMeta] = {}

    def meta(self, keys: tuple[str, ...]) -> ResultMeta:
        """The ResultMeta for rows with these column names (one per statement)."""
        try:
            return self._metas[keys]
        except KeyError:
            meta = ResultMeta(
                keys, self.result_processors, self.result_columns, atoms=self.result_atoms
            )
            self._metas[keys] = meta
            return meta


class CompiledQuery:
    """SQL ready for the driver: its text, its arguments and how to read its rows."""

    __slots__ = ("args", "sql", "statement")

    def __init__(self, sql: str, args: Sequence[Any], statement: Statement) -> None:
        self.sql = sql
        self.args = args
        self.statement = statement
