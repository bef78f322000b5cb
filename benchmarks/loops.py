"""Running a coroutine on the event loop chosen with --loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "run"]

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")


def _factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown loop {name!r}: choose from {', '.join(LOOPS)}")


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """``asyncio.run(main)`` on a new loop of the kind ``loop`` names (Python 3.10's
    asyncio.run takes no loop factory)."""
    event_loop = _factory(loop)()
    try:
        asyncio.set_event_loop(event_loop)
        return event_loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(event_loop)
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.run_until_complete(event_loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            event_loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
