"""A connection pool, the same for every backend.

It hands out idle connections in LIFO order (the warmest first), opens new ones up
to ``max_size``, and queues waiters fairly. It also owns the rule for taking one back
(:meth:`Pool.give_back`): a connection left in a transaction is rolled back, one whose
session a statement changed is reset, and one that is closed or was interrupted
mid-statement is closed instead of reused. A clean one comes back with no round trip
(:meth:`Pool.release`, synchronous, so cancellation cannot interrupt it).

What users configure on the drivers' own pools lives here too: an ``init`` hook run on
each new connection, a ``setup`` hook run on each loan (both given the driver's own
connection), and the limits after which a connection is replaced: ``max_lifetime``
(seconds since it opened), ``max_queries`` (queries it ran) and ``max_idle`` (seconds it
sat unused). Unused, they cost nothing; used, a few comparisons and clock reads at
acquire and release.
A connection past a limit is closed politely in a task of its own, and keeps its place
in ``max_size`` until it is closed, so the server never sees more than ``max_size``.

A pool belongs to the event loop that opened it (its connections' sockets, its futures
and timers are that loop's), and closes when that loop ends: ``asyncio.run()``, uvloop,
anyio and pytest-asyncio close a loop's asynchronous generators before the loop, and
the pool keeps one open for that purpose.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .backends.base import BackendConnection
from .errors import DBAccessError, InterfaceError, OperationalError
from .options import Hook

__all__ = ["Pool", "PoolStats"]


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool: how many connections exist, sit idle, are lent out and how
    many callers wait for one now; how many were opened, failed to open and were lent
    since the pool opened, and how long callers waited for one."""

    #: Connections that exist now: idle, in use, opening or closing (at most max_size).
    size: int
    #: Connections ready to lend.
    idle: int
    #: Connections lent out.
    in_use: int
    #: Callers waiting for a connection (all max_size exist and are in use).
    waiting: int
    max_size: int
    # The counters since the pool opened are left out of ==, which compares the state
    # now: PoolStats(size=1, idle=1, in_use=0, waiting=0, max_size=1) == db.pool_stats
    # stays true, as before they existed.
    #: Connections opened since the pool opened.
    opened: int = field(default=0, compare=False)
    #: Attempts to open a connection that failed (server down, bad password, timeout...).
    open_failed: int = field(default=0, compare=False)
    #: Loans of a connection.
    acquired: int = field(default=0, compare=False)
    #: Loans that had to wait, because no idle connection was ready: for a connection to
    #: open, or to come back.
    acquire_wait_count: int = field(default=0, compare=False)
    #: Seconds those loans waited, in total.
    acquire_wait_total: float = field(default=0.0, compare=False)


class PoolState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# PoolState's members as module globals, read on the path of every call: on Python
# 3.11 `PoolState.X` is a lookup through the enum's metaclass, ~0.1 us each time.
_NEW, _OPEN, _CLOSING, _CLOSED = (
    PoolState.NEW,
    PoolState.OPEN,
    PoolState.CLOSING,
    PoolState.CLOSED,
)


