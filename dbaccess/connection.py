"""Connection: one pooled driver connection as seen by one task and its children.

``Database`` binds a Connection to the current context (a ContextVar) while an
``async with db.connection()`` or ``db.transaction()`` block runs, so the task and
the tasks it starts inside the block share it; sibling tasks each get their own.
Statements on a shared connection run one at a time (a lock). Outside any block,
each call borrows a pooled connection for that call only.

A Connection belongs to the event loop it was first entered in (its driver connection,
its lock and its pool are that loop's); entering or using it from another loop raises
InterfaceError instead of the driver's "attached to a different loop" or a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import sqlalchemy as sa

from . import errors, schema
from .backends.base import DEFAULT_MODE, BackendConnection, Outcome, Rows, TransactionMode
from .compiler import CompiledQuery, Query, Statement
from .errors import DBAccessError, InterfaceError, OperationalError
from .record import Record
from .result import ExecuteResult
from .timeouts import check_timeout, each_within, within
from .transaction import Transaction

if TYPE_CHECKING:
    from .engine import Engine
    from .pool import Pool

__all__ = ["Connection"]

#: Rows fetched per round trip by iterate().
ITERATE_CHUNK_SIZE = 1000

#: The transactions the current context started, outermost first (child tasks inherit
#: their parent's): how a connection shared by tasks tells whose turn it is.
_chain: ContextVar[tuple[Transaction, ...]] = ContextVar("dbaccess.transactions", default=())

#: Savepoint names, unique in the process (MySQL drops an older savepoint of the same name).
_savepoint_ids = itertools.count(1)


class ConnectionState(enum.Enum):
    """Where a Connection is; every statement passes :meth:`Connection._checked_raw`,
    which refuses all but BOUND with an error naming the state."""

    #: No driver connection: outside any block (each call borrows one for itself).
    UNBOUND = "unbound"
    #: A driver connection held for a block (``async with``, a transaction) and its
    #: child tasks (the reference count says how many hold it).
    BOUND = "bound"
    #: Bound, in a transaction the server rolled back whole (a deadlock victim, an
    #: interrupted SQLite write): statements and commits refuse, naming the error, until
    #: the outermost transaction ends.
    ABORTED = "aborted"
    #: Bound, and a statement was interrupted mid-way (cancelled): the driver
    #: connection's state is unknown, so it is closed instead of going back to the pool.
    BROKEN = "broken"


# ConnectionState's members as module globals, read on the path of every call: on Python
# 3.11 `ConnectionState.X` is a lookup through the enum's metaclass, ~0.1 us each time.
_UNBOUND, _BOUND, _ABORTED, _BROKEN = (
    ConnectionState.UNBOUND,
    ConnectionState.BOUND,
    ConnectionState.ABORTED,
    ConnectionState.BROKEN,
)


class Connection:
    """A database connection for the current task; reusable with ``async with``."""

    def __init__(self, engine: Engine, *, shared_by_tasks: bool = False) -> None:
        self._engine = engine
        #: Used by every task at once (the one connection of force_rollback=True), where
        #: each task would have had a pooled connection of its own: a task's statements
        #: and transactions wait while another task's transaction is open on it.
        self._shared_by_tasks = shared_by_tasks
        #: Resolved (and replaced) each time a transaction of this connection ends.
        self._transaction_ended: asyncio.Future[None] | None = None
        self._raw: BackendConnection | None = None
        #: The pool ``_raw`` came from, and goes back to.
        self._pool: Pool | None = None
        #: The event loop the connection was first entered in, the only one it works in.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refs = 0
        self._lock = asyncio.Lock()
        self._transactions: list[Transaction] = []
        #: Changed by the transition methods below (_bound, _unbound, _broke, _abort,
        #: _transactions_over) and nothing else.
        self._state = _UNBOUND
        #: The error that made the transaction ABORTED (kept if it then BROKE: a commit
        #: names it).
        self._aborted: DBAccessError | None = None
        #: A statement of this block changed the session (SET, temporary table...):
        #: reset it before the next user. (What runs through raw_connection is out of
        #: sight: the caller's to undo.)
        self._session_changed = False
        # Per task, what the ContextVar held before each `async with` entered.
        # (An entry lives from a block's entry to its exit, so a plain dict does not leak.)
        self._restore: dict[asyncio.Task[Any], list[Connection | None]] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Connection:
        await self._bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._unbind()

    async def _bind(self) -> None:
        """Hold a driver connection and be the current context's connection until
        :meth:`_unbind`: what ``async with`` and a transaction's start do."""
        await self._acquire_ref()
        current = self._engine.current
        previous = current.get()
        task = asyncio.current_task()
        if task is not None:
            self._restore.setdefault(task, []).append(previous)
        if previous is not self:
            current.set(self)

    async def _unbind(self) -> None:
        """Give the context back the connection it had before :meth:`_bind`, and let go
        of the driver connection when nothing holds it any more."""
        task = asyncio.current_task()
        if task is not None and (stack := self._restore.get(task)):
            previous = stack.pop()
            if not stack:
                del self._restore[task]
            if previous is not self:
                self._engine.current.set(previous)
        await self._release_ref()

    @property
    def is_bound(self) -> bool:
        """Whether a driver connection is held (inside an ``async with`` block)."""
        return self._refs > 0

    async def _acquire_ref(self) -> None:
        self._check_loop("use the connection")
        if self._refs == 0:
            self._bound(*await self._engine.acquire())
        self._refs += 1

    async def _release_ref(self) -> None:
        self._refs -= 1
        if self._refs == 0:
            await self._release_raw()

    async def _release_raw(self) -> None:
        raw, pool, broken = self._raw, self._pool, self._state is _BROKEN
        self._unbound()
        if self._engine.block_ended is not None:
            self._engine.block_ended()
        if raw is not None and pool is not None:
            await pool.give_back(raw, broken=broken, reset=self._session_changed)

    # -- the state's transitions -------------------------------------------------------

    def _bound(self, pool: Pool, raw: BackendConnection) -> None:
        """UNBOUND -> BOUND: the block's driver connection, fresh from its pool."""
        self._pool, self._raw = pool, raw
        self._state = _BOUND
        self._aborted = None
        self._session_changed = False

    def _unbound(self) -> None:
        """-> UNBOUND: the driver connection goes back to its pool."""
        self._pool = self._raw = None
        self._state = _UNBOUND

    def _broke(self) -> None:
        """BOUND or ABORTED -> BROKEN: a statement was interrupted mid-way."""
        if self._state is not _UNBOUND:
            self._state = _BROKEN

    def _abort(self, error: DBAccessError) -> None:
        """BOUND -> ABORTED: the server rolled the transaction back after ``error``."""
        self._aborted = error
        if self._state is _BOUND:
            self._state = _ABORTED

    def _transactions_over(self) -> None:
        """ABORTED -> BOUND: the outermost transaction ended (called when it was
        aborted, or aborted and then broken)."""
        self._aborted = None
        if self._state is _ABORTED:
            self._state = _BOUND

    def _in_running_loop(self) -> bool:
        """Whether the connection may be used in the running event loop (or outside any)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True
        return self._loop is None or self._loop is loop

    def _check_loop(self, action: str, what: str = "connection") -> None:
        """Bind the connection to the running event loop, or refuse another loop."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        if self._shared_by_tasks:
            raise InterfaceError(
                f"cannot {action}: this Database was connected with force_rollback=True in "
                "another event loop, and its one connection belongs to that loop; connect "
                "it in the loop that uses it (with a sync test client, in the app's "
                "lifespan, or through the client's portal)"
            )
        if what == "transaction":
            raise InterfaceError(
                f"cannot {action}: this transaction belongs to another event loop (the one "
                "it started in); start a new one with db.transaction() in this loop"
            )
        raise InterfaceError(
            f"cannot {action}: this connection belongs to another event loop (the one "
            "it was first used in); open a new one with db.connection() in this loop"
        )

    @property
    def raw_connection(self) -> Any:
        """The driver's own connection (asyncpg, aiomysql, asyncmy or aiosqlite)."""
        if self._raw is None:
            raise InterfaceError(
                "cannot get raw_connection: this connection holds no driver connection "
                "outside an `async with database.connection()` block"
            )
        return self._raw.raw

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """Start a transaction on this connection (see :meth:`Database.transaction`)."""
        return Transaction(lambda: self, self._engine, force_rollback=force_rollback, **options)

    # -- queries -----------------------------------------------------------------

    async def fetch_all(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Record]:
        """Run a query and return all its rows."""
        compiled = self._engine.compiler.compile(query, values)
        changes = compiled.statement.changes_session
        rows, keys = await self._use(_fetch_all, compiled, changes, timeout)
        return compiled.statement.meta(keys).make_all(rows)

    async def fetch_one(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        """Run a query and return its first row, or None when it has none."""
        compiled = self._engine.compiler.compile(query, values)
        changes = compiled.statement.changes_session
        rows, keys = await self._use(_fetch_one, compiled, changes, timeout)
        return compiled.statement.meta(keys).make(rows[0]) if rows else None

    async def fetch_val(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        column: Any = 0,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a query and return one value of its first row (None when no row)."""
        row = await self.fetch_one(query, values, timeout=timeout)
        return None if row is None else row[column]

    async def execute(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a statement; return the new primary key after an INSERT, the first value
        of the first row when it returns rows (RETURNING), else None."""
        compiled = self._engine.compiler.compile(query, values)
        statement = compiled.statement
        outcome = await self._use(_execute, compiled, statement.changes_session, timeout)
        if statement.returns_rows:
            if not outcome.rows:
                return None
            return statement.meta(outcome.keys).make(outcome.rows[0])[0]
        return _inserted_id(compiled, outcome) if statement.is_insert else None

    async def execute_result(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecuteResult:
        """Run a statement and report its rowcount, new primary key and RETURNING rows."""
        compiled = self._engine.compiler.compile(query, values)
        changes = compiled.statement.changes_session
        outcome = await self._use(_execute, compiled, changes, timeout)
        return _result(compiled, outcome)

    @overload
    async def execute_many(
        self,
        query: Query,
        values: Sequence[Mapping[str, Any]],
        *,
        returning: Literal[False] = False,
        timeout: float | None = None,
    ) -> None: ...

    @overload
    async def execute_many(
        self,
        query: Query,
        values: Sequence[Mapping[str, Any]],
        *,
        returning: Literal[True],
        timeout: float | None = None,
    ) -> list[Any]: ...

    async def execute_many(
        self,
        query: Query,
        values: Sequence[Mapping[str, Any]],
        *,
        returning: bool = False,
        timeout: float | None = None,
    ) -> list[Any] | None:
        """Run a statement once per mapping of values, atomically, in few round trips;
        with ``returning``, return the rows it returned (RETURNING) or, for a Core
        insert without RETURNING, the new primary keys, in the order of ``values``."""
        if timeout is not None:
            check_timeout(timeout)
        if returning:
            return await self._execute_many_returning(query, values, timeout)
        compiler = self._engine.compiler
        batches = compiler.compile_many(query, values)
        if not batches:
            return None
        try:
            await self._use(_execute_many, batches, False, timeout)
        except DBAccessError as exc:
            if exc.argument_index is not None and len(batches) == 1:
                # One statement for every row: the first row's compilation names it.
                _name_parameter(exc, compiler.compile(query, values[0]).statement)
            raise
        return None

    async def _execute_many_returning(
        self, query: Query, values: Sequence[Mapping[str, Any]], timeout: float | None
    ) -> list[Any]:
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            raise InterfaceError(
                f"execute_many() takes a list of mappings of values, not {type(values).__name__}"
            )
        compiler = self._engine.compiler
        # One statement per row: each row's RETURNING rows (or new key) come back with
        # it, which no driver's bulk path reports.
        compiled = [compiler.compile(query, row) for row in values]
        if not compiled:
            return []
        statement = compiled[0].statement
        if not (statement.returns_rows or (statement.is_insert and not isinstance(query, str))):
            raise InterfaceError(
                "execute_many(returning=True) needs a statement with a RETURNING clause, "
                "or a Core insert() (whose new primary keys it returns)"
            )
        changes = any(each.statement.changes_session for each in compiled)
        outcomes = await self._use(_execute_each, compiled, changes, timeout)
        results: list[Any] = []
        for each, outcome in zip(compiled, outcomes):
            result = _result(each, outcome)
            if each.statement.returns_rows and not each.statement.implicit_returning:
                results.extend(result.rows)
            else:
                results.append(result.lastrowid)
        return results

    async def iterate(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        chunk_size: int = ITERATE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        """Yield a query's rows as they arrive, ``chunk_size`` rows per round trip,
        without holding them all in memory.

        Inside a transaction or a ``connection()`` block the rows stream on the block's
        connection (other statements may run between chunks); otherwise on a connection
        of their own, so queries inside the loop never wait for the loop. ``timeout``
        bounds each wait for rows (the first one includes getting a connection), not
        the time the loop's body takes.
        """
        _check_size("chunk_size", chunk_size)
        compiled = self._engine.compiler.compile(query, values)
        stream = self._stream(compiled, chunk_size, timeout)
        if self._engine.observer.watching():
            stream = self._engine.observer.stream(stream, compiled)
        try:
            async for rows, meta_keys in stream:
                meta = compiled.statement.meta(meta_keys)
                for row in meta.make_all(rows):
                    yield row
        except DBAccessError as exc:
            _name_parameter(exc, compiled.statement)
            raise
        finally:
            await stream.aclose()

    async def batched_iterate(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        batch_size: int = ITERATE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Record], None]:
        """Yield a query's rows in lists of ``batch_size`` (the last one shorter), one
        round trip per batch, streamed as :meth:`iterate` streams them."""
        _check_size("batch_size", batch_size)
        compiled = self._engine.compiler.compile(query, values)
        stream = self._stream(compiled, batch_size, timeout)
        if self._engine.observer.watching():
            stream = self._engine.observer.stream(stream, compiled)
        pending: list[Record] = []
        try:
            async for rows, meta_keys in stream:
                records = compiled.statement.meta(meta_keys).make_all(rows)
                if not pending and len(records) == batch_size:
                    yield records  # the usual case: one chunk is one batch
                    continue
                # A driver may hand over fewer rows than asked before the end: regroup,
                # so that every batch but the last has batch_size rows.
                pending.extend(records)
                while len(pending) >= batch_size:
                    batch, pending = pending[:batch_size], pending[batch_size:]
                    yield batch
            if pending:
                yield pending
        finally:
            await stream.aclose()

    def _stream(
        self, compiled: CompiledQuery, chunk_size: int, timeout: float | None
    ) -> AsyncGenerator[Rows, None]:
        #: The driver connection the rows stream on, for a timeout to stop its statement.
        loan: list[BackendConnection] = []
        if self._refs:
            stream = self._stream_shared(compiled, chunk_size, loan)
        else:
            stream = self._stream_dedicated(compiled, chunk_size, loan)
        if timeout is None:
            return stream
        return each_within(stream, timeout, self._engine.backend, loan)

    async def _stream_shared(
        self, compiled: CompiledQuery, chunk_size: int, loan: list[BackendConnection]
    ) -> AsyncGenerator[Rows, None]:
        await self._acquire_ref()
        try:
            raw = self._checked_raw()
            loan.append(raw)
            raw.queries += 1
            if compiled.statement.changes_session:
                self._session_changed = True
            chunks = raw.stream(compiled.sql, compiled.args, chunk_size, True)
            try:
                while True:
                    async with self._lock:
                        try:
                            chunk = await chunks.__anext__()
                        except StopAsyncIteration:
                            return
                        except BaseException as exc:
                            await self._after_error(raw, exc)
                            raise
                    yield chunk
            finally:
                async with self._lock:
                    try:
                        await chunks.aclose()
                    except BaseException as exc:
                        self._note_failure(exc)  # the cursor may be left open: close it
                        raise
        finally:
            await self._release_ref()

    async def _stream_dedicated(
        self, compiled: CompiledQuery, chunk_size: int, loan: list[BackendConnection]
    ) -> AsyncGenerator[Rows, None]:
        pool, raw = await self._engine.acquire()
        loan.append(raw)
        raw.queries += 1
        chunks = raw.stream(compiled.sql, compiled.args, chunk_size, False)
        broken = False
        try:
            async for chunk in chunks:
                yield chunk
        except GeneratorExit:
            raise  # the loop ended early: the stream cleans up in aclose()
        except BaseException as exc:
            broken = not isinstance(exc, DBAccessError)
            raise
        finally:
            try:
                await chunks.aclose()
            except BaseException:
                broken = True
                raise
            finally:
                await pool.give_back(raw, broken=broken, reset=compiled.statement.changes_session)

    # -- schema ------------------------------------------------------------------

    async def create_all(self, metadata: sa.MetaData, *, checkfirst: bool = True) -> None:
        """Create a MetaData's tables, indexes, sequences and enum types in dependency
        order, skipping those that exist when ``checkfirst``; in one transaction where
        the backend's DDL is transactional."""
        async with self, self._schema_transaction():
            await schema.create_all(self, self._engine.backend.dialect, metadata, checkfirst)

    async def drop_all(self, metadata: sa.MetaData, *, checkfirst: bool = True) -> None:
        """Drop a MetaData's tables, sequences and enum types in dependency order,
        skipping those that do not exist when ``checkfirst``."""
        async with self, self._schema_transaction():
            await schema.drop_all(self, self._engine.backend.dialect, metadata, checkfirst)

    def _schema_transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        # MySQL commits before and after each DDL statement: a transaction around them
        # would only claim an atomicity the server does not give.
        if self._engine.backend.dialect.name == "mysql":
            return contextlib.nullcontext()
        return self.transaction()

    # -- running statements ------------------------------------------------------

    async def _use(
        self, operation: Any, argument: Any, changes_session: bool, timeout: float | None = None
    ) -> Any:
        """Run ``operation(raw, argument)`` on this task's driver connection, or on a
        pooled one for this call only when none is bound; within ``timeout`` seconds."""
        if timeout is not None:
            return await within(
                timeout,
                self._engine.backend,
                lambda bounded: self._use(bounded, argument, changes_session),
                operation,
            )
        if self._engine.observer.watching():  # logs, hooks, tracers: see observe.py
            operation = self._engine.observer.wrap(operation)
        if not self._refs:
            # A connection lent for this call alone, by the running loop's pool: the
            # home pool, found with one comparison, else Engine.pool().
            pool = self._engine.pools.home
            if pool is None or pool.loop is not asyncio.get_running_loop():
                pool = await self._engine.pool()
            return await pool.run(operation, argument, changes_session)
        self._check_loop("run a statement")
        self._refs += 1  # a child task may still run a statement when the block ends
        lock = self._lock
        try:
            if self._shared_by_tasks:
                await self._wait_for_turn()
            await lock.acquire()
            try:
                raw = self._checked_raw()
                if changes_session:
                    self._session_changed = True
                try:
                    return await operation(raw, argument)
                except BaseException as exc:
                    await self._after_error(raw, exc)
                    raise
            finally:
                lock.release()
        finally:
            self._refs -= 1
            if not self._refs:
                await self._release_raw()

    def _checked_raw(self) -> BackendConnection:
        """The guard every statement passes: the driver connection, if it may be used."""
        raw, state = self._raw, self._state
        if state is _BOUND and raw is not None and not raw.is_closed:
            return raw
        if raw is None:
            raise InterfaceError("cannot run a statement: the connection was released")
        if state is _BROKEN:
            raise InterfaceError(
                "cannot run a statement: a statement on this connection was interrupted "
                "earlier in the block; leave the block and start a new one"
            )
        if raw.is_closed:
            raise OperationalError(
                "the connection to the database was lost (closed by the server, or a "
                "network failure); leave the block: the next one gets a new connection"
            )
        if self._aborted is not None:
            raise _aborted_error("run a statement", self._aborted)
        return raw

    def _note_failure(self, exc: BaseException) -> None:
        if not isinstance(exc, DBAccessError):
            self._broke()

    async def _after_error(self, raw: BackendConnection, exc: BaseException) -> None:
        """Note what a failed statement left: a connection in an unknown state (it was
        interrupted), or a transaction the server rolled back whole."""
        if not isinstance(exc, DBAccessError):
            self._broke()
            return
        if not self._transactions or self._aborted is not None or raw.is_closed:
            return
        try:
            survived = await raw.transaction_survived()
        except BaseException:
            self._broke()
            raise
        if not survived:
            self._abort(exc)

    # -- transactions (driven by Transaction) ------------------------------------

    def _is_innermost(self, transaction: Transaction) -> bool:
        return bool(self._transactions) and self._transactions[-1] is transaction

    async def _begin_transaction(
        self, transaction: Transaction, mode: TransactionMode
    ) -> str | None:
        """BEGIN, or a SAVEPOINT inside an active transaction (its name is returned)."""
        if self._shared_by_tasks:
            await self._wait_for_turn()
        async with self._lock:
            raw = self._checked_raw()
            savepoint = None
            nested = bool(self._transactions)
            if nested and mode != DEFAULT_MODE:
                raise InterfaceError(
                    "cannot set isolation, readonly, deferrable or transaction_mode "
                    "on a nested transaction: it is a savepoint of the outer one"
                )
            # Innermost from now on: a task waiting for its turn sees it at once.
            self._transactions.append(transaction)
            try:
                if nested:
                    savepoint = f"dbaccess_savepoint_{next(_savepoint_ids)}"
                    await raw.run(f"SAVEPOINT {savepoint}")
                else:
                    await raw.begin(mode)
            except BaseException as exc:
                self._transactions.pop()
                self._notify_transaction_ended()
                await self._after_error(raw, exc)
                raise
        if self._shared_by_tasks:  # only tasks that share it need to know their level
            _chain.set((*_chain.get(), transaction))
        return savepoint

    async def _end_transaction(
        self, transaction: Transaction, savepoint: str | None, commit: bool
    ) -> None:
        """COMMIT or ROLLBACK (RELEASE or ROLLBACK TO a savepoint); whatever happens,
        the transaction is no longer this connection's innermost one afterwards."""
        try:
            async with self._lock:
                if self._state is _BROKEN and not commit:
                    # The statement in flight was interrupted; the connection will be
                    # closed, and the server rolls the transaction back with it.
                    return
                aborted = self._aborted
                if aborted is not None:
                    # The server rolled everything back already: nothing to undo, and
                    # nothing to commit.
                    if savepoint is None:
                        await self._roll_back_quietly()
                    if commit:
                        raise _aborted_error("commit the transaction", aborted)
                    return
                raw = self._checked_raw()
                try:
                    await _finish(raw, savepoint, commit)
                except BaseException as exc:
                    self._note_failure(exc)
                    await self._clean_up_after_failure(savepoint)
                    raise
        finally:
            self._transactions.pop()  # the innermost: Transaction checked it
            if not self._transactions and self._aborted is not None:
                self._transactions_over()
            if self._shared_by_tasks:
                chain = _chain.get()
                if chain and chain[-1] is transaction:
                    _chain.set(chain[:-1])
            self._notify_transaction_ended()

    # -- one connection shared by every task (force_rollback) ---------------------

    def _own_level(self) -> Transaction | None:
        """The transaction of this connection that the current task runs in: the
        innermost one its context started (or inherited from the task that made it),
        else the connection's first (force_rollback's own)."""
        transactions = self._transactions
        for transaction in reversed(_chain.get()):
            if transaction in transactions:
                return transaction
        return transactions[0] if transactions else None

    async def _wait_for_turn(self) -> None:
        """Wait while another task's transaction is open on this connection: what this
        task runs would otherwise run inside it (and be undone with it), and its
        savepoints would interleave with the other task's."""
        while self._transactions and self._transactions[-1] is not self._own_level():
            if self._transaction_ended is None:
                self._transaction_ended = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._transaction_ended)

    def _notify_transaction_ended(self) -> None:
        ended, self._transaction_ended = self._transaction_ended, None
        if ended is not None and not ended.done():
            ended.set_result(None)

    async def _roll_back_quietly(self) -> None:
        """End what the backend still keeps of a transaction the server ended (SQLite's
        read-only pragma); a connection that fails at it is closed, not reused."""
        raw = self._raw
        if self._state is _BROKEN or raw is None or raw.is_closed:
            return
        try:
            await raw.rollback()
        except DBAccessError:
            self._broke()

    async def _clean_up_after_failure(self, savepoint: str | None) -> None:
        """After a failed COMMIT (or RELEASE), leave no transaction or lock behind."""
        raw = self._raw
        if self._state is _BROKEN or raw is None or raw.is_closed:
            return
        try:
            if savepoint is None:
                if raw.in_transaction:
                    await raw.rollback()
            else:
                await raw.run(f"ROLLBACK TO SAVEPOINT {savepoint}")
        except DBAccessError:
            self._broke()  # let the pool close it rather than reuse it


def _check_size(name: str, size: Any) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InterfaceError(f"{name} must be a positive int (rows), not {size!r}")


def _aborted_error(action: str, orig: DBAccessError) -> DBAccessError:
    """The error for using a transaction the server no longer holds: of the original
    error's dbaccess class (a deadlock stays an OperationalError, which retry loops
    catch), naming it."""
    cls = next(c for c in type(orig).__mro__ if c in _PUBLIC)
    error: DBAccessError = cls(
        f"cannot {action}: the server no longer holds the transaction (it rolled it back "
        f"whole, or it never began) after this error in it: {type(orig).__name__}: {orig}; "
        "leave the block (roll it back) and retry it"
    )
    error.__cause__ = orig
    return error


_PUBLIC: frozenset[type[DBAccessError]] = frozenset(
    getattr(errors, name) for name in errors.__all__ if name != "ConfigurationError"
)


async def _finish(raw: BackendConnection, savepoint: str | None, commit: bool) -> None:
    if savepoint is None:
        await (raw.commit() if commit else raw.rollback())
    elif commit:
        await raw.run(f"RELEASE SAVEPOINT {savepoint}")
    else:
        await raw.run(f"ROLLBACK TO SAVEPOINT {savepoint}")
        await raw.run(f"RELEASE SAVEPOINT {savepoint}")


# One function per kind of call, shared by pooled and bound connections.


async def _fetch_all(raw: BackendConnection, compiled: CompiledQuery) -> Rows:
    raw.queries += 1
    try:
        return await raw.fetch(compiled.sql, compiled.args, None)
    except DBAccessError as exc:
        _name_parameter(exc, compiled.statement)
        raise


async def _fetch_one(raw: BackendConnection, compiled: CompiledQuery) -> Rows:
    raw.queries += 1
    try:
        return await raw.fetch(compiled.sql, compiled.args, 1)
    except DBAccessError as exc:
        _name_parameter(exc, compiled.statement)
        raise


async def _execute(raw: BackendConnection, compiled: CompiledQuery) -> Outcome:
    raw.queries += 1
    try:
        return await raw.execute(compiled.sql, compiled.args, compiled.statement.returns_rows)
    except DBAccessError as exc:
        _name_parameter(exc, compiled.statement)
        raise


def _name_parameter(exc: DBAccessError, statement: Statement) -> None:
    """Name, in the message of an error for a value the backend refused, its parameter.

    The backend knows the value's position among the arguments, the statement the
    names; the error path alone pays for this.
    """
    position = exc.argument_index
    if position is None or exc.parameter is not None:
        return
    names = statement.names
    if statement.expanding or position >= len(names):
        # An IN list's values were spread out: positions no longer match names.
        label = f"argument {position + 1}"
    else:
        exc.parameter = names[position]
        label = f"parameter {names[position]!r}"
    message = str(exc.args[0]) if exc.args else ""
    exc.args = (f"{label}: {message}",)


async def _execute_many(
    raw: BackendConnection, batches: list[tuple[str, list[Sequence[Any]]]]
) -> None:
    raw.queries += 1
    if len(batches) == 1 and raw.atomic_execute_many and not raw.in_transaction:
        await raw.execute_many(*batches[0])
        return

    async def run_all() -> None:
        for sql, many_args in batches:
            await raw.execute_many(sql, many_args)

    await _atomically(raw, run_all)


async def _execute_each(raw: BackendConnection, compiled: list[CompiledQuery]) -> list[Outcome]:
    raw.queries += len(compiled)

    async def run_each() -> list[Outcome]:
        return [
            await raw.execute(each.sql, each.args, each.statement.returns_rows) for each in compiled
        ]

    return await _atomically(raw, run_each)


_T = TypeVar("_T")


async def _atomically(raw: BackendConnection, work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work()`` all or nothing, on every backend: in a transaction of its own, or
    inside the caller's under a savepoint, so that a caller who catches the error can
    still commit the rest of its work."""
    if raw.in_transaction:
        savepoint = f"dbaccess_savepoint_{next(_savepoint_ids)}"
        await raw.run(f"SAVEPOINT {savepoint}")
        try:
            result = await work()
        except DBAccessError:
            # (Unless the server rolled the whole transaction back: the savepoint went
            # with it, and the connection reports that to the transaction.)
            if await raw.transaction_survived():
                await _finish(raw, savepoint, commit=False)
            raise
        await raw.run(f"RELEASE SAVEPOINT {savepoint}")
        return result
    await raw.begin(DEFAULT_MODE)
    try:
        result = await work()
    except DBAccessError:
        await raw.rollback()
        raise
    await raw.commit()
    return result


def _inserted_id(compiled: CompiledQuery, outcome: Outcome) -> Any:
    """The new row's primary key: the one the caller gave, else the driver's."""
    position = compiled.statement.pk_position
    if position is not None and compiled.args[position] is not None:
        return compiled.args[position]
    return outcome.lastrowid


def _result(compiled: CompiledQuery, outcome: Outcome) -> ExecuteResult:
    statement = compiled.statement
    rows = statement.meta(outcome.keys).make_all(outcome.rows) if outcome.rows else []
    if statement.implicit_returning:
        lastrowid = rows[0][0] if rows else None
        return ExecuteResult(outcome.rowcount, lastrowid, [])
    if statement.returns_rows or not statement.is_insert:
        # With RETURNING the returned rows are the answer (SQLite alone would also
        # report a lastrowid, the other backends none).
        return ExecuteResult(outcome.rowcount, None, rows)
    return ExecuteResult(outcome.rowcount, _inserted_id(compiled, outcome), rows)
