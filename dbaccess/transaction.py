"""Transaction: BEGIN/COMMIT/ROLLBACK, and SAVEPOINTs when nested.

Use it as ``async with db.transaction():``, as a decorator ``@db.transaction()``, or
by hand: ``tx = await db.transaction()`` (or ``tx = db.transaction(); await
tx.start()``), then ``await tx.commit()`` or ``await tx.rollback()``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .backends.base import DEFAULT_MODE, TransactionMode
from .errors import InterfaceError, NotSupportedError

if TYPE_CHECKING:
    from .connection import Connection
    from .engine import Engine

__all__ = ["Transaction", "TransactionState"]

P = ParamSpec("P")
R = TypeVar("R")

_ALL_ISOLATION_LEVELS = frozenset(
    {"read uncommitted", "read committed", "repeatable read", "serializable"}
)


class TransactionState(enum.Enum):
    NEW = "not started"
    ACTIVE = "active"
    COMMITTED = "already committed"
    ROLLED_BACK = "already rolled back"
    FAILED = "failed (it was rolled back)"


# TransactionState's members as module globals, read on the path of every call: on Python
# 3.11 `TransactionState.X` is a lookup through the enum's metaclass, ~0.1 us each time.
_NEW, _ACTIVE, _COMMITTED, _ROLLED_BACK, _FAILED = (
    TransactionState.NEW,
    TransactionState.ACTIVE,
    TransactionState.COMMITTED,
    TransactionState.ROLLED_BACK,
    TransactionState.FAILED,
)


class Transaction:
    """A transaction, or a savepoint when another transaction is active."""

    def __init__(
        self,
        connection: Callable[[], Connection],
        engine: Engine,
        *,
        force_rollback: bool = False,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool | None = None,
        transaction_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            # databasez (a fork of encode/databases) names the level isolation_level.
            hint = "; the level is isolation=" if "isolation_level" in unknown else ""
            raise InterfaceError(
                f"unknown transaction option {', '.join(map(repr, sorted(unknown)))}; "
                f"expected force_rollback, isolation, readonly, deferrable or transaction_mode"
                f"{hint}"
            )
        if isolation is None and not readonly and deferrable is None and transaction_mode is None:
            self._mode = DEFAULT_MODE  # the usual case, at no cost
        else:
            self._mode = self._chosen_mode(
                engine, isolation, readonly, deferrable, transaction_mode
            )
        self._connection_factory = connection
        self._engine = engine
        self._force_rollback = force_rollback
        self._isolation = isolation
        self._connection: Connection | None = None
        self._savepoint: str | None = None
        self._state = _NEW
        #: What the observer needs when the transaction ends (None: nobody watches).
        self._observed: Any = None

    @staticmethod
    def _chosen_mode(
        engine: Engine,
        isolation: str | None,
        readonly: bool,
        deferrable: bool | None,
        transaction_mode: str | None,
    ) -> TransactionMode:
        backend, dialect = engine.backend, engine.url.dialect
        mode = TransactionMode(
            isolation=_isolation(isolation, backend.isolation_levels, dialect),
            readonly=bool(readonly),
            deferrable=deferrable,
            transaction_mode=_transaction_mode(
                transaction_mode, backend.transaction_modes, dialect
            ),
        )
        if deferrable is not None and not backend.supports_deferrable:
            raise NotSupportedError(
                f"{dialect} has no deferrable transactions; deferrable is a PostgreSQL option"
            )
        return mode

    @property
    def state(self) -> TransactionState:
        return self._state

    @property
    def is_active(self) -> bool:
        return self._state is _ACTIVE

    # -- the three ways to use it --------------------------------------------------

    async def __aenter__(self) -> Transaction:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if self._state is not _ACTIVE:
            return  # ended by hand inside the block
        if exc_type is None and not self._force_rollback:
            await self.commit()
        else:
            await self.rollback()

    def __await__(self) -> Generator[Any, None, Transaction]:
        return self.start().__await__()

    def __call__(self, function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate a coroutine function so that each call runs in a new transaction."""

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            async with Transaction(
                self._connection_factory,
                self._engine,
                force_rollback=self._force_rollback,
                isolation=self._isolation,
                readonly=self._mode.readonly,
                deferrable=self._mode.deferrable,
                transaction_mode=self._mode.transaction_mode,
            ):
                return await function(*args, **kwargs)

        return wrapper

    # -- start, commit, rollback ----------------------------------------------------

    async def start(self) -> Transaction:
        """Begin the transaction (a savepoint if one is already active here)."""
        if self._state is not _NEW:
            raise InterfaceError(f"cannot start the transaction: it is {self._state.value}")
        connection = self._connection_factory()
        await connection._bind()
        try:
            self._savepoint = await connection._begin_transaction(self, self._mode)
        except BaseException:
            await connection._unbind()
            raise
        self._connection = connection
        self._state = _ACTIVE
        self._observed = self._engine.observer.transaction_started(self._savepoint is not None)
        return self

    async def commit(self) -> None:
        """Commit (or release the savepoint)."""
        await self._end(commit=True)

    async def rollback(self) -> None:
        """Roll back (to the savepoint, when nested)."""
        await self._end(commit=False)

    async def _end(self, *, commit: bool) -> None:
        verb = "commit" if commit else "roll back"
        connection = self._connection
        if self._state is not _ACTIVE or connection is None:
            raise InterfaceError(f"cannot {verb} the transaction: it is {self._state.value}")
        if not connection._is_innermost(self):
            raise InterfaceError(
                f"cannot {verb} the transaction: a transaction nested in it is still "
                "active; end that one first"
            )
        # Before anything changes: in another loop, its driver connection cannot be used.
        connection._check_loop(f"{verb} the transaction", "transaction")
        ended = _COMMITTED if commit else _ROLLED_BACK
        observed, self._observed = self._observed, None
        error: BaseException | None = None
        try:
            await connection._end_transaction(self, self._savepoint, commit)
            self._state = ended
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._engine.observer.transaction_ended(
                observed, self._savepoint is not None, commit, error
            )
            if self._state is _ACTIVE:
                self._state = _FAILED
            await connection._unbind()

    def __repr__(self) -> str:
        kind = "savepoint" if self._savepoint else "transaction"
        return f"<Transaction {kind} {self._state.value}>"


def _transaction_mode(mode: str | None, supported: frozenset[str], dialect: str) -> str | None:
    if mode is None:
        return None
    if not supported:
        raise NotSupportedError(
            f"{dialect} has no transaction_mode; it is a SQLite option (how "
            "BEGIN takes the database's write lock)"
        )
    normal = str(mode).strip().lower()
    if normal not in supported:
        raise InterfaceError(
            f"unknown transaction_mode {mode!r}; expected one of: {', '.join(sorted(supported))}"
        )
    return normal


def _isolation(level: str | None, supported: frozenset[str], dialect: str) -> str | None:
    if level is None:
        return None
    normal = " ".join(str(level).lower().replace("_", " ").replace("-", " ").split())
    if normal not in _ALL_ISOLATION_LEVELS:
        raise InterfaceError(
            f"unknown isolation level {level!r}; expected one of: "
            f"{', '.join(sorted(_ALL_ISOLATION_LEVELS))}"
        )
    if normal not in supported:
        raise NotSupportedError(f"isolation level {level!r} is not supported on {dialect}")
    return normal
