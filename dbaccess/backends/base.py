"""The interface every backend implements: a backend opens connections, a backend
connection runs SQL that is already compiled. Nothing here sees SQLAlchemy
expressions; every driver error leaving a backend is already a dbaccess error."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from sqlalchemy.engine.interfaces import Dialect

from ..options import Options, Parser
from ..url import DatabaseURL

__all__ = [
    "DEFAULT_MODE",
    "Backend",
    "BackendConnection",
    "Outcome",
    "Rows",
    "TransactionMode",
]

#: Rows as the driver returns them (tuples, asyncpg Records), and their column names.
#: Rows and their column names (a tuple: it keys the ResultMeta cache of a statement).
Rows = tuple[Sequence[Sequence[Any]], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running one statement produced."""

    rowcount: int
    lastrowid: Any
    rows: Sequence[Sequence[Any]]
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransactionMode:
    """How to begin an outermost transaction; None leaves the server default."""

    isolation: str | None = None
    readonly: bool = False
    deferrable: bool | None = None
    #: How SQLite begins it ("auto", "deferred", "immediate", "exclusive"); None: the
    #: database's ``transaction_mode`` option.
    transaction_mode: str | None = None


#: BEGIN with the server's defaults.
DEFAULT_MODE = TransactionMode()


class BackendConnection(Protocol):
    """One open driver connection."""

    #: Whether execute_many() is all-or-nothing by itself (else dbaccess wraps it in
    #: a transaction).
    atomic_execute_many: ClassVar[bool] = False

    #: Queries run on it (fetch, execute, execute_many, iterate), counted by
    #: :class:`~dbaccess.connection.Connection` for the pool's ``max_queries``.
    queries: int
    #: When it opened (``time.monotonic()``), for the pool's ``max_lifetime``.
    opened_at: float

    @property
    def raw(self) -> Any:
        """The driver's own connection object."""

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (no round trip): the driver reports one, or,
        on the backends that defer BEGIN (deferred.py), begin() was called and the BEGIN
        waits for the first statement. Either way it must be ended before the
        connection is reused."""

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed or known to be broken."""

    async def fetch(self, sql: str, args: Sequence[Any], limit: int | None) -> Rows:
        """Run a query and return up to ``limit`` rows (all when None)."""

    async def execute(self, sql: str, args: Sequence[Any], returns_rows: bool) -> Outcome:
        """Run a statement; collect RETURNING rows when ``returns_rows``."""

    async def execute_many(self, sql: str, many_args: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per argument tuple, through the driver's bulk path."""

    def stream(
        self, sql: str, args: Sequence[Any], chunk_size: int, shared: bool
    ) -> AsyncGenerator[Rows, None]:
        """Yield the result in chunks without holding it all in memory. ``shared``: other
        statements may run on this connection between two chunks (the loop's body runs
        on the connection of its block), inside a transaction or not."""

    async def transaction_survived(self) -> bool:
        """After a statement failed inside a transaction: whether the server still holds
        the transaction, or rolled it back whole (a deadlock victim, an interrupted
        SQLite write). Errors are rare: this may cost a round trip."""

    async def begin(self, mode: TransactionMode) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None:
        """Roll back; a no-op when the server holds no transaction any more."""

    async def reset_session(self) -> bool:
        """Undo what the statements of the last user changed in the session (settings,
        cursors, temporary tables, session locks, listeners): True when done, False when
        the connection cannot be reset in place and must be closed instead."""

    async def run(self, sql: str) -> None:
        """Run a statement without parameters or results (SAVEPOINT, SET...)."""

    async def close(self) -> None:
        """Close gracefully."""

    def terminate(self) -> None:
        """Close at once, without waiting for the server; a no-op when closed."""


class Backend(Protocol):
    """A database server reached through one driver."""

    def __init__(self, url: DatabaseURL, keywords: Mapping[str, Any]) -> None:
        """Check the URL's and the keyword options; open nothing yet."""

    #: URL options this backend understands beyond the common ones.
    url_options: ClassVar[dict[str, Parser]]
    #: Other names (libpq's, the driver's) for options: name -> (option, parser).
    url_aliases: ClassVar[dict[str, tuple[str, Parser]]] = {}
    #: Isolation levels the backend accepts (lower case, words separated by spaces).
    isolation_levels: ClassVar[frozenset[str]]
    #: Whether ``deferrable`` is meaningful.
    supports_deferrable: ClassVar[bool]
    #: The values a transaction's ``transaction_mode`` may take (none: not an option here).
    transaction_modes: ClassVar[frozenset[str]] = frozenset()

    @property
    def dialect(self) -> Dialect:
        """The SQLAlchemy dialect that compiles for this driver."""

    @property
    def options(self) -> Options: ...

    async def connect(self) -> BackendConnection:
        """Open one new connection, set up for dbaccess."""

    async def cancel_statement(self, conn: BackendConnection) -> None:
        """Ask the server to stop the statement running on ``conn`` (its ``timeout=``
        expired), from a connection of its own; a no-op where closing ``conn`` stops it.
        ``conn`` is closed afterwards either way."""

    async def close(self) -> None:
        """Release what the backend holds beyond its connections (after the pool closed)."""

    def terminate(self) -> None:
        """Release it at once, without waiting (close() was interrupted)."""
