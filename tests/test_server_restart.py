"""The server stops and starts again under a running application: while it is down,
every call fails fast with OperationalError (no hang); once it is back, calls succeed
again on fresh connections, with no action by the application. A server that hangs
(frozen: it keeps its connections open and answers nothing) fails calls after
command_timeout and connect_timeout instead of hanging them.

Each test stops, starts or freezes a server of the test session's own (tests/servers.py:
its own data directory and port), never the servers the rest of the suite uses. SQLite
has no server to restart: these tests skip there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from dbaccess import Database, DatabaseURL, OperationalError

from .conftest import released
from .servers import PrivateServer

pytestmark = pytest.mark.slow

#: Far longer than failing fast takes (milliseconds); reaching it means a hang.
HANG = 30.0

T = TypeVar("T")


@pytest.fixture
def server(database_url: str, dialect: str, request: pytest.FixtureRequest) -> PrivateServer:
    """The private server of the test URL's kind, running when the test starts."""
    if dialect == "sqlite":
        pytest.skip("SQLite has no server to stop")
    name = "private_postgresql" if dialect == "postgresql" else "private_mariadb"
    server: PrivateServer = request.getfixturevalue(name)
    server.ensure_running()
    return server


@pytest.fixture
def url(server: PrivateServer, database_url: str) -> str:
    """The test URL's scheme (driver), on the private server."""
    return server.url(DatabaseURL(database_url).scheme)


async def fails_fast(call: Callable[[], Awaitable[Any]]) -> OperationalError:
    """Run ``call``, which must raise OperationalError, and not hang doing so."""
    try:
        await asyncio.wait_for(call(), HANG)
    except OperationalError as exc:
        return exc
    except asyncio.TimeoutError:
        pytest.fail(f"hung for {HANG} s instead of failing fast")
    pytest.fail("succeeded with the server stopped")


async def stopped(server: PrivateServer) -> None:
    """Stop the server in a thread: the event loop runs meanwhile, as it would in an
    application, and its connections read the server's goodbye."""
    await asyncio.to_thread(server.stop)


async def started(server: PrivateServer) -> None:
    await asyncio.to_thread(server.start)


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, seconds)


async def test_calls_fail_fast_while_the_server_is_down_then_recover(
    url: str, server: PrivateServer
) -> None:
    async with Database(url, min_size=3, max_size=4) as db:
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.idle == 3

        await stopped(server)
        await fails_fast(lambda: db.fetch_val("SELECT 1"))
        await fails_fast(lambda: db.fetch_all("SELECT 1"))
        await fails_fast(lambda: db.execute("SELECT 1"))

        async def in_a_transaction() -> None:
            async with db.transaction():
                await db.fetch_val("SELECT 1")

        await fails_fast(in_a_transaction)

        async def iterating() -> None:
            async for _ in db.iterate("SELECT 1"):
                pass

        await fails_fast(iterating)
        # Many callers at once while the server is down: each fails on its own.
        outcomes = await within(
            HANG,
            asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(20)), return_exceptions=True),
        )
        assert all(isinstance(outcome, OperationalError) for outcome in outcomes), outcomes
        # The dead connections are gone, not waiting to be handed out again.
        assert db.pool_stats.idle == 0 and db.pool_stats.in_use == 0

        await started(server)
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(8)))
        assert results == list(range(8))
        async with db.transaction():
            assert await db.fetch_val("SELECT 2") == 2
        assert await released(db)


async def test_a_restart_while_the_pool_is_idle_is_invisible_to_callers(
    url: str, server: PrivateServer
) -> None:
    async with Database(url, min_size=4, max_size=4) as db:
        await asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(4)))
        assert db.pool_stats.idle == 4
        await stopped(server)
        await started(server)
        # Every pooled connection died with the old server; none reaches a caller.
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(8)))
        assert results == list(range(8))
        assert await released(db)


async def test_a_transaction_open_across_a_restart_fails_and_the_next_one_works(
    url: str, server: PrivateServer
) -> None:
    async with Database(url, min_size=1, max_size=2) as db:
        with pytest.raises(OperationalError):
            async with db.transaction():
                assert await db.fetch_val("SELECT 1") == 1
                await stopped(server)
                await started(server)
                await within(HANG, db.fetch_val("SELECT 1"))
        # The rollback on exit did not hang, and no connection was kept.
        assert await released(db)
        async with db.transaction():
            assert await db.fetch_val("SELECT 3") == 3
        assert await db.fetch_val("SELECT 4") == 4


async def test_connect_fails_fast_while_down_and_works_once_the_server_is_back(
    url: str, server: PrivateServer
) -> None:
    await stopped(server)
    db = Database(url, min_size=2)
    exc = await fails_fast(db.connect)
    assert "127.0.0.1" in str(exc)
    assert not db.is_connected
    await started(server)
    # The same Database object connects once the server is up.
    await within(HANG, db.connect())
    try:
        assert await db.fetch_val("SELECT 5") == 5
    finally:
        await db.disconnect()


async def test_disconnect_while_the_server_is_down_does_not_hang(
    url: str, server: PrivateServer
) -> None:
    db = Database(url, min_size=3, max_size=3)
    await db.connect()
    assert await db.fetch_val("SELECT 1") == 1
    await stopped(server)
    await within(HANG, db.disconnect())
    assert not db.is_connected


async def test_a_frozen_server_fails_calls_after_the_timeouts_then_recovers(
    url: str, server: PrivateServer
) -> None:
    async with Database(url, min_size=1, max_size=2, command_timeout=1, connect_timeout=1) as db:
        assert await db.fetch_val("SELECT 1") == 1
        with server.frozen():
            on_pooled, on_new = await asyncio.gather(
                # The first takes the pooled connection, which the frozen server keeps
                # open; the second opens a new one, which it never answers.
                fails_fast(lambda: db.fetch_val("SELECT 1")),
                fails_fast(lambda: db.fetch_val("SELECT 2")),
            )
            assert "command_timeout" in str(on_pooled)
            assert "connect_timeout" in str(on_new)
            assert db.pool_stats.in_use == 0
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(4)))
        assert results == list(range(4))
        assert await released(db)
