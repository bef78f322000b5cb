"""asyncpg's cancel requests outlive the connection they cancel a statement of.

When the task awaiting a statement is cancelled (by the application, or by a per-call
timeout), asyncpg sends a cancel request in a task of its own, on a connection of its
own. ``terminate()`` then cancels that task, closing the request's socket before the
server (or PgBouncer) has answered it. PgBouncer 1.18 and 1.19 (Debian 12's is 1.18)
then exit with ``FATAL ... disconnect_client(): bad client state`` (pgbouncer PR #846,
fixed in 1.20), taking every client of every pool with them; and a request cut off
before it was sent leaves the statement running. So dbaccess lets those requests end
by themselves, within :data:`~dbaccess.timeouts.CANCEL_TIMEOUT`, after it terminates
the connection. (One still in flight when its event loop closes is cut off all the same.)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import asyncpg

from ..timeouts import CANCEL_TIMEOUT

__all__ = ["let_cancel_requests_finish"]

#: The requests taken out of terminated connections, held until they end (the event
#: loop holds tasks weakly).
_finishing: set[asyncio.Task[Any]] = set()


def let_cancel_requests_finish(conn: asyncpg.Connection) -> None:
    """Take ``conn``'s cancel requests in flight out of its hands, so that terminating
    it does not cut them off; each still ends within CANCEL_TIMEOUT seconds."""
    in_flight: set[asyncio.Task[Any]] | None = getattr(conn, "_cancellations", None)
    if not in_flight:  # asyncpg 0.27-0.32 keep them there; none is the usual case
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # terminated from outside its loop (a closed one): nothing can run them
    for task in list(in_flight):
        if task.done() or task.get_loop() is not loop or not _started(task):
            continue  # one not started has no socket to cut: cancelled as before
        in_flight.discard(task)
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)
        # A server that never answers (frozen) must not keep the request forever.
        deadline = loop.call_later(CANCEL_TIMEOUT, task.cancel)
        task.add_done_callback(_ended(deadline))


def _started(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` has begun (it needs ``conn``, which terminate() takes away)."""
    coro = task.get_coro()
    return not inspect.iscoroutine(coro) or inspect.getcoroutinestate(coro) != "CORO_CREATED"


def _ended(deadline: asyncio.TimerHandle) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback that drops ``deadline`` once its request has ended."""

    def callback(_task: asyncio.Task[Any]) -> None:
        deadline.cancel()

    return callback
