"""Observability: statement logs, query hooks, and the seam tracers plug into.

Off by default where it costs anything: before each statement, Connection asks
:meth:`Observer.watching` (a flag, a list and the logger's cached level check); only
when something watches is the statement timed and reported, through
:meth:`Observer.run` (and :meth:`Observer.stream` for ``iterate()``).

What watches: the ``dbaccess`` logger enabled for DEBUG (every statement), a
``slow_statement_threshold`` (a WARNING for each slower statement), the query hooks
registered with :meth:`Database.add_query_hook`, and the tracers registered by
:mod:`dbaccess.opentelemetry` (every Database of the process).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import reprlib
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .backends.base import BackendConnection, Outcome, Rows
from .errors import InterfaceError
from .url import DatabaseURL

if TYPE_CHECKING:
    from .compiler import CompiledQuery
    from .database import Database

__all__ = ["Observer", "QueryEvent", "QueryHook", "QueryHookFunction", "Tracer"]

logger = logging.getLogger("dbaccess")

#: A query hook: called with a :class:`QueryEvent`, awaited when it returns an awaitable.
QueryHookFunction = Callable[["QueryEvent"], "Awaitable[Any] | None"]

# Parameter values in log lines: long values cut, so one blob cannot flood the log.
_values_repr = reprlib.Repr()
_values_repr.maxstring = _values_repr.maxother = 200
_values_repr.maxtuple = _values_repr.maxlist = 100


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One statement as query hooks see it: before it runs (``duration``, ``rowcount``
    and ``error`` still None) and after it ran."""

    #: The SQL sent to the driver, with the driver's placeholders ($1, ?, %s).
    sql: str
    #: The values bound to the placeholders, in order; for ``execute_many()``, one
    #: sequence of values per row.
    parameters: Sequence[Any]
    #: The database system: "postgresql", "mysql", "mariadb" or "sqlite".
    backend: str
    #: The database's URL (its ``repr`` hides the password).
    url: DatabaseURL
    #: Whether this is an ``execute_many()`` (``parameters`` holds many rows).
    many: bool = False
    #: Seconds the statement took (for ``iterate()``, until the stream closed).
    duration: float | None = None
    #: Rows returned (queries) or affected (other statements); None when unknown
    #: (``execute_many()``, some drivers for DDL).
    rowcount: int | None = None
    #: The error the statement raised, if any (it is raised to the caller after the
    #: hooks ran).
    error: BaseException | None = None


class Tracer(Protocol):
    """What a tracer (the OpenTelemetry instrumentor) is told; every method is called
    only while the tracer is registered, and must not raise."""

    def query_started(self, event: QueryEvent) -> Any:
        """A statement starts; return what :meth:`query_ended` needs."""

    def query_ended(self, token: Any, event: QueryEvent) -> None:
        """The statement of ``token`` ended (``event`` is complete)."""

    def connect_started(self, url: DatabaseURL, backend: str) -> Any:
        """The pool starts opening a connection."""

    def connect_ended(self, token: Any, backend: str, error: BaseException | None) -> None:
        """The connection of ``token`` opened (to ``backend``, now known), or failed to."""

    def transaction_started(self, url: DatabaseURL, backend: str, nested: bool) -> Any:
        """A transaction (a savepoint when nested) began."""

    def transaction_ended(self, token: Any, committed: bool, error: BaseException | None) -> None:
        """The transaction of ``token`` was committed or rolled back (or failed to)."""

    def acquire_waited(self, url: DatabaseURL, seconds: float) -> None:
        """A caller waited ``seconds`` for a pooled connection (none was idle)."""


#: The tracers every Database reports to (registered by dbaccess.opentelemetry).
_tracers: list[Tracer] = []
#: Every Database alive, for the instrumentor's pool metrics.
_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def add_tracer(tracer: Tracer) -> None:
    """Report every statement, connect and transaction of every Database to ``tracer``."""
    if tracer not in _tracers:
        _tracers.append(tracer)


def remove_tracer(tracer: Tracer) -> None:
    """Stop reporting to ``tracer``; nothing happens if it is not registered."""
    if tracer in _tracers:
        _tracers.remove(tracer)


def live_databases() -> list[Database]:
    """The Database objects alive now."""
    return list(_databases)


class QueryHook:
    """A registered pair of query hooks; :meth:`remove` (or leaving a ``with`` block)
    unregisters them."""

    def __init__(
        self,
        observer: Observer,
        before: QueryHookFunction | None,
        after: QueryHookFunction | None,
    ) -> None:
        self._observer = observer
        self.before = before
        self.after = after

    def remove(self) -> None:
        """Unregister the hooks; nothing happens if they were removed already."""
        self._observer._remove(self)

    def __enter__(self) -> QueryHook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<QueryHook before={self.before!r} after={self.after!r}>"


