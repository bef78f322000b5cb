"""One Database used from several event loops: each loop (another thread's, a later
``asyncio.run()``'s, a sync test client's, uvloop's) gets a pool of its own, closed when
the loop ends or by disconnect(); a connection or transaction bound to one loop refuses
another with an error that says so, never the driver's "attached to a different loop"."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 (no release of dbaccess's test extra needs it yet);
    # its TestClient still works with httpx.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient
from dbaccess import Database, InterfaceError, PoolStats

from .conftest import (
    OPEN_SESSIONS,
    aiosqlite_workers,
    create_tables,
    drop_tables,
    eventually,
    notes,
    session_ids,
    skip_behind_pgbouncer,
)

T = TypeVar("T")

#: Runs a coroutine in a new event loop, and closes the loop (as asyncio.run does).
Runner = Callable[[Coroutine[Any, Any, Any]], Any]

RUNNERS: dict[str, Runner] = {"asyncio": asyncio.run}
if sys.platform != "win32":  # where uvloop runs (the test extra installs it there)
    import uvloop

    RUNNERS["uvloop"] = uvloop.run

COUNT = sa.select(sa.func.count()).select_from(notes)


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    """asyncio.run, or uvloop.run."""
    return RUNNERS[request.param]


def sqlite_workers() -> set[threading.Thread]:
    return aiosqlite_workers()


class LoopThread:
    """An event loop running in a thread of its own until :meth:`stop`."""

    def __init__(self, run: Runner) -> None:
        self._started = threading.Event()
        self._thread = threading.Thread(target=run, args=(self._serve(),), daemon=True)
        self._thread.start()
        self._started.wait()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._started.set()
        await self._stopping.wait()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in the thread's loop; wait for it without blocking this one."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    async def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stopping.set)
        await asyncio.to_thread(self._thread.join)


@contextlib.asynccontextmanager
async def loop_thread(run: Runner) -> AsyncIterator[LoopThread]:
    thread = LoopThread(run)
    try:
        yield thread
    finally:
        await thread.stop()


class Sessions:
    """The connections a pool opened, and whether they are closed now: on the server
    (pg_stat_activity, information_schema.processlist), or SQLite's worker threads."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect
        self._before = sqlite_workers()
        self._ids: list[int] = []
        self._threads: set[threading.Thread] = set()
        #: Threads that may outlive the pools: the one that keeps an in-memory database
        #: alive while pools come and go, when noted with them.
        self._keepers = 0

    async def note(self, db: Database, count: int) -> None:
        """Note ``count`` connections of the running loop's pool (run in that loop)."""
        ids = await session_ids(db, self._dialect, count)
        if self._dialect == "sqlite":
            new = sqlite_workers() - self._before - self._threads
            assert len(new) >= count, "note() connections opened after Sessions() only"
            self._keepers += len(new) - count
            self._threads |= new
        else:
            self._ids += ids

    @property
    def noted(self) -> int:
        return len(self._ids) + len(self._threads) - self._keepers

    async def all_closed(self, admin: Database) -> bool:
        """Whether every noted connection ends soon, asked through ``admin``."""
        if self._dialect == "sqlite":

            async def threads_ended() -> bool:
                return sum(t.is_alive() for t in self._threads) <= self._keepers

            return await eventually(threads_ended)
        query = OPEN_SESSIONS[self._dialect][1]

        async def sessions_ended() -> bool:
            return int(await admin.fetch_val(query, {"ids": self._ids})) == 0

        return await eventually(sessions_ended)


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Database]:
    """A Database of this loop's, to ask the server about other connections."""
    skip_behind_pgbouncer(database_url, "server sessions")
    async with Database(database_url, min_size=0) as db:
        yield db


async def add_note(db: Database, text: str) -> None:
    await db.execute(notes.insert(), {"text": text, "completed": False})


async def texts(db: Database) -> list[str]:
    return [row.text for row in await db.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))]


# -- a pool per loop ---------------------------------------------------------------


async def test_a_thread_running_its_own_loop_uses_a_database_connected_here(
    db: Database, run: Runner, admin: Database, dialect: str
) -> None:
    await add_note(db, "main")
    lent_here = db.pool_stats.acquired
    sessions = Sessions(dialect)

    async def elsewhere() -> PoolStats:
        await add_note(db, "thread")
        async with db.transaction():
            await add_note(db, "in a transaction")
        async with db.connection() as conn:
            assert [row.text async for row in conn.iterate(sa.select(notes.c.text))] == [
                "main",
                "thread",
                "in a transaction",
            ]
        await sessions.note(db, 1)
        return db.pool_stats

    stats = await asyncio.to_thread(run, elsewhere())
    assert await texts(db) == ["main", "thread", "in a transaction"]
    # The thread's loop had a pool of its own, and this loop's pool lent nothing to it.
    assert stats.opened >= 1 and stats.acquired >= 4 and stats.in_use == 0
    assert db.pool_stats.acquired == lent_here + 1  # texts() above
    # Its pool closed with its loop (asyncio.run, uvloop.run close it before the loop).
    assert sessions.noted == 1
    assert await sessions.all_closed(admin)


