"""Connection: one pooled driver connection as seen by one task and its children.

``Database`` binds a Connection to the current context (a ContextVar) while an
``async with db.connection()`` or ``db.transaction()`` block runs, so the task and
the tasks it starts inside the block share it; sibling tasks each get their own.
Statements on a shared connection run one at a time (a lock). Outside any block,
each call borrows a pooled connection for that call only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .backends.base import DEFAULT_MODE, BackendConnection, Outcome, Rows
from .compiler import CompiledQuery, Query, Statement
from .errors import DBAccessError, InterfaceError, OperationalError
from .record import Record
from .result import ExecuteResult

if TYPE_CHECKING:
    from .database import Database
    from .transaction import Transaction

__all__ = ["Connection"]

#: Rows fetched per round trip by iterate().
ITERATE_CHUNK_SIZE = 1000


class Connection:
    """A database connection for the current task; reusable with ``async with``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._raw: BackendConnection | None = None
        self._refs = 0
        self._lock = asyncio.Lock()
        self._transactions: list[Transaction] = []
        #: A statement was interrupted (cancelled) mid-way: the driver connection's
        #: state is unknown, so it is closed instead of going back to the pool.
        self._broken = False
        # Per task, what the ContextVar held before each `async with` entered.
        # (An entry lives from a block's entry to its exit, so a plain dict does not leak.)
        self._restore: dict[asyncio.Task[Any], list[Connection | None]] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Connection:
        await self._acquire_ref()
        current = self._database._current
        previous = current.get()
        task = asyncio.current_task()
        if task is not None:
            self._restore.setdefault(task, []).append(previous)
        if previous is not self:
            current.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        task = asyncio.current_task()
        if task is not None and (stack := self._restore.get(task)):
            previous = stack.pop()
            if not stack:
                del self._restore[task]
            if previous is not self:
                self._database._current.set(previous)
        await self._release_ref()

    @property
    def is_bound(self) -> bool:
        """Whether a driver connection is held (inside an ``async with`` block)."""
        return self._refs > 0

    async def _acquire_ref(self) -> None:
        if self._refs == 0:
            self._raw = await self._database._acquire()
            self._broken = False
        self._refs += 1

    async def _release_ref(self) -> None:
        self._refs -= 1
        if self._refs == 0:
            await self._release_raw()

    async def _release_raw(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            await self._database._give_back(raw, broken=self._broken)

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
        from .transaction import Transaction

        return Transaction(lambda: self, self._database, force_rollback=force_rollback, **options)

    # -- queries -----------------------------------------------------------------

    async def fetch_all(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> list[Record]:
        """Run a query and return all its rows."""
        compiled = self._database._compiler.compile(query, values)
        rows, keys = await self._use(_fetch_all, compiled)
        return compiled.statement.meta(keys).make_all(rows)

    async def fetch_one(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> Record | None:
        """Run a query and return its first row, or None when it has none."""
        compiled = self._database._compiler.compile(query, values)
        rows, keys = await self._use(_fetch_one, compiled)
        return compiled.statement.meta(keys).make(rows[0]) if rows else None

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None = None, column: Any = 0
    ) -> Any:
        """Run a query and return one value of its first row (None when no row)."""
        row = await self.fetch_one(query, values)
        return None if row is None else row[column]

    async def execute(self, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        """Run a statement; return the new primary key after an INSERT, the first value
        of the first row when it returns rows (RETURNING), else None."""
        compiled = self._database._compiler.compile(query, values)
        outcome = await self._use(_execute, compiled)
        statement = compiled.statement
        if statement.returns_rows:
            if not outcome.rows:
                return None
            return statement.meta(outcome.keys).make(outcome.rows[0])[0]
        return _inserted_id(compiled, outcome) if statement.is_insert else None

    async def execute_result(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> ExecuteResult:
        """Run a statement and report its rowcount, new primary key and RETURNING rows."""
        compiled = self._database._compiler.compile(query, values)
        outcome = await self._use(_execute, compiled)
        return _result(compiled, outcome)

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per mapping of values, atomically, in few round trips."""
        compiler = self._database._compiler
        batches = compiler.compile_many(query, values)
        if not batches:
            return
        try:
            await self._use(_execute_many, batches)
        except DBAccessError as exc:
            if exc.argument_index is not None and len(batches) == 1:
                # One statement for every row: the first row's compilation names it.
                _name_parameter(exc, compiler.compile(query, values[0]).statement)
            raise

    async def iterate(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[Record, None]:
        """Yield a query's rows as they arrive, without holding them all in memory.

        Inside a transaction the rows stream on the transaction's connection (other
        statements may run between chunks); otherwise on a connection of their own,
        so queries inside the loop never wait for the loop.
        """
        compiled = self._database._compiler.compile(query, values)
        if self._refs and self._transactions:
            stream = self._stream_shared(compiled)
        else:
            stream = self._stream_dedicated(compiled)
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

    async def _stream_shared(self, compiled: CompiledQuery) -> AsyncGenerator[Rows, None]:
        await self._acquire_ref()
        try:
            raw = self._checked_raw()
            chunks = raw.stream(compiled.sql, compiled.args, ITERATE_CHUNK_SIZE, True)
            try:
                while True:
                    async with self._lock:
                        try:
                            chunk = await chunks.__anext__()
                        except StopAsyncIteration:
                            return
                        except BaseException as exc:
                            self._note_failure(exc)
                            raise
                    yield chunk
            finally:
                async with self._lock:
                    await chunks.aclose()
        finally:
            await self._release_ref()

    async def _stream_dedicated(self, compiled: CompiledQuery) -> AsyncGenerator[Rows, None]:
        database = self._database
        raw = await database._acquire()
        chunks = raw.stream(compiled.sql, compiled.args, ITERATE_CHUNK_SIZE, False)
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
                await database._give_back(raw, broken=broken)

    # -- running statements ------------------------------------------------------

    async def _use(self, operation: Any, argument: Any) -> Any:
        """Run ``operation(raw, argument)`` on this task's driver connection, or on a
        pooled one for this call only when none is bound."""
        if not self._refs:
            return await self._database._with_pooled(operation, argument)
        self._refs += 1  # a child task may still run a statement when the block ends
        lock = self._lock
        try:
            await lock.acquire()
            try:
                raw = self._checked_raw()
                return await operation(raw, argument)
            except BaseException as exc:
                self._note_failure(exc)
                raise
            finally:
                lock.release()
        finally:
            self._refs -= 1
            if not self._refs:
                await self._release_raw()

    def _checked_raw(self) -> BackendConnection:
        raw = self._raw
        if raw is None:
            raise InterfaceError("cannot run a statement: the connection was released")
        if self._broken:
            raise InterfaceError(
                "cannot run a statement: a statement on this connection was interrupted "
                "earlier in the block; leave the block and start a new one"
            )
        if raw.is_closed:
            raise OperationalError(
                "the connection to the database was lost (closed by the server, or a "
                "network failure); leave the block: the next one gets a new connection"
            )
        return raw

    def _note_failure(self, exc: BaseException) -> None:
        if not isinstance(exc, DBAccessError):
            self._broken = True


# One function per kind of call, shared by pooled and bound connections.


async def _fetch_all(raw: BackendConnection, compiled: CompiledQuery) -> Rows:
    try:
        return await raw.fetch(compiled.sql, compiled.args, None)
    except DBAccessError as exc:
        _name_parameter(exc, compiled.statement)
        raise


async def _fetch_one(raw: BackendConnection, compiled: CompiledQuery) -> Rows:
    try:
        return await raw.fetch(compiled.sql, compiled.args, 1)
    except DBAccessError as exc:
        _name_parameter(exc, compiled.statement)
        raise


async def _execute(raw: BackendConnection, compiled: CompiledQuery) -> Outcome:
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
    if raw.in_transaction or (len(batches) == 1 and raw.atomic_execute_many):
        for sql, many_args in batches:
            await raw.execute_many(sql, many_args)
        return
    # All rows or none, on every backend.
    await raw.begin(DEFAULT_MODE)
    try:
        for sql, many_args in batches:
            await raw.execute_many(sql, many_args)
    except DBAccessError:
        await raw.rollback()
        raise
    await raw.commit()


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
