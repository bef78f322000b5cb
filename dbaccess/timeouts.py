"""The ``timeout=`` of the query methods: a deadline over a whole call, waiting for a
connection included, and what happens to a statement it cuts off.

On expiry the call is cancelled like any cancelled task: the statement's connection is
closed, never handed to the next user mid-statement, and the pool opens another in its
place. Before it is closed, the backend asks the server to stop the statement
(PostgreSQL ``pg_cancel_backend``, MySQL ``KILL QUERY``; SQLite interrupts it on close).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InterfaceError, OperationalError

if TYPE_CHECKING:
    from .backends.base import Backend, BackendConnection

__all__ = ["check_timeout", "each_within", "within"]

_T = TypeVar("_T")

#: How long the server is given to take the request to stop a timed-out statement.
CANCEL_TIMEOUT = 5.0

Operation = Callable[["BackendConnection", Any], Awaitable[Any]]


class _Deadline:
    """``async with _Deadline(seconds)``: cancel the task when the time is up, and turn
    that cancellation into TimeoutError (asyncio.timeout(), which Python 3.10 lacks)."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_task", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0

    def expired(self) -> bool:
        return self._expired

    async def __aenter__(self) -> _Deadline:
        task = asyncio.current_task()
        if task is None:
            raise InterfaceError("timeout= needs to run in an asyncio task")
        self._task = task
        self._cancelling = _cancel_requests(task)
        self._handle = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        return self

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if not self._expired or self._task is None:
            return
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        remaining = uncancel() if uncancel is not None else self._cancelling
        # A cancellation of the task's own (not ours) goes on as a cancellation.
        cancelled = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        if cancelled and remaining <= self._cancelling:
            raise TimeoutError


def _cancel_requests(task: asyncio.Task[Any]) -> int:
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


def check_timeout(timeout: Any) -> float:
    """Return a valid ``timeout=`` value, or raise naming the bad one."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InterfaceError(
            f"timeout must be a positive number of seconds, or None, not {timeout!r}"
        )
    return float(timeout)


class _Cancelling:
    """An operation that, cut off by its deadline, stops its statement on the server."""

    __slots__ = ("_backend", "_deadline", "_operation", "started")

    def __init__(self, operation: Operation, deadline: _Deadline, backend: Backend):
        self._operation = operation
        self._deadline = deadline
        self._backend = backend
        self.started = False

    async def __call__(self, raw: BackendConnection, argument: Any) -> Any:
        self.started = True
        try:
            return await self._operation(raw, argument)
        except asyncio.CancelledError:
            if self._deadline.expired():
                # Before the connection is closed: closing alone would leave the
                # statement running on the server (PostgreSQL, MySQL).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._backend.cancel_statement(raw), CANCEL_TIMEOUT)
            raise


async def within(
    timeout: float,
    backend: Backend,
    run: Callable[[Operation], Awaitable[_T]],
    operation: Operation,
) -> _T:
    """``run(operation)`` (which borrows a connection and calls the operation on it),
    all of it within ``timeout`` seconds."""
    timeout = check_timeout(timeout)
    deadline = _Deadline(timeout)
    cancelling = _Cancelling(operation, deadline, backend)
    try:
        async with deadline:
            return await run(cancelling)
    except TimeoutError:
        if not deadline.expired():
            raise  # an error of the statement's own (command_timeout), not ours
        raise _timed_out(timeout, cancelling.started) from None


async def each_within(
    stream: AsyncGenerator[_T, None],
    timeout: float,
    backend: Backend,
    loan: list[BackendConnection],
) -> AsyncGenerator[_T, None]:
    """Yield what ``stream`` yields, each step within ``timeout`` seconds; ``loan``
    holds the connection the stream runs on, once it has one."""
    timeout = check_timeout(timeout)
    try:
        while True:
            deadline = _Deadline(timeout)
            try:
                async with deadline:
                    item = await stream.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not deadline.expired():
                    raise
                if loan:
                    # The stream closed its connection already, but the server may still
                    # run the statement: it knows it by its session, not by the socket.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(backend.cancel_statement(loan[0]), CANCEL_TIMEOUT)
                raise OperationalError(
                    f"timed out after timeout={timeout:g} s waiting for the next rows: "
                    "the stream's connection was closed (the pool opens another); inside "
                    "a transaction or a connection() block, leave the block"
                ) from None
            yield item
    finally:
        await stream.aclose()


def _timed_out(timeout: float, started: bool) -> OperationalError:
    if not started:
        return OperationalError(
            f"timed out after timeout={timeout:g} s waiting for a connection: all are in "
            "use; nothing was sent to the database"
        )
    return OperationalError(
        f"timed out after timeout={timeout:g} s: the statement was cancelled and its "
        "connection closed (the pool opens another); inside a transaction or a "
        "connection() block, leave the block"
    )