class Observer:
    """What one Database reports about its statements, and to whom."""

    def __init__(
        self,
        database: Database,
        *,
        log_parameters: bool,
        slow_statement_threshold: float | None,
    ) -> None:
        self.url = database.url
        #: Which node of several the statements ran on, in log lines: "" for a
        #: Database's own server, " (replica host:port)" for its replicas (replicas.py).
        self.node = ""
        self._log_parameters = log_parameters
        self._slow = slow_statement_threshold
        self._hooks: tuple[QueryHook, ...] = ()
        #: Statements must be timed whatever the logger's level.
        self._always = slow_statement_threshold is not None
        dialect = database.url.dialect
        #: "mysql" until the first connection tells whether the server is MariaDB.
        self.backend = {"postgres": "postgresql", "mariadb": "mysql"}.get(dialect, dialect)
        _databases.add(database)

    # -- hooks -----------------------------------------------------------------------

    def add_hook(
        self, before: QueryHookFunction | None, after: QueryHookFunction | None
    ) -> QueryHook:
        for name, function in (("before", before), ("after", after)):
            if function is not None and not callable(function):
                raise InterfaceError(
                    f"cannot add the query hook: {name}={function!r} is not callable; it must "
                    "be a function (or coroutine function) taking a QueryEvent"
                )
        if before is None and after is None:
            raise InterfaceError("cannot add the query hook: give before=, after= or both")
        hook = QueryHook(self, before, after)
        self._hooks = (*self._hooks, hook)
        self._always = True
        return hook

    def _remove(self, hook: QueryHook) -> None:
        self._hooks = tuple(h for h in self._hooks if h is not hook)
        self._always = bool(self._hooks) or self._slow is not None

    # -- the query path --------------------------------------------------------------

    def watching(self) -> bool:
        """Whether statements must be timed and reported (checked once per statement)."""
        return self._always or bool(_tracers) or logger.isEnabledFor(logging.DEBUG)

    def wrap(
        self, operation: Callable[[BackendConnection, Any], Awaitable[Any]]
    ) -> Callable[[BackendConnection, Any], Awaitable[Any]]:
        """``operation(raw, argument)``, timed and reported."""
        return functools.partial(self.run, operation)

    async def run(
        self,
        operation: Callable[[BackendConnection, Any], Awaitable[Any]],
        raw: BackendConnection,
        argument: CompiledQuery | list[tuple[str, list[Sequence[Any]]]],
    ) -> Any:
        """Run one statement (or one execute_many) and report it."""
        if isinstance(argument, list):  # execute_many's batches: one per shape of values
            sql = ";\n".join(dict.fromkeys(sql for sql, _ in argument))
            parameters: Sequence[Any] = [args for _, many in argument for args in many]
            event = QueryEvent(sql, parameters, self.backend, self.url, many=True)
        else:
            event = QueryEvent(argument.sql, argument.args, self.backend, self.url)
        tokens = await self._started(event)
        started = time.perf_counter()
        try:
            result = await operation(raw, argument)
        except BaseException as exc:
            await self._ended(event, tokens, time.perf_counter() - started, None, "", exc)
            raise
        duration = time.perf_counter() - started
        if isinstance(result, Outcome):
            count = result.rowcount if result.rowcount >= 0 else None
            how = "returned" if result.keys else "affected"
            if result.keys and count is None:
                count = len(result.rows)
        elif result is None:
            count, how = None, ""
        else:
            rows: Rows = result
            count, how = len(rows[0]), "returned"
        await self._ended(event, tokens, duration, count, how, None)
        return result

    async def stream(
        self, chunks: AsyncGenerator[Rows, None], compiled: CompiledQuery
    ) -> AsyncGenerator[Rows, None]:
        """``iterate()``'s chunks, reported as one statement when the stream closes."""
        event = QueryEvent(compiled.sql, compiled.args, self.backend, self.url)
        tokens = await self._started(event)
        started = time.perf_counter()
        count = 0
        error: BaseException | None = None
        try:
            async for chunk in chunks:
                count += len(chunk[0])
                yield chunk
        except GeneratorExit:
            raise  # the loop ended early: not an error
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                await chunks.aclose()
            finally:
                duration = time.perf_counter() - started
                await self._ended(event, tokens, duration, count, "returned", error)

    async def _started(self, event: QueryEvent) -> list[tuple[Tracer, Any]]:
        for hook in self._hooks:
            if hook.before is not None:
                await _call_hook(hook.before, event, "before")
        return [(tracer, tracer.query_started(event)) for tracer in _tracers]

    async def _ended(
        self,
        event: QueryEvent,
        tokens: list[tuple[Tracer, Any]],
        duration: float,
        rowcount: int | None,
        how: str,
        error: BaseException | None,
    ) -> None:
        # (Built field by field: dataclasses.replace() costs several times more.)
        event = QueryEvent(
            event.sql,
            event.parameters,
            event.backend,
            event.url,
            event.many,
            duration,
            rowcount,
            error,
        )
        for tracer, token in tokens:
            tracer.query_ended(token, event)
        slow = self._slow is not None and duration >= self._slow
        if slow or logger.isEnabledFor(logging.DEBUG):
            self._log(event, how, slow)
        for hook in self._hooks:
            if hook.after is not None:
                await _call_hook(hook.after, event, "after")

    def _log(self, event: QueryEvent, how: str, slow: bool) -> None:
        duration = event.duration or 0.0
        if event.error is not None:
            outcome = f"failed after {duration * 1000:.3f} ms with {type(event.error).__name__}"
        else:
            count = event.rowcount
            rows = "" if count is None else f", {count} row{'' if count == 1 else 's'} {how}"
            outcome = f"took {duration * 1000:.3f} ms{rows}"
        message = f"statement on {event.backend}{self.node} {outcome}: {event.sql}"
        if slow:
            message = f"slow {message} (slow_statement_threshold is {self._slow} s)"
        logged = event
        if self._log_parameters:
            message += f" parameters: {_values_repr.repr(event.parameters)}"
        else:
            # Handlers that dump the record's extra fields must not see the values either.
            logged = dataclasses.replace(event, parameters=())
        logger.log(logging.WARNING if slow else logging.DEBUG, message, extra={"query": logged})

    # -- connections, transactions, the pool -------------------------------------------

    async def connect(
        self, connect: Callable[[], Awaitable[BackendConnection]]
    ) -> BackendConnection:
        """Open a connection through ``connect``, reported to the tracers and the log."""
        if not (_tracers or logger.isEnabledFor(logging.DEBUG)):
            conn = await connect()
            self._learn_backend(conn)
            return conn
        tracers = list(_tracers)
        tokens = [tracer.connect_started(self.url, self.backend) for tracer in tracers]
        started = time.perf_counter()
        try:
            conn = await connect()
        except BaseException as exc:
            for tracer, token in zip(tracers, tokens):
                tracer.connect_ended(token, self.backend, exc)
            logger.debug(
                "connecting to %s failed after %.3f ms with %s",
                self.url.obscure_password,
                (time.perf_counter() - started) * 1000,
                type(exc).__name__,
            )
            raise
        self._learn_backend(conn)
        for tracer, token in zip(tracers, tokens):
            tracer.connect_ended(token, self.backend, None)
        logger.debug(
            "opened a connection to %s in %.3f ms",
            self.url.obscure_password,
            (time.perf_counter() - started) * 1000,
        )
        return conn

    def _learn_backend(self, conn: BackendConnection) -> None:
        """Tell MariaDB from MySQL by the server's version (the URL says "mysql" for both)."""
        if self.backend == "mysql":
            server_info = getattr(conn.raw, "get_server_info", None)
            if server_info is not None and "mariadb" in str(server_info()).lower():
                self.backend = "mariadb"

    def transaction_started(self, nested: bool) -> tuple[float, list[tuple[Tracer, Any]]] | None:
        """A transaction began: what :meth:`transaction_ended` needs, None if unwatched."""
        if not (_tracers or logger.isEnabledFor(logging.DEBUG)):
            return None
        tokens = [
            (tracer, tracer.transaction_started(self.url, self.backend, nested))
            for tracer in _tracers
        ]
        logger.debug("%s began on %s", "savepoint" if nested else "transaction", self.backend)
        return time.perf_counter(), tokens

    def transaction_ended(
        self,
        started: tuple[float, list[tuple[Tracer, Any]]] | None,
        nested: bool,
        committed: bool,
        error: BaseException | None,
    ) -> None:
        """A transaction ended (``error``: committing or rolling back failed)."""
        if started is None:
            return
        began, tokens = started
        for tracer, token in reversed(tokens):
            tracer.transaction_ended(token, committed, error)
        kind = "savepoint" if nested else "transaction"
        verb = ("released" if nested else "committed") if committed else "rolled back"
        outcome = f"{verb}" if error is None else f"failed to be {verb} ({type(error).__name__})"
        logger.debug(
            "%s on %s %s after %.3f ms",
            kind,
            self.backend,
            outcome,
            (time.perf_counter() - began) * 1000,
        )

    def acquire_waited(self, seconds: float) -> None:
        """The pool made a caller wait ``seconds`` for a connection (for the tracers)."""
        for tracer in _tracers:
            tracer.acquire_waited(self.url, seconds)


async def _call_hook(hook: QueryHookFunction, event: QueryEvent, when: str) -> None:
    """Run a user's hook; an error in it is logged, never raised into the query."""
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("query hook %s=%r raised; the statement went on", when, hook)
