"""A Database's pools, one per event loop that used it.

The loop that connects gets the first pool; a call from another loop (another thread, a
later ``asyncio.run()``, a test client's loop) gets a pool of that loop's own, opened on
its first use, since a driver connection works only in the loop that opened it. The
pool of the loop that connected is the *home* pool: calls from its loop reach it with
one comparison. When the home pool's loop has ended, the next loop to open a pool takes
its place.

Closing them all (``Database.disconnect()``) happens in each pool's own loop: at once
for the calling loop's, through ``asyncio.run_coroutine_threadsafe`` for a loop running
in another thread, and not at all for a loop that has closed (its pool is dropped:
see :meth:`Pool.drop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .pool import Pool

__all__ = ["LOOP_ANSWER_TIMEOUT", "LoopPools", "close_pools", "terminate_pools"]

logger = logging.getLogger("dbaccess")

#: How long disconnect() waits for another thread's loop to start closing its pool. A
#: loop that does not answer is busy or blocked (in a sync call waiting for this very
#: shutdown, perhaps): it closes its pool when it runs again, or when it ends.
LOOP_ANSWER_TIMEOUT = 0.5

#: Closes one pool, in the pool's own loop.
Closer = Callable[[Pool], Coroutine[Any, Any, None]]


class LoopPools:
    """The pools of a Database, by event loop."""

    def __init__(self, make_pool: Callable[[], Pool]) -> None:
        self._make_pool = make_pool
        #: The pool that calls reach first: the connecting loop's (read without a lock,
        #: as one attribute, so a thread never sees one loop with another's pool).
        self.home: Pool | None = None
        self._pools: dict[asyncio.AbstractEventLoop, Pool] = {}
        # Threads add and remove pools; the await (opening one) happens outside it.
        self._lock = threading.Lock()

    def current(self) -> Pool | None:
        """The running loop's pool (outside any loop, the home pool), if it has one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.home
        return self._pools.get(loop)

    async def get(self) -> Pool:
        """The running loop's pool, opened (``min_size`` connections) on its first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is not None and pool.is_open:
                return pool
            pool = self._pools[loop] = self._make_pool()
            home = self.home
            if home is None or not home.is_open or _has_ended(home):
                self.home = pool
            dead = [each for each in self._pools if each.is_closed()]
            dropped = [self._pools.pop(each) for each in dead]
        for each in dropped:
            each.drop()  # closed before it ended, without asyncio.run's shutdown
        try:
            await pool.open()
        except BaseException:
            with self._lock:
                if self._pools.get(loop) is pool:
                    del self._pools[loop]
                if self.home is pool:
                    self.home = None
            raise
        return pool

    def take_all(self) -> list[Pool]:
        """Forget every pool (the database disconnects) and return them."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self.home = None
        return pools


async def close_pools(pools: list[Pool], close: Closer) -> None:
    """Run ``close(pool)`` in each pool's loop; drop the pools whose loop has ended."""
    running = asyncio.get_running_loop()
    closing = []
    for pool in pools:
        loop = pool.loop
        if loop is running:
            closing.append(close(pool))
        elif loop is not None and loop.is_running():
            closing.append(_close_in(loop, pool, close))
        else:
            pool.drop()
    await asyncio.gather(*closing)


def terminate_pools(pools: list[Pool]) -> None:
    """Close every pool's connections at once, each in its own loop where it runs."""
    loop = asyncio.get_running_loop()
    for pool in pools:
        if pool.loop is loop:
            pool.terminate()
        elif pool.loop is not None and pool.loop.is_running():
            with contextlib.suppress(RuntimeError):  # it closed meanwhile
                pool.loop.call_soon_threadsafe(pool.terminate)
        else:
            pool.drop()


async def _close_in(loop: asyncio.AbstractEventLoop, pool: Pool, close: Closer) -> None:
    """Run ``close(pool)`` in the pool's loop, which runs in another thread."""
    done = asyncio.run_coroutine_threadsafe(close(pool), loop)
    # Polled rather than awaited with wrap_future(): that would make the other loop call
    # back into this one, which may have closed by the time it finishes.
    answer_by = time.monotonic() + LOOP_ANSWER_TIMEOUT
    while not done.done():
        if not done.running() and time.monotonic() > answer_by:
            logger.info(
                "disconnect(): the event loop of another thread did not answer within "
                "%s s; it closes its connections when it runs again, or ends",
                LOOP_ANSWER_TIMEOUT,
            )
            return
        await asyncio.sleep(0.005)
    done.result()


def _has_ended(pool: Pool) -> bool:
    return pool.loop is None or pool.loop.is_closed()
