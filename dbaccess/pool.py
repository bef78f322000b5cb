"""A connection pool, the same for every backend.

It hands out idle connections in LIFO order (the warmest first), opens new ones up
to ``max_size``, and queues waiters fairly. Giving a connection back costs no round
trip: :class:`~dbaccess.connection.Connection` has already made sure it is clean (no
open transaction), and a connection that is closed or broken is dropped instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .backends.base import BackendConnection
from .errors import InterfaceError, OperationalError

__all__ = ["Pool", "PoolStats"]


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool: how many connections exist, sit idle, are lent out,
    and how many callers wait for one."""

    size: int
    idle: int
    in_use: int
    waiting: int
    max_size: int


class PoolState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Pool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[BackendConnection]],
        *,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
    ) -> None:
        self._connect = connect
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._idle: collections.deque[BackendConnection] = collections.deque()
        self._in_use: set[BackendConnection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[BackendConnection | None]] = (
            collections.deque()
        )
        self._state = PoolState.NEW
        self._all_returned: asyncio.Event | None = None
        #: Idle connections being closed politely by close().
        self._closing: list[BackendConnection] = []

    @property
    def stats(self) -> PoolStats:
        idle, in_use = len(self._idle), len(self._in_use)
        waiting = sum(1 for waiter in self._waiters if not waiter.done())
        return PoolStats(idle + in_use + self._opening, idle, in_use, waiting, self._max_size)

    async def open(self) -> None:
        """Open ``min_size`` connections; fail (and close them) if one cannot open."""
        if self._state is not PoolState.NEW:
            raise InterfaceError(f"cannot open the pool: it is {self._state.value}")
        self._state = PoolState.OPEN
        try:
            while len(self._idle) < self._min_size:
                self._idle.append(await self._open_one())
        except BaseException:
            await self.close(timeout=0)
            raise

    async def _open_one(self) -> BackendConnection:
        self._opening += 1
        task = asyncio.current_task()
        requests = _cancel_requests(task)
        try:
            conn = await self._connect()
        finally:
            self._opening -= 1
        if _cancel_requests(task) > requests:
            # The task was cancelled while the driver connected, and the driver swallowed
            # it: Python 3.11's asyncio.wait_for() returns the result when cancellation
            # and completion race (aiomysql connects through it). Deliver it after all.
            conn.terminate()
            raise asyncio.CancelledError()
        return conn

    def acquire_nowait(self) -> BackendConnection | None:
        """Lend an idle connection at once, or return None (then await acquire())."""
        # Idle connections and live waiters never coexist: release() serves waiters first.
        if self._state is PoolState.OPEN:
            idle = self._idle
            while idle:
                conn = idle.pop()
                if not conn.is_closed:
                    self._in_use.add(conn)
                    return conn
                conn.terminate()  # the server closed it while idle: free its socket
        return None

    async def acquire(self) -> BackendConnection:
        """Lend a connection; wait at most ``acquire_timeout`` for one to come back."""
        if self._state is not PoolState.OPEN:
            raise InterfaceError(f"cannot acquire a connection: the pool is {self._state.value}")
        conn = self.acquire_nowait()
        if conn is not None:
            return conn
        if len(self._in_use) + self._opening < self._max_size:
            return await self._open_lent()
        return await self._wait()

    async def _open_lent(self) -> BackendConnection:
        try:
            conn = await self._open_one()
        except BaseException:
            self._wake_one()  # the place it would have taken is free again
            raise
        if self._state is not PoolState.OPEN:
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
        if conn.is_closed or self._state is not PoolState.OPEN:
            conn.terminate()  # idempotent: frees the socket of a connection found dead
            self._wake_one()
        elif self._wake_one(conn):
            self._in_use.add(conn)
        else:
            self._idle.append(conn)
        if self._all_returned is not None and not self._in_use:
            self._all_returned.set()

    def discard(self, conn: BackendConnection) -> None:
        """Close a connection that must not be reused and free its place."""
        conn.terminate()
        self.release(conn)

    async def close(self, timeout: float | None = None) -> None:
        """Close idle connections, wait up to ``timeout`` for lent ones, then close them."""
        if self._state in (PoolState.CLOSING, PoolState.CLOSED):
            return
        self._state = PoolState.CLOSING
        self._fail_waiters()
        try:
            if self._in_use and timeout != 0:
                self._all_returned = asyncio.Event()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._all_returned.wait(), timeout)
            self._closing, self._idle = list(self._idle), collections.deque()
            await asyncio.gather(*(_close(conn) for conn in self._closing))
        finally:
            # Whatever interrupted the polite close (a cancelled disconnect()): nothing
            # stays open.
            self.terminate()

    def terminate(self) -> None:
        """Close every connection at once, lent or not, without waiting for the server."""
        self._state = PoolState.CLOSED
        self._fail_waiters()
        for conn in (*self._closing, *self._idle, *self._in_use):
            conn.terminate()  # idempotent: a no-op on a connection closed already
        self._closing, self._idle = [], collections.deque()
        self._in_use.clear()

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


async def _close(conn: BackendConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5.0)
    except Exception:
        # Closing politely failed (server gone, timeout): drop the socket instead.
        conn.terminate()
