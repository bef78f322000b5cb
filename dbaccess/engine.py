"""Engine: what a Database's connections run on.

The backend (the driver and its dialect), the compiler for that dialect, the observer,
the pools (one per event loop, see loops.py) and the database's lifecycle state, in one
object that :class:`~dbaccess.connection.Connection` and
:class:`~dbaccess.transaction.Transaction` are given instead of the
:class:`~dbaccess.database.Database`: they reach down to it, never back up to the
facade. The facade creates it, opens and closes its pools, and routes calls.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .backends.base import Backend, BackendConnection
from .compiler import Compiler
from .errors import InterfaceError
from .loops import LoopPools
from .observe import Observer
from .pool import Pool
from .url import DatabaseURL

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["DatabaseState", "Engine"]


class DatabaseState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"


class Engine:
    """A database's backend, compiler, observer and pools, and its lifecycle state."""

    def __init__(self, url: DatabaseURL, backend: Backend, observer: Observer) -> None:
        self.url = url
        self.backend = backend
        self.observer = observer
        self.compiler = Compiler(backend.dialect)
        #: Changed by the Database alone (connect, disconnect); read here and by it.
        self.state = DatabaseState.DISCONNECTED
        #: A pool per event loop that used the database.
        self.pools = LoopPools(self._new_pool)
        #: The connection bound to the current context by an ``async with`` block.
        self.current: ContextVar[Connection | None] = ContextVar(
            f"dbaccess.connection.{id(self)}", default=None
        )
        #: Called, in the releasing task's context, when a block's connection goes back
        #: to its pool (the facade's read replicas start read-your-writes there).
        self.block_ended: Callable[[], None] | None = None

    def check_connected(self, action: str) -> None:
        if self.state is not DatabaseState.CONNECTED:
            raise InterfaceError(
                f"cannot {action}: the database is {self.state.value}; "
                "call `await database.connect()` first"
            )

    async def pool(self) -> Pool:
        """The running event loop's pool, opened on the loop's first call.

        Its callers on the path of every call (``acquire()``, ``Connection._use``) test
        first, inline, whether the home pool is the running loop's (one comparison), and
        call this for another loop's pool, or when disconnected."""
        self.check_connected("run a query")
        return await self.pools.get()

    async def acquire(self) -> tuple[Pool, BackendConnection]:
        """A connection lent by the running loop's pool, and the pool to give it back to."""
        pool = self.pools.home
        if pool is None or pool.loop is not asyncio.get_running_loop():
            pool = await self.pool()
        return pool, await pool.acquire()

    def _new_pool(self) -> Pool:
        options = self.backend.options
        return Pool(
            self._open_connection,
            min_size=options.min_size,
            max_size=options.max_size,
            acquire_timeout=options.acquire_timeout,
            init=options.init,
            setup=options.setup,
            max_lifetime=options.max_lifetime,
            max_idle=options.max_idle,
            max_queries=options.max_queries,
            on_wait=self.observer.acquire_waited,
        )

    async def _open_connection(self) -> BackendConnection:
        return await self.observer.connect(self.backend.connect)
