"""A server that hangs (frozen: it keeps its connections open and answers nothing) fails
every call that waits on it after command_timeout, instead of holding it forever; once
the server answers again, the same Database works.

The servers frozen here are the test session's own (tests/servers.py: a private MariaDB
and a private PostgreSQL on ports of their own), never the shared ones, and each test
thaws its server on the way out whatever happens. On MySQL/MariaDB, whose server
enforces command_timeout, dbaccess gives up command_timeout + 2 s after the last answer
and aborts the connection; each case runs on both drivers. Slow (each case waits for
the timeout), so marked `slow`; CI runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from dbaccess import Database, OperationalError

from .conftest import released
from .servers import PrivateMariaDB, PrivatePostgreSQL

pytestmark = pytest.mark.slow

#: Far longer than giving up takes (command_timeout + 2 s = 3 s): reaching it is a hang.
HANG = 30.0
#: Bigger than what the kernel's socket buffers take in while the server reads nothing
#: (a few MB on loopback), smaller than MariaDB's max_allowed_packet (16 MB).
LARGE = 12_000_000


@pytest.fixture(params=["mysql", "mysql+asyncmy"])
async def mariadb(
    request: pytest.FixtureRequest, private_mariadb: PrivateMariaDB
) -> AsyncIterator[Database]:
    """A Database on the private MariaDB, with one warm connection in its pool."""
    url = private_mariadb.url(request.param)
    # acquire_timeout: a test that fails holding the one connection must not hang the
    # teardown's statements (pytest-timeout does not bound fixture teardown).
    async with Database(
        url, min_size=1, max_size=1, command_timeout=1, connect_timeout=1, acquire_timeout=HANG
    ) as db:
        await db.execute("DROP TABLE IF EXISTS frozen_rows")
        await db.execute("CREATE TABLE frozen_rows (id INTEGER PRIMARY KEY, text TEXT)")
        yield db
        await db.execute("DROP TABLE IF EXISTS frozen_rows")


async def gives_up(awaitable: Awaitable[Any]) -> OperationalError:
    """Await a call made on the frozen server: it must raise OperationalError naming
    command_timeout, and not hang."""
    try:
        await asyncio.wait_for(awaitable, HANG)
    except OperationalError as exc:
        assert "command_timeout" in str(exc), exc
        return exc
    except asyncio.TimeoutError:
        pytest.fail(f"hung for {HANG} s on the frozen server")
    pytest.fail("succeeded on the frozen server")


async def works_again(db: Database) -> None:
    """After the thaw: the given-up connection is gone, and calls succeed."""
    assert await released(db)
    assert await asyncio.wait_for(db.fetch_val("SELECT 7"), HANG) == 7
    async with db.transaction():
        await db.execute("INSERT INTO frozen_rows (id, text) VALUES (1000, 'after')")
    assert await db.fetch_val("SELECT COUNT(*) FROM frozen_rows WHERE id = 1000") == 1


async def test_execute_many_inside_a_transaction(
    mariadb: Database, private_mariadb: PrivateMariaDB
) -> None:
    rows = [{"id": n, "text": f"row {n}"} for n in range(200)]
    transaction = await mariadb.transaction()
    await mariadb.execute("INSERT INTO frozen_rows (id, text) VALUES (-1, 'first')")
    with private_mariadb.frozen():
        await gives_up(
            mariadb.execute_many("INSERT INTO frozen_rows (id, text) VALUES (:id, :text)", rows)
        )
    with contextlib.suppress(OperationalError):  # the connection is gone with its transaction
        await transaction.rollback()
    assert await mariadb.fetch_val("SELECT COUNT(*) FROM frozen_rows") == 0
    await works_again(mariadb)


async def test_execute_many_on_its_own(mariadb: Database, private_mariadb: PrivateMariaDB) -> None:
    rows = [{"id": n, "text": f"row {n}"} for n in range(200)]
    with private_mariadb.frozen():
        await gives_up(
            mariadb.execute_many("INSERT INTO frozen_rows (id, text) VALUES (:id, :text)", rows)
        )
    assert await mariadb.fetch_val("SELECT COUNT(*) FROM frozen_rows") == 0
    await works_again(mariadb)


async def test_iterate_started_on_the_frozen_server(
    mariadb: Database, private_mariadb: PrivateMariaDB
) -> None:
    async def iterate() -> None:
        async for _ in mariadb.iterate("SELECT seq FROM seq_1_to_10"):
            pass

    with private_mariadb.frozen():
        await gives_up(iterate())
    await works_again(mariadb)


async def test_the_server_freezes_in_the_middle_of_iterate(
    mariadb: Database, private_mariadb: PrivateMariaDB
) -> None:
    # Far more than the socket buffers hold: the loop runs out of rows already sent.
    query = "SELECT seq, REPEAT('x', 1000) FROM seq_1_to_1000000"
    seen = 0

    async def iterate() -> None:
        nonlocal seen
        frozen = contextlib.ExitStack()
        try:
            async for _ in mariadb.iterate(query):
                seen += 1
                if seen == 1:
                    frozen.enter_context(private_mariadb.frozen())
        finally:
            frozen.close()

    await gives_up(iterate())
    assert 0 < seen < 1_000_000
    await works_again(mariadb)


async def test_a_statement_larger_than_the_socket_buffers(
    mariadb: Database, private_mariadb: PrivateMariaDB
) -> None:
    # The frozen server reads none of it: what the kernel does not take stays in the
    # transport's buffer, and only abort() (not close()) ends the wait for it.
    with private_mariadb.frozen():
        await gives_up(mariadb.fetch_val("SELECT LENGTH(:text)", {"text": "x" * LARGE}))
    await works_again(mariadb)


async def test_a_statement_inside_a_transaction(
    mariadb: Database, private_mariadb: PrivateMariaDB
) -> None:
    transaction = await mariadb.transaction()
    await mariadb.execute("INSERT INTO frozen_rows (id, text) VALUES (1, 'one')")
    with private_mariadb.frozen():
        await gives_up(mariadb.execute("INSERT INTO frozen_rows (id, text) VALUES (2, 'two')"))
    with contextlib.suppress(OperationalError):
        await transaction.rollback()
    assert await mariadb.fetch_val("SELECT COUNT(*) FROM frozen_rows") == 0
    await works_again(mariadb)


@pytest.mark.parametrize("scheme", ["mysql", "mysql+asyncmy"])
async def test_disconnect_from_the_frozen_server(
    scheme: str, private_mariadb: PrivateMariaDB
) -> None:
    db = Database(private_mariadb.url(scheme), min_size=2, command_timeout=1, connect_timeout=1)
    await db.connect()
    assert await db.fetch_val("SELECT 1") == 1
    with private_mariadb.frozen():
        await asyncio.wait_for(db.disconnect(), HANG)
    assert not db.is_connected
    await db.connect()  # the same Database, once the server answers again
    try:
        assert await db.fetch_val("SELECT 2") == 2
    finally:
        await db.disconnect()


async def test_a_frozen_postgresql_fails_a_statement_and_a_new_connection(
    private_postgresql: PrivatePostgreSQL,
) -> None:
    async with Database(
        private_postgresql.url(), min_size=1, max_size=2, command_timeout=1, connect_timeout=1
    ) as db:
        assert await db.fetch_val("SELECT 1") == 1
        with private_postgresql.frozen():
            outcomes: tuple[Any, ...] = await asyncio.gather(
                # The first takes the pooled connection, which the frozen server keeps
                # open; the second opens a new one, which it never answers.
                asyncio.wait_for(db.fetch_val("SELECT 1"), HANG),
                asyncio.wait_for(db.fetch_val("SELECT 2"), HANG),
                return_exceptions=True,
            )
        on_pooled, on_new = outcomes
        assert isinstance(on_pooled, OperationalError), on_pooled
        assert isinstance(on_new, OperationalError), on_new
        assert "command_timeout" in str(on_pooled) and "connect_timeout" in str(on_new)
        assert await released(db)
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(4)))
        assert results == list(range(4))


async def test_a_long_execute_many_that_keeps_answering_is_not_cut_short(
    mariadb: Database,
) -> None:
    # Not frozen: eight statements of 0.5 s each outlast the 3 s bound taken together,
    # but each answers well within it, and only silence counts.
    await mariadb.execute_many(
        "INSERT INTO frozen_rows (id, text) VALUES (:id, 'old')", [{"id": n} for n in range(8)]
    )
    await mariadb.execute_many(
        "UPDATE frozen_rows SET text = :text WHERE id = :id AND SLEEP(0.5) = 0",
        [{"id": n, "text": f"new {n}"} for n in range(8)],
    )
    texts = await mariadb.fetch_all("SELECT text FROM frozen_rows ORDER BY id")
    assert [row["text"] for row in texts] == [f"new {n}" for n in range(8)]