async def test_a_loop_opens_its_pool_on_first_use_with_the_same_options(
    database_url: str,
) -> None:
    async with Database(database_url, min_size=2, max_size=3) as db:

        async def elsewhere() -> tuple[PoolStats, PoolStats]:
            before = db.pool_stats  # this loop has used nothing yet
            assert await db.fetch_val("SELECT 1") == 1
            return before, db.pool_stats

        before, after = await asyncio.to_thread(asyncio.run, elsewhere())
        assert before == PoolStats(size=0, idle=0, in_use=0, waiting=0, max_size=3)
        assert after == PoolStats(size=2, idle=2, in_use=0, waiting=0, max_size=3)
        assert after.opened == 2


async def test_two_loops_in_turn_each_use_their_own_pool(db: Database, run: Runner) -> None:
    async with loop_thread(run) as first, loop_thread(run) as second:
        for round in range(3):
            await first.call(add_note(db, f"first {round}"))
            await second.call(add_note(db, f"second {round}"))
            await add_note(db, f"main {round}")
        first_stats = await first.call(_stats(db))
        second_stats = await second.call(_stats(db))
    assert await db.fetch_val(COUNT) == 9
    for stats in (first_stats, second_stats, db.pool_stats):
        assert stats.in_use == 0 and stats.opened >= 1
    assert first_stats.acquired == second_stats.acquired == 3


async def _stats(db: Database) -> PoolStats:
    return db.pool_stats


def test_asyncio_run_twice_the_second_loop_gets_a_pool_of_its_own(
    database_url: str, dialect: str, run: Runner
) -> None:
    # A test without a loop of its own takes no async fixture: no `admin` to skip it.
    skip_behind_pgbouncer(database_url, "server sessions")
    db = Database(database_url, min_size=1, max_size=2)
    sessions = Sessions(dialect)

    async def first() -> None:
        await db.connect()
        await create_tables(db)
        await add_note(db, "first loop")
        await sessions.note(db, 1)
        # Left connected: the loop ends, and its pool with it.

    async def second() -> None:
        try:
            # Not the first loop's pool (its loop is closed): a pool of this loop's own.
            assert await texts(db) == ["first loop"]
            await add_note(db, "second loop")
            assert db.pool_stats.opened == 1
            async with Database(database_url, min_size=0) as admin:
                assert await sessions.all_closed(admin)
            assert await texts(db) == ["first loop", "second loop"]
        finally:
            await drop_tables(db)
            await db.disconnect()

    run(first())
    assert db.is_connected
    run(second())
    assert not db.is_connected


# -- disconnect() closes every loop's pool --------------------------------------------


async def test_disconnect_closes_the_pools_of_other_loops(
    database_url: str, dialect: str, run: Runner, admin: Database
) -> None:
    db = Database(database_url, min_size=2, max_size=2)
    await db.connect()
    sessions = Sessions(dialect)  # the other loop's connections, opened from now on
    async with loop_thread(run) as other:
        await other.call(sessions.note(db, 2))
        await db.disconnect()
        assert sessions.noted == 2
        assert await sessions.all_closed(admin)
        with pytest.raises(InterfaceError, match="the database is disconnected"):
            await other.call(db.fetch_val("SELECT 1"))
    # Connected again, from the other loop this time: this loop gets a new pool too.
    async with loop_thread(run) as other:
        await other.call(db.connect())
        assert await db.fetch_val("SELECT 1") == 1
        await other.call(db.disconnect())


@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
async def test_a_loop_closed_without_shutdown_leaves_no_connection_behind(
    database_url: str, dialect: str, admin: Database
) -> None:
    db = Database(database_url, min_size=1, max_size=2)
    await db.connect()
    sessions = Sessions(dialect)

    def use_and_close_the_loop() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(sessions.note(db, 1))
        finally:
            loop.close()  # no shutdown_asyncgens(): its pool cannot close in it

    await asyncio.to_thread(use_and_close_the_loop)
    # The next loop does not reach the dead pool.
    async with loop_thread(asyncio.run) as other:
        assert await other.call(db.fetch_val("SELECT 1")) == 1
    assert await db.fetch_val("SELECT 1") == 1
    await db.disconnect()  # drops the dead loop's pool
    gc.collect()  # the sockets that needed their loop to close close as they are collected
    assert await sessions.all_closed(admin)


# -- objects bound to one loop -------------------------------------------------------