class Pool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[BackendConnection]],
        *,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
        init: Hook | None = None,
        setup: Hook | None = None,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        max_queries: int | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._connect = connect
        #: Told how long each loan that had to wait waited (the observer's metrics).
        self._on_wait = on_wait
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._init = init
        self._setup = setup
        self._max_lifetime = max_lifetime
        self._max_idle = max_idle
        self._max_queries = max_queries
        #: Whether a connection may be worn out (checked when it comes back and is lent).
        self._wears = max_lifetime is not None or max_queries is not None
        #: No hook and no limit: loans and returns take the shortest path.
        self._plain = not self._wears and setup is None and max_idle is None
        #: When each idle connection came back (kept only with max_idle). The idle deque
        #: is in that order too: oldest on the left, since release() appends on the right.
        self._idle_since: dict[BackendConnection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        #: Connections past a limit, closing politely (by the task closing each); each
        #: holds its place meanwhile.
        self._retiring: dict[asyncio.Task[None], BackendConnection] = {}
        self._idle: collections.deque[BackendConnection] = collections.deque()
        self._in_use: set[BackendConnection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[BackendConnection | None]] = (
            collections.deque()
        )
        self._state = _NEW
        #: The event loop the pool opened in: the only one its connections work in.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Suspended while the pool is open: its loop's shutdown closes it, and the pool.
        self._closer: AsyncGenerator[None, None] | None = None
        self._all_returned: asyncio.Event | None = None
        #: Idle connections being closed politely by close().
        self._closing: list[BackendConnection] = []
        # Counters of PoolStats: one addition per event, no clock on the loan that
        # finds an idle connection.
        self._opened = 0
        self._open_failed = 0
        self._acquired = 0
        self._waits = 0
        self._wait_total = 0.0

    @property
    def stats(self) -> PoolStats:
        idle, in_use = len(self._idle), len(self._in_use)
        waiting = sum(1 for waiter in self._waiters if not waiter.done())
        size = idle + in_use + self._opening + len(self._retiring)
        return PoolStats(
            size,
            idle,
            in_use,
            waiting,
            self._max_size,
            opened=self._opened,
            open_failed=self._open_failed,
            acquired=self._acquired,
            acquire_wait_count=self._waits,
            acquire_wait_total=self._wait_total,
        )

    @property
    def is_open(self) -> bool:
        return self._state is _OPEN

    async def open(self) -> None:
        """Open ``min_size`` connections; fail (and close them) if one cannot open."""
        if self._state is not _NEW:
            raise InterfaceError(f"cannot open the pool: it is {self._state.value}")
        self._state = _OPEN
        self.loop = asyncio.get_running_loop()
        closer = _closes_with_loop(self)
        # The first step registers it with the loop, whose shutdown_asyncgens() closes it.
        await closer.__anext__()
        self._closer = closer
        try:
            while len(self._idle) < self._min_size:
                self._rest(await self._open_one())
        except BaseException:
            await self.close(timeout=0)
            raise

    async def _open_one(self) -> BackendConnection:
        self._opening += 1
        task = asyncio.current_task()
        requests = _cancel_requests(task)
        try:
            try:
                conn = await self._connect()
            except BaseException:
                self._open_failed += 1
                raise
            self._opened += 1
            if _cancel_requests(task) > requests:
                # The task was cancelled while the driver connected, and the driver
                # swallowed it: Python 3.11's asyncio.wait_for() returns the result when
                # cancellation and completion race (aiomysql connects through it).
                # Deliver it after all.
                conn.terminate()
                raise asyncio.CancelledError()
            if self._init is not None:
                try:
                    await _call(self._init, conn.raw)
                except BaseException:
                    conn.terminate()  # half set up: nobody may use it
                    raise
        finally:
            self._opening -= 1
        return conn

    def acquire_nowait(self) -> BackendConnection | None:
        """Lend an idle connection at once, or return None (then await acquire())."""
        if not self._plain:
            if self._setup is not None:
                return None  # the setup hook must be awaited: acquire() runs it
            return self._take_idle()
        # _take_idle() without the limits, inline: this runs for every call made outside
        # a block, and unused options must not make it slower.
        if self._state is _OPEN:
            idle = self._idle
            while idle:
                conn = idle.pop()
                if not conn.is_closed:
                    self._in_use.add(conn)
                    self._acquired += 1
                    return conn
                conn.terminate()  # the server closed it while idle: free its socket
        return None

    def _take_idle(self) -> BackendConnection | None:
        # Idle connections and live waiters never coexist: release() serves waiters first.
        if self._state is _OPEN:
            idle = self._idle
            while idle:
                conn = idle.pop()
                rested = False  # whether it sat idle for max_idle (its timer is late)
                if self._max_idle is not None:
                    since = self._idle_since.pop(conn)
                    rested = time.monotonic() - since >= self._max_idle
                if conn.is_closed:
                    conn.terminate()  # the server closed it while idle: free its socket
                elif rested or (self._wears and self._worn(conn)):
                    self._retire(conn)
                else:
                    self._in_use.add(conn)
                    self._acquired += 1
                    return conn
        return None

    async def acquire(self) -> BackendConnection:
        """Lend a connection; wait at most ``acquire_timeout`` for one to come back."""
        if self._state is not _OPEN:
            raise InterfaceError(f"cannot acquire a connection: the pool is {self._state.value}")
        conn = self._take_idle()
        if conn is None:
            started = time.monotonic()
            if len(self._in_use) + self._opening + len(self._retiring) < self._max_size:
                conn = await self._open_lent()
            else:
                conn = await self._wait()
            waited = time.monotonic() - started
            self._acquired += 1
            self._waits += 1
            self._wait_total += waited
            if self._on_wait is not None:
                self._on_wait(waited)
        if self._setup is not None:
            try:
                await _call(self._setup, conn.raw)
            except BaseException:
                # Whatever the hook left behind (half a change of session state, a
                # statement cut off by cancellation), the next user must not inherit it.
                self.discard(conn)
                raise
        return conn

    async def _open_lent(self) -> BackendConnection:
        try:
            conn = await self._open_one()
        except BaseException:
            self._wake_one()  # the place it would have taken is free again
            raise
        if self._state is not _OPEN:
            conn.terminate()
            raise InterfaceError("cannot acquire a connection: the pool was closed")
        self._in_use.add(conn)
        return conn

    async def _wait(self) -> BackendConnection:
        waiter: asyncio.Future[BackendConnection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            conn = await asyncio.wait_for(asyncio.shield(waiter), self._acquire_timeout)
        except asyncio.TimeoutError:
            self._abandon(waiter)
            raise OperationalError(
                f"timed out after {self._acquire_timeout} s waiting for a connection: "
                f"all {self._max_size} are in use (raise max_size or acquire_timeout)"
            ) from None
        except BaseException:
            self._abandon(waiter)
            raise
        if conn is None:  # a place was freed: open a connection in it
            return await self._open_lent()
        return conn

    def _abandon(self, waiter: asyncio.Future[BackendConnection | None]) -> None:
        """A waiter gave up; pass on whatever was handed to it meanwhile."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled():
            conn = waiter.result()
            if conn is None:
                self._wake_one()
            else:
                self._in_use.add(conn)
                self.release(conn)

    def _wake_one(self, conn: BackendConnection | None = None) -> bool:
        """Hand ``conn`` (or, if None, a free place) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def release(self, conn: BackendConnection) -> None:
        """Take a connection back. Synchronous, so cancellation cannot interrupt it."""
        self._in_use.discard(conn)
        if conn.is_closed or self._state is not _OPEN:
            conn.terminate()  # idempotent: frees the socket of a connection found dead
            self._wake_one()
        elif self._wears and self._worn(conn):
            self._retire(conn)  # its place is handed on once it is closed
        elif self._wake_one(conn):
            self._in_use.add(conn)
        elif self._max_idle is None:
            self._idle.append(conn)
        else:
            self._rest(conn)
        if self._all_returned is not None and not self._in_use:
            self._all_returned.set()

    def _rest(self, conn: BackendConnection) -> None:
        """Put a connection among the idle ones (and time its rest, with max_idle)."""
        self._idle.append(conn)
        if self._max_idle is not None:
            self._idle_since[conn] = time.monotonic()
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().call_later(self._max_idle, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for max_idle; come back for the next one due."""
        self._sweeper = None
        max_idle = self._max_idle
        if max_idle is None or self._state is not _OPEN:
            return
        now = time.monotonic()
        idle, since = self._idle, self._idle_since
        while idle and now - since[idle[0]] >= max_idle:
            conn = idle.popleft()
            del since[conn]
            self._retire(conn)
        if idle:
            delay = since[idle[0]] + max_idle - now
            self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _worn(self, conn: BackendConnection) -> bool:
        """Whether a connection reached max_queries or max_lifetime."""
        if self._max_queries is not None and conn.queries >= self._max_queries:
            return True
        lifetime = self._max_lifetime
        return lifetime is not None and time.monotonic() - conn.opened_at >= lifetime

    def _retire(self, conn: BackendConnection) -> None:
        """Close a connection past a limit politely, in a task of its own."""
        task = asyncio.get_running_loop().create_task(_close(conn))
        self._retiring[task] = conn
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)
        if self._state is _OPEN:
            self._wake_one()  # the place it held is free: a waiter opens a connection in it

    def discard(self, conn: BackendConnection) -> None:
        """Close a connection that must not be reused and free its place."""
        conn.terminate()
        self.release(conn)

    # -- loans ----------------------------------------------------------------------

    async def run(
        self,
        operation: Callable[[BackendConnection, Any], Awaitable[Any]],
        argument: Any,
        changes_session: bool,
    ) -> Any:
        """Run ``operation(conn, argument)`` on a connection lent for this call alone,
        then take it back: clean (see :meth:`give_back`), or closed if the call was
        interrupted. ``changes_session``: the statement changes its session state."""
        conn = self.acquire_nowait() or await self.acquire()
        try:
            result = await operation(conn, argument)
        except BaseException as exc:
            # A dbaccess error came from the server, which answered: the connection is
            # sound. Anything else (a cancellation most likely) left it mid-statement.
            broken = not isinstance(exc, DBAccessError)
            await self.give_back(conn, broken=broken, reset=changes_session)
            raise
        if conn.in_transaction or conn.is_closed or changes_session:
            await self.give_back(conn, broken=False, reset=changes_session)
        else:
            self.release(conn)  # the usual case: nothing to clean, no await
        return result

    async def give_back(
        self, conn: BackendConnection, *, broken: bool, reset: bool = False
    ) -> None:
        """Take back a lent connection clean, or close it: ``broken``, it is in an unknown
        state; still in a transaction (a raw "BEGIN" by hand), it is rolled back;
        ``reset``, a statement changed its session state (SET, temporary tables), which
        must not reach the next user."""
        if broken or conn.is_closed or not self.is_open:
            # (Closing or closed: close() waits for what is lent, not for cleaning it.)
            self.discard(conn)
            return
        try:
            if conn.in_transaction:
                await conn.rollback()
            if reset and not await conn.reset_session():
                self.discard(conn)
                return
        except BaseException:
            self.discard(conn)
            raise
        self.release(conn)

    async def close(self, timeout: float | None = None) -> None:
        """Close idle connections, wait up to ``timeout`` for lent ones, then close them."""
        if self._state in (_CLOSING, _CLOSED):
            return
        self._state = _CLOSING
        self._fail_waiters()
        self._stop_sweeping()
        try:
            if self._in_use and timeout != 0:
                self._all_returned = asyncio.Event()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._all_returned.wait(), timeout)
            self._closing, self._idle = list(self._idle), collections.deque()
            self._idle_since.clear()
            # With the connections past a limit that are closing already.
            await asyncio.gather(*(_close(conn) for conn in self._closing), *self._retiring)
        finally:
            # Whatever interrupted the polite close (a cancelled disconnect()): nothing
            # stays open.
            self.terminate()
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()  # nothing left to close: it returns at once

    def drop(self) -> None:
        """Drop a pool whose event loop has closed: terminate what can end without the
        loop (psycopg's sockets, SQLite's threads). A socket that needs its loop to close
        (asyncpg's, aiomysql's, asyncmy's) closes when it is garbage-collected."""
        self._closer = None  # suspended in a closed loop: collected with the pool
        self._stop_sweeping()
        for conn in self._connections():
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                conn.terminate()
        self._state = _CLOSED
        self._forget_all()

    def terminate(self) -> None:
        """Close every connection at once, lent or not, without waiting for the server."""
        self._state = _CLOSED
        self._fail_waiters()
        self._stop_sweeping()
        for conn in self._connections():
            conn.terminate()  # idempotent: a no-op on a connection closed already
        self._forget_all()

    def _connections(self) -> tuple[BackendConnection, ...]:
        return (*self._closing, *self._idle, *self._in_use, *self._retiring.values())

    def _forget_all(self) -> None:
        self._closing, self._idle = [], collections.deque()
        self._idle_since.clear()
        self._in_use.clear()

    def _stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _fail_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(
                    InterfaceError("cannot acquire a connection: the pool was closed")
                )
        self._waiters.clear()


def _cancel_requests(task: asyncio.Task[Any] | None) -> int:
    """How many cancellations of ``task`` are pending (0 before Python 3.11)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling() if cancelling is not None else 0


async def _call(hook: Hook, raw: Any) -> None:
    """Run a user's hook on the driver's connection: awaited when it returns an awaitable."""
    result = hook(raw)
    if inspect.isawaitable(result):
        await result


async def _closes_with_loop(pool: Pool) -> AsyncGenerator[None, None]:
    """Wait, suspended, for the pool's loop to end (or the pool to close)."""
    try:
        yield
    finally:
        if pool._closer is not None:
            # The loop is ending (its tasks were cancelled already): close the pool while
            # the loop can still close connections politely.
            pool._closer = None
            await pool.close(timeout=0)


async def _close(conn: BackendConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5.0)
    except Exception:
        # Closing politely failed (server gone, timeout): drop the socket instead.
        conn.terminate()
