"""Database: the facade. Parse the URL, pick the backend, open and close the pools,
and route each call to the current task's connection or to one lent for the call.

What connections run on (backend, compiler, observer, pools) is the :class:`Engine`
(engine.py); lending and taking back a pooled connection is the pool's (pool.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, overload

import sqlalchemy as sa
from sqlalchemy.engine import URL as SQLAlchemyURL

from .backends import SUPPORTED_BACKENDS, backend_class
from .compiler import Query
from .connection import ITERATE_CHUNK_SIZE, Connection
from .engine import DatabaseState, Engine
from .loops import close_pools, terminate_pools
from .observe import Observer, QueryHook, QueryHookFunction
from .options import parse_bool, parse_seconds
from .pool import Pool, PoolStats
from .record import Record
from .replicas import ReplicaNode, Replicas, Target, check_target, split_options
from .result import ExecuteResult
from .transaction import Transaction
from .url import DatabaseURL

__all__ = ["Database"]

logger = logging.getLogger("dbaccess")

#: How long disconnect() waits for connections still in use before closing them.
DISCONNECT_TIMEOUT = 10.0


class Database:
    """A database reached through a pool of connections.

    ``Database(url, force_rollback=False, log_parameters=False,
    slow_statement_threshold=None, **options)``: options are the URL options
    (``min_size``, ``max_size``, ``ssl``...) or keyword arguments of the driver's
    ``connect()``; ``replicas`` (a list of URLs) sends reads to read replicas (see
    replicas.py and docs/scaling.md); ``log_parameters`` adds the values to the DEBUG log of each
    statement, and a statement slower than ``slow_statement_threshold`` seconds is
    logged at WARNING. Call :meth:`connect` before use and :meth:`disconnect` after, or
    use ``async with Database(url) as db:``.
    """

    SUPPORTED_BACKENDS: ClassVar[dict[str, str]] = {
        scheme: entry[0] for scheme, entry in SUPPORTED_BACKENDS.items()
    }

    def __init__(
        self,
        url: str | DatabaseURL | SQLAlchemyURL,
        *,
        force_rollback: bool = False,
        log_parameters: bool = False,
        slow_statement_threshold: float | None = None,
        **options: Any,
    ) -> None:
        # -- read replicas (replicas.py): their options never reach the backend
        self.url, options, replica_config = split_options(DatabaseURL(url), options)
        self.options = options
        backend = backend_class(self.url)(self.url, options)
        observer = Observer(
            self,
            log_parameters=parse_bool("log_parameters", log_parameters),
            slow_statement_threshold=parse_seconds(
                "slow_statement_threshold", slow_statement_threshold
            ),
        )
        self._engine = engine = Engine(self.url, backend, observer)
        self._force_rollback = force_rollback
        # Serves calls made outside any connection block: a pooled connection per call.
        self._per_call = Connection(engine)
        self._global_connection: Connection | None = None
        self._global_transaction: Transaction | None = None
        # connect() and disconnect() run one at a time in a loop: a second connect()
        # waits for the first one's pool instead of failing, or opening a second pool.
        # (An asyncio.Lock works in one loop only: one per loop.)
        self._lifecycle_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lifecycle_guard = threading.Lock()
        # -- read replicas (replicas.py): None without any, the one check on the fast path
        self._replicas: Replicas | None = None
        if replica_config is not None:
            self._replicas = replicas = Replicas(self, replica_config)
            # The end of a block on the primary (a transaction, a connection() block):
            # it may have written, so the context's reads stay on the primary a while.
            engine.block_ended = replicas.wrote

    def __repr__(self) -> str:
        replicas = "" if self._replicas is None else f" replicas={self._replicas.describe()}"
        return f"<Database {self.url.obscure_password!r} {self._engine.state.value}{replicas}>"

    # -- lifecycle ---------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._engine.state is DatabaseState.CONNECTED

    async def connect(self) -> None:
        """Open the pool (``min_size`` connections) of this event loop. Does nothing if
        connected (another loop's first call opens a pool of that loop's own)."""
        if self._engine.state is DatabaseState.CONNECTED:
            return
        async with self._lifecycle():
            if self._engine.state is DatabaseState.DISCONNECTED:
                await self._connect()

    def _lifecycle(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lifecycle_guard:
            lock = self._lifecycle_locks.get(loop)
            if lock is None:
                for ended in [each for each in self._lifecycle_locks if each.is_closed()]:
                    del self._lifecycle_locks[ended]
                lock = self._lifecycle_locks[loop] = asyncio.Lock()
        return lock

    async def _connect(self) -> None:
        self._engine.state = DatabaseState.CONNECTING
        try:
            await self._engine.pools.get()
            if self._replicas is not None:
                await self._replicas.connect()
            self._engine.state = DatabaseState.CONNECTED
            if self._force_rollback:
                connection = Connection(self._engine, shared_by_tasks=True)
                await connection._acquire_ref()
                self._global_connection = connection
                self._global_transaction = await connection.transaction(force_rollback=True)
        except BaseException:
            await self._disconnect(DISCONNECT_TIMEOUT)
            raise
        logger.info("connected to %s", self.url.obscure_password)

    async def disconnect(self, timeout: float | None = DISCONNECT_TIMEOUT) -> None:
        """Close the pool. Waits up to ``timeout`` seconds (10 by default; forever when
        None) for connections in use to come back, then closes them anyway. Does
        nothing if not connected."""
        if self._engine.state is not DatabaseState.CONNECTED:
            return
        async with self._lifecycle():
            if self._engine.state is DatabaseState.CONNECTED:
                await self._disconnect(timeout)

    async def _disconnect(self, timeout: float | None) -> None:
        self._engine.state = DatabaseState.DISCONNECTING
        # Calls made meanwhile fail (the database is disconnecting); connections given
        # back meanwhile reach their pool, whose close() waits for them.
        pools = self._engine.pools.take_all()
        transaction, self._global_transaction = self._global_transaction, None
        connection, self._global_connection = self._global_connection, None

        async def close(pool: Pool) -> None:  # in the pool's own loop
            try:
                if connection is not None and connection._pool is pool:
                    try:
                        if transaction is not None and transaction.is_active:
                            await transaction.rollback()
                    finally:
                        if connection.is_bound:
                            await connection._release_ref()
            finally:
                await pool.close(timeout)

        try:
            if self._replicas is not None:
                await self._replicas.disconnect(timeout)
            await close_pools(pools, close)
            await self._engine.backend.close()
        except BaseException:
            # Interrupted (cancelled, most likely): close what is left at once, without
            # waiting for anything, so that no connection outlives the Database.
            terminate_pools(pools)
            self._engine.backend.terminate()
            raise
        finally:
            self._engine.state = DatabaseState.DISCONNECTED
        logger.info("disconnected from %s", self.url.obscure_password)

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.disconnect()

    @property
    def pool_stats(self) -> PoolStats:
        """Size, idle, in-use and waiting counts of the calling event loop's pool (all
        zero in a loop that has not used the database yet)."""
        self._engine.check_connected("read pool_stats")
        pool = self._engine.pools.current()
        if pool is None:
            return PoolStats(0, 0, 0, 0, self._engine.backend.options.max_size)
        return pool.stats

    # -- read replicas (replicas.py) -------------------------------------------------

    @property
    def pool_stats_by_node(self) -> dict[str, PoolStats]:
        """:attr:`pool_stats` of every node: ``"primary"``, then ``"replica1"``,
        ``"replica2"``... in the order the replicas were given."""
        stats = {"primary": self.pool_stats}
        if self._replicas is not None:
            stats.update(self._replicas.pool_stats())
        return stats

    @property
    def replicas(self) -> tuple[ReplicaNode, ...]:
        """The replicas, each with its name, URL, health and last measured lag."""
        return () if self._replicas is None else self._replicas.nodes

    def route(self, target: Target) -> contextlib.AbstractContextManager[None]:
        """``with db.route("primary"):`` sends the reads of the block (and of the tasks
        it starts) to the primary; ``"replica"`` to a replica even when they would
        stay on the primary (right after a write, or raw SQL that is not plainly a
        read), the primary still when no replica is healthy. Writes, transactions and
        ``connection()`` blocks stay on the primary. Without replicas: no effect."""
        target = check_target(target)
        if self._replicas is None:
            return contextlib.nullcontext()
        return self._replicas.route(target)

    def add_query_hook(
        self,
        *,
        before: QueryHookFunction | None = None,
        after: QueryHookFunction | None = None,
    ) -> QueryHook:
        """Call ``before`` and ``after`` (sync or async) with a QueryEvent around each statement."""
        return self._engine.observer.add_hook(before, after)

    @contextlib.contextmanager
    def force_rollback(self) -> Iterator[None]:
        """Within this block, a later :meth:`connect` rolls everything back at disconnect."""
        initial = self._force_rollback
        self._force_rollback = True
        try:
            yield
        finally:
            self._force_rollback = initial

    # -- connections and transactions ---------------------------------------------

    def connection(self) -> Connection:
        """The current task's connection; ``async with`` it to hold one for a block."""
        if self._global_connection is not None:
            return self._global_connection
        current = self._engine.current.get()
        # A block of another event loop (a thread started in it inherits the context) is
        # not this loop's: this loop gets a connection of its own.
        if current is not None and current.is_bound and current._in_running_loop():
            return current
        return Connection(self._engine)

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on the current task's connection.

        Options: ``isolation`` ("read committed", "repeatable read", "serializable",
        "read uncommitted"), ``readonly``, on PostgreSQL ``deferrable``, and on SQLite
        ``transaction_mode`` ("auto", "deferred", "immediate", "exclusive").
        """
        return Transaction(self.connection, self._engine, force_rollback=force_rollback, **options)

    # -- queries -------------------------------------------------------------------

    def _route(self) -> Connection:
        if self._global_connection is not None:
            return self._global_connection
        current = self._engine.current.get()
        if current is not None and current.is_bound:
            return current
        return self._per_call

    async def fetch_all(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Record]:
        """Run a query and return all its rows."""
        if self._replicas is not None:
            return await self._replicas.read(
                query, lambda c: c.fetch_all(query, values, timeout=timeout)
            )
        return await self._route().fetch_all(query, values, timeout=timeout)

    async def fetch_one(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        """Run a query and return its first row, or None when it has none."""
        if self._replicas is not None:
            return await self._replicas.read(
                query, lambda c: c.fetch_one(query, values, timeout=timeout)
            )
        return await self._route().fetch_one(query, values, timeout=timeout)

    async def fetch_val(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        column: Any = 0,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a query and return one value (by position or name) of its first row."""
        if self._replicas is not None:
            return await self._replicas.read(
                query, lambda c: c.fetch_val(query, values, column=column, timeout=timeout)
            )
        return await self._route().fetch_val(query, values, column=column, timeout=timeout)

    async def execute(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a statement; return the new primary key after an INSERT, the first
        value of the first returned row (RETURNING), else None."""
        try:
            return await self._route().execute(query, values, timeout=timeout)
        finally:
            if self._replicas is not None:  # read-your-writes (replicas.py)
                self._replicas.wrote()

    async def execute_result(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecuteResult:
        """Run a statement and return its rowcount, new primary key and RETURNING rows."""
        try:
            return await self._route().execute_result(query, values, timeout=timeout)
        finally:
            if self._replicas is not None:  # read-your-writes (replicas.py)
                self._replicas.wrote()

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
        """Run a statement for each mapping of values, atomically; with ``returning``,
        return its RETURNING rows, or the new primary keys of a Core insert."""
        connection = self._route()
        try:
            if returning:
                return await connection.execute_many(query, values, returning=True, timeout=timeout)
            await connection.execute_many(query, values, timeout=timeout)
            return None
        finally:
            if self._replicas is not None:  # read-your-writes (replicas.py)
                self._replicas.wrote()

    def iterate(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        chunk_size: int = ITERATE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        """Yield a query's rows as they stream from the database, ``chunk_size`` rows
        per round trip; ``timeout`` bounds each wait for rows."""
        # The connection's own generator: one level of generators fewer per row, and
        # closing it (aclose(), or leaving `async for` early) closes the stream at once.
        if self._replicas is not None:
            return self._replicas.stream(
                query, lambda c: c.iterate(query, values, chunk_size=chunk_size, timeout=timeout)
            )
        return self._route().iterate(query, values, chunk_size=chunk_size, timeout=timeout)

    def batched_iterate(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        batch_size: int = ITERATE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Record], None]:
        """Yield a query's rows in lists of ``batch_size`` as they stream."""
        if self._replicas is not None:
            return self._replicas.stream(
                query,
                lambda c: c.batched_iterate(query, values, batch_size=batch_size, timeout=timeout),
            )
        return self._route().batched_iterate(query, values, batch_size=batch_size, timeout=timeout)

    async def create_all(self, metadata: sa.MetaData, *, checkfirst: bool = True) -> None:
        """Create a MetaData's tables, indexes, sequences and enum types in dependency
        order (see :meth:`Connection.create_all`)."""
        await self.connection().create_all(metadata, checkfirst=checkfirst)

    async def drop_all(self, metadata: sa.MetaData, *, checkfirst: bool = True) -> None:
        """Drop a MetaData's tables, sequences and enum types in dependency order."""
        await self.connection().drop_all(metadata, checkfirst=checkfirst)