async def test_a_connection_used_from_another_loop_raises_a_clear_error(db: Database) -> None:
    async with db.connection() as conn:
        await conn.fetch_val("SELECT 1")

        async def elsewhere() -> None:
            with pytest.raises(InterfaceError, match="belongs to another event loop"):
                await conn.fetch_val("SELECT 1")
            with pytest.raises(InterfaceError, match=r"open a new one with db.connection\(\)"):
                async with conn:
                    pass
            with pytest.raises(InterfaceError, match="belongs to another event loop"):
                await conn.execute(notes.insert(), {"text": "x", "completed": False})
            # This thread inherited the block's context (asyncio.to_thread copies it):
            # a query on the database would run on the block's connection, and cannot.
            with pytest.raises(InterfaceError, match="belongs to another event loop"):
                await db.fetch_val("SELECT 1")
            # A connection of this loop's own works, and its block routes queries to it.
            async with db.connection() as own:
                assert own is not conn
                assert await db.fetch_val("SELECT 2") == 2

        await asyncio.to_thread(asyncio.run, elsewhere())
        # Untouched by the attempts, and still usable here.
        assert await conn.fetch_val("SELECT 3") == 3
    assert db.pool_stats.in_use == 0


async def test_a_transaction_ended_from_another_loop_raises_a_clear_error(db: Database) -> None:
    transaction = await db.transaction()
    await add_note(db, "kept")

    async def elsewhere() -> None:
        with pytest.raises(InterfaceError, match="this transaction belongs to another event"):
            await transaction.commit()
        with pytest.raises(InterfaceError, match="this transaction belongs to another event"):
            await transaction.rollback()

    await asyncio.to_thread(asyncio.run, elsewhere())
    assert transaction.is_active
    await transaction.commit()
    assert await texts(db) == ["kept"]
    assert db.pool_stats.in_use == 0


async def test_a_force_rollback_database_belongs_to_the_loop_that_connected(
    database_url: str,
) -> None:
    async with Database(database_url, force_rollback=True) as db:

        async def elsewhere() -> None:
            with pytest.raises(InterfaceError, match="connected with force_rollback=True in"):
                await db.fetch_val("SELECT 1")
            with pytest.raises(InterfaceError, match="another event loop"):
                async with db.transaction():
                    pass

        await asyncio.to_thread(asyncio.run, elsewhere())
        assert await db.fetch_val("SELECT 2") == 2


# -- a sync test client runs the app in a loop of its own ------------------------------


def notes_app(db: Database, *, lifespan: bool = False) -> Starlette:
    """An app whose handlers use ``db``; with ``lifespan``, it connects and disconnects it."""

    async def create(request: Request) -> JSONResponse:
        async with db.transaction():
            await add_note(db, request.path_params["text"])
        return JSONResponse(await texts(db))

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse(await db.fetch_val("SELECT 42"))

    @contextlib.asynccontextmanager
    async def connected(app: Starlette) -> AsyncIterator[None]:
        async with db:
            yield

    return Starlette(
        routes=[Route("/notes/{text}", create, methods=["POST"]), Route("/answer", answer)],
        lifespan=connected if lifespan else None,
    )


async def test_a_sync_test_client_uses_a_database_this_loop_connected(db: Database) -> None:
    await add_note(db, "from the test")
    # TestClient runs the app in a loop of its own in another thread, while this loop
    # waits for each request.
    with TestClient(notes_app(db)) as client:
        assert client.post("/notes/first").json() == ["from the test", "first"]
        assert client.post("/notes/second").json() == ["from the test", "first", "second"]
    assert await texts(db) == ["from the test", "first", "second"]
    assert db.pool_stats.in_use == 0


async def test_the_apps_lifespan_disconnects_a_database_the_test_connected(
    database_url: str, dialect: str, admin: Database
) -> None:
    sessions = Sessions(dialect)
    db = Database(database_url, min_size=1)
    await db.connect()
    await create_tables(db)
    await sessions.note(db, 1)
    try:
        with TestClient(notes_app(db, lifespan=True)) as client:
            assert client.post("/notes/first").json() == ["first"]
        # The lifespan's disconnect() could not wait for this loop (blocked in the
        # client's exit): this loop closes its pool as soon as it runs again.
        assert not db.is_connected
        assert await sessions.all_closed(admin)
    finally:
        async with Database(database_url) as cleaner:
            await drop_tables(cleaner)


async def test_a_force_rollback_database_connected_in_the_apps_lifespan(
    database_url: str,
) -> None:
    db = Database(database_url, force_rollback=True)
    with TestClient(notes_app(db, lifespan=True)) as client:
        # Connected in the app's loop: its handlers use the one connection, and so do
        # the test's own queries, run in that loop through the client's portal.
        assert client.get("/answer").json() == 42
        assert client.portal.call(db.fetch_val, "SELECT 43") == 43
        # Not from the test's loop, which the connection does not belong to.
        with pytest.raises(InterfaceError, match="force_rollback=True in another event loop"):
            await db.fetch_val("SELECT 44")
    assert not db.is_connected
