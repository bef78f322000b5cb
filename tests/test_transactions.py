"""Transactions: commit, rollback, savepoints, options, misuse, force_rollback."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from dbaccess import (
    Connection,
    Database,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Transaction,
    TransactionState,
)

from .conftest import create_tables, notes, users

T = TypeVar("T")


class Boom(Exception):
    """Raised by the tests to abort a block."""


async def texts(db: Database | Connection) -> list[str]:
    """The texts of all notes, in insertion order."""
    rows = await db.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row["text"] for row in rows]


async def add_note(db: Database | Connection, text: str) -> None:
    await db.execute(notes.insert(), {"text": text, "completed": False})


def run_outside(context: contextvars.Context, coroutine: Awaitable[T]) -> asyncio.Task[T]:
    """Start a task in ``context`` (a copy taken before a connection block was entered),
    so that it uses a connection of its own rather than the block's."""
    return context.run(asyncio.ensure_future, coroutine)


def state(tx: Transaction) -> TransactionState:
    """tx.state, read through a call so that mypy does not narrow it between asserts."""
    return tx.state


# -- async with: commit and rollback ------------------------------------------------


async def test_block_commits(db: Database) -> None:
    async with db.transaction() as tx:
        assert isinstance(tx, Transaction)
        assert state(tx) is TransactionState.ACTIVE
        await add_note(db, "one")
        await add_note(db, "two")
    assert state(tx) is TransactionState.COMMITTED
    assert await texts(db) == ["one", "two"]


async def test_block_rolls_back_by_hand(db: Database) -> None:
    async with db.transaction() as tx:
        await add_note(db, "gone")
        assert await texts(db) == ["gone"]
        await tx.rollback()
        assert state(tx) is TransactionState.ROLLED_BACK
    assert state(tx) is TransactionState.ROLLED_BACK
    assert await texts(db) == []


async def test_exception_rolls_back_and_propagates(db: Database) -> None:
    with pytest.raises(Boom, match="abort"):
        async with db.transaction() as tx:
            await add_note(db, "gone")
            raise Boom("abort")
    assert state(tx) is TransactionState.ROLLED_BACK
    assert await texts(db) == []


async def test_force_rollback_transaction(db: Database) -> None:
    async with db.transaction(force_rollback=True) as tx:
        await add_note(db, "gone")
        assert await texts(db) == ["gone"]
    assert state(tx) is TransactionState.ROLLED_BACK
    assert await texts(db) == []


async def test_database_error_inside_block_propagates_and_rolls_back(db: Database) -> None:
    await db.execute(users.insert(), {"name": "alice"})
    with pytest.raises(IntegrityError):
        async with db.transaction():
            await add_note(db, "gone")
            await db.execute(users.insert(), {"name": "alice"})
    assert await texts(db) == []


# -- decorator -------------------------------------------------------------------------


async def test_decorator_runs_each_call_in_its_own_transaction(db: Database) -> None:
    seen: dict[int, list[str]] = {}

    @db.transaction()
    async def add(number: int) -> int:
        await add_note(db, f"note {number}")
        await asyncio.sleep(0)  # let the other calls interleave
        rows = await db.fetch_all(sa.select(notes.c.text).where(notes.c.text == f"note {number}"))
        seen[number] = [row["text"] for row in rows]
        if number % 2:
            raise Boom(f"odd {number}")
        return number

    results = await asyncio.gather(*(add(n) for n in range(8)), return_exceptions=True)

    for number, result in enumerate(results):
        if number % 2:
            assert isinstance(result, Boom) and str(result) == f"odd {number}"
        else:
            assert result == number
        assert seen[number] == [f"note {number}"]  # each call saw its own insert
    # Only the calls that raised were rolled back, and only their own work.
    assert sorted(await texts(db)) == [f"note {n}" for n in (0, 2, 4, 6)]
    assert db.pool_stats.in_use == 0


async def test_decorator_can_be_called_again(db: Database) -> None:
    @db.transaction(force_rollback=True)
    async def add(text: str) -> list[str]:
        await add_note(db, text)
        return await texts(db)

    assert await add("first") == ["first"]
    assert await add("second") == ["second"]  # the first call's row was rolled back
    assert await texts(db) == []


# -- by hand -----------------------------------------------------------------------------


async def test_manual_await_then_commit(db: Database) -> None:
    tx = await db.transaction()
    assert state(tx) is TransactionState.ACTIVE
    await add_note(db, "kept")
    await tx.commit()
    assert state(tx) is TransactionState.COMMITTED
    assert db.pool_stats.in_use == 0
    assert await texts(db) == ["kept"]


async def test_manual_start_then_rollback(db: Database) -> None:
    tx = db.transaction()
    assert state(tx) is TransactionState.NEW
    assert await tx.start() is tx
    await add_note(db, "gone")
    assert await texts(db) == ["gone"]
    await tx.rollback()
    assert state(tx) is TransactionState.ROLLED_BACK
    assert db.pool_stats.in_use == 0
    assert await texts(db) == []


# -- nested transactions are savepoints ---------------------------------------------------


async def test_inner_rollback_keeps_outer_work(db: Database) -> None:
    async with db.transaction():
        await add_note(db, "outer")
        async with db.transaction() as inner:
            await add_note(db, "inner")
            await inner.rollback()
        with pytest.raises(Boom):
            async with db.transaction():
                await add_note(db, "inner raised")
                raise Boom
        await add_note(db, "outer again")
    assert await texts(db) == ["outer", "outer again"]


async def test_inner_commit_then_outer_rollback_discards_both(db: Database) -> None:
    async with db.transaction() as outer:
        await add_note(db, "outer")
        async with db.transaction() as inner:
            await add_note(db, "inner")
        assert state(inner) is TransactionState.COMMITTED
        assert await texts(db) == ["outer", "inner"]
        await outer.rollback()
    assert await texts(db) == []


async def test_three_levels(db: Database) -> None:
    async with db.transaction():
        await add_note(db, "level 1")
        async with db.transaction():
            await add_note(db, "level 2")
            async with db.transaction() as third:
                await add_note(db, "level 3")
                assert await texts(db) == ["level 1", "level 2", "level 3"]
                await third.rollback()
            assert await texts(db) == ["level 1", "level 2"]
            async with db.transaction():
                await add_note(db, "level 3 again")
    assert await texts(db) == ["level 1", "level 2", "level 3 again"]

    async with db.transaction():
        await add_note(db, "second 1")
        async with db.transaction() as second:
            await add_note(db, "second 2")
            async with db.transaction():
                await add_note(db, "second 3")  # released into level 2...
            await second.rollback()  # ...which then rolls back with it
    assert await texts(db) == ["level 1", "level 2", "level 3 again", "second 1"]


async def test_nested_savepoint_recovers_from_database_error(db: Database) -> None:
    # Even on PostgreSQL, which aborts a whole transaction at an error, rolling back
    # to the savepoint lets the outer transaction go on.
    async with db.transaction():
        await add_note(db, "before")
        with pytest.raises(ProgrammingError):
            async with db.transaction():
                await add_note(db, "inside")
                await db.execute("SELECT * FROM dbaccess_no_such_table")
        await add_note(db, "after")
    assert await texts(db) == ["before", "after"]


# -- on an explicit connection -------------------------------------------------------------


async def test_connection_transaction(db: Database) -> None:
    async with db.connection() as conn:
        async with conn.transaction():
            await conn.execute(notes.insert(), {"text": "kept", "completed": True})
        async with conn.transaction() as tx:
            await add_note(conn, "gone")
            # db.* inside the block runs on the same connection and transaction
            assert await texts(db) == ["kept", "gone"]
            async with db.transaction():  # a savepoint of conn's transaction
                await add_note(db, "nested")
            await tx.rollback()
        assert await texts(conn) == ["kept"]
    assert await texts(db) == ["kept"]
    assert db.pool_stats.in_use == 0


# -- misuse ---------------------------------------------------------------------------------


async def test_commit_twice(db: Database) -> None:
    tx = await db.transaction()
    await tx.commit()
    with pytest.raises(InterfaceError, match=r"cannot commit .*already committed"):
        await tx.commit()


async def test_rollback_after_commit(db: Database) -> None:
    async with db.transaction() as tx:
        await add_note(db, "kept")
    with pytest.raises(InterfaceError, match=r"cannot roll back .*already committed"):
        await tx.rollback()
    assert await texts(db) == ["kept"]


async def test_commit_after_rollback(db: Database) -> None:
    tx = await db.transaction()
    await tx.rollback()
    with pytest.raises(InterfaceError, match=r"cannot commit .*already rolled back"):
        await tx.commit()


async def test_start_twice(db: Database) -> None:
    tx = await db.transaction()
    try:
        with pytest.raises(InterfaceError, match=r"cannot start .*active"):
            await tx.start()
    finally:
        await tx.rollback()
    with pytest.raises(InterfaceError, match=r"cannot start .*rolled back"):
        await tx.start()
    assert db.pool_stats.in_use == 0


async def test_end_outer_while_nested_is_active(db: Database) -> None:
    outer = await db.transaction()
    await add_note(db, "outer")
    inner = await db.transaction()
    await add_note(db, "inner")
    with pytest.raises(InterfaceError, match=r"cannot commit .*nested .*still active"):
        await outer.commit()
    with pytest.raises(InterfaceError, match=r"cannot roll back .*nested .*still active"):
        await outer.rollback()
    assert state(outer) is TransactionState.ACTIVE
    assert state(inner) is TransactionState.ACTIVE
    await inner.commit()
    await outer.commit()
    assert await texts(db) == ["outer", "inner"]
    assert db.pool_stats.in_use == 0


async def test_unknown_transaction_option(db: Database) -> None:
    with pytest.raises(InterfaceError, match="isolation_level"):
        db.transaction(isolation_level="serializable")


# -- options: isolation, readonly, deferrable -----------------------------------------------


@pytest.mark.parametrize(
    ("isolation", "expected"),
    [
        ("serializable", "serializable"),
        ("repeatable_read", "repeatable read"),
        ("read committed", "read committed"),
        ("READ-UNCOMMITTED", "read uncommitted"),
    ],
)
async def test_isolation_is_set_on_postgresql(
    db: Database, dialect: str, isolation: str, expected: str
) -> None:
    async with db.transaction(isolation=isolation):
        await add_note(db, "kept")
        if dialect == "postgresql":
            setting = await db.fetch_val("SELECT current_setting('transaction_isolation')")
            assert setting == expected
        # MariaDB 10.11 reports only the session default in @@tx_isolation (not the
        # level SET TRANSACTION gave this one transaction), and SQLite is always
        # serializable: their levels are checked by behaviour in the tests below.
    assert await texts(db) == ["kept"]
    if dialect == "postgresql":  # the level was for that transaction only
        async with db.transaction():
            setting = await db.fetch_val("SELECT current_setting('transaction_isolation')")
            assert setting == "read committed"


@pytest.mark.parametrize(
    ("isolation", "sees_concurrent_commit"),
    [("read committed", True), ("repeatable read", False), ("REPEATABLE_READ", False)],
)
async def test_isolation_snapshot_behaviour(
    db: Database, dialect: str, isolation: str, sees_concurrent_commit: bool
) -> None:
    if dialect == "sqlite":
        # Every SQLite transaction is serializable, and dbaccess begins it IMMEDIATE:
        # a concurrent writer would wait for it, so there is no concurrent commit.
        pytest.skip("SQLite transactions are always serializable")
    await add_note(db, "committed before")
    outside = contextvars.copy_context()
    async with db.transaction(isolation=isolation):
        assert await texts(db) == ["committed before"]  # takes the snapshot
        await run_outside(outside, add_note(db, "committed during"))
        seen = await texts(db)
    expected = ["committed before"] + (["committed during"] if sees_concurrent_commit else [])
    assert seen == expected

    # The level was for that transaction only: the next one has the server's default,
    # read committed on PostgreSQL, repeatable read on MySQL/MariaDB.
    async with db.transaction():
        before = await texts(db)
        await run_outside(outside, add_note(db, "committed later"))
        after = await texts(db)
    assert len(after) == len(before) + (1 if dialect == "postgresql" else 0)


async def test_serializable_on_mysql_locks_what_it_reads(db: Database, dialect: str) -> None:
    if dialect != "mysql":
        pytest.skip("InnoDB-specific: serializable turns plain reads into locking reads")
    await add_note(db, "row")
    outside = contextvars.copy_context()
    lock_it = "SELECT text FROM dbaccess_notes FOR UPDATE NOWAIT"
    async with db.transaction(isolation="repeatable read"):
        await texts(db)
        assert len(await run_outside(outside, db.fetch_all(lock_it))) == 1
    async with db.transaction(isolation="serializable"):
        await texts(db)
        with pytest.raises(OperationalError):
            await run_outside(outside, db.fetch_all(lock_it))


async def test_unknown_isolation_level(db: Database) -> None:
    with pytest.raises(InterfaceError, match="unknown isolation level 'snapshot'"):
        db.transaction(isolation="snapshot")
    with pytest.raises(InterfaceError, match="unknown isolation level"):
        async with db.transaction(isolation="chaos"):
            pass  # pragma: no cover
    assert db.pool_stats.in_use == 0


async def test_deferrable(db: Database, dialect: str) -> None:
    if dialect != "postgresql":
        # Deferrable transactions exist on PostgreSQL only.
        with pytest.raises(NotSupportedError, match="deferrable"):
            db.transaction(deferrable=True)
        with pytest.raises(NotSupportedError, match="deferrable"):
            db.transaction(isolation="serializable", readonly=True, deferrable=False)
        return
    async with db.transaction(isolation="serializable", readonly=True, deferrable=True):
        assert await db.fetch_val("SELECT current_setting('transaction_deferrable')") == "on"
        assert await db.fetch_val("SELECT current_setting('transaction_read_only')") == "on"


async def test_options_on_a_nested_transaction(db: Database) -> None:
    async with db.transaction():
        await add_note(db, "outer")
        for options in ({"isolation": "serializable"}, {"readonly": True}):
            with pytest.raises(InterfaceError, match="nested transaction"):
                async with db.transaction(**options):
                    pass  # pragma: no cover
        await add_note(db, "outer still works")
    assert await texts(db) == ["outer", "outer still works"]
    assert db.pool_stats.in_use == 0


async def test_readonly_refuses_writes(db: Database) -> None:
    await add_note(db, "existing")
    # PostgreSQL's SQLSTATE 25006, MySQL's error 1792 and SQLite's "attempt to write a
    # readonly database": the same class everywhere.
    with pytest.raises(OperationalError):
        async with db.transaction(readonly=True):
            assert await texts(db) == ["existing"]  # reading is fine
            await add_note(db, "refused")
    assert await texts(db) == ["existing"]

    with pytest.raises(DatabaseError):
        async with db.transaction(readonly=True):
            await db.execute(notes.update().values(completed=True))
    with pytest.raises(DatabaseError):
        async with db.transaction(readonly=True):
            await db.execute(notes.delete())

    # The next (pooled, same) connection writes again.
    await add_note(db, "after")
    async with db.transaction():
        await add_note(db, "after in a transaction")
    assert await texts(db) == ["existing", "after", "after in a transaction"]


# -- Database(force_rollback=True) ----------------------------------------------------------


@pytest.fixture
async def durable_url(db: Database, dialect: str, database_url: str, tmp_path: Path) -> str:
    """A URL whose data outlives a Database: a file for SQLite (memory databases
    vanish at disconnect), else the server database that ``db`` set up."""
    if dialect != "sqlite":
        return database_url
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    async with Database(url) as setup:
        await create_tables(setup)
    return url


async def test_database_force_rollback(durable_url: str) -> None:
    async with Database(durable_url) as normal:
        await add_note(normal, "before")

    rolled = Database(durable_url, force_rollback=True)
    await rolled.connect()
    try:
        await add_note(rolled, "plain")
        async with rolled.transaction():
            await add_note(rolled, "committed savepoint")
            async with rolled.transaction() as inner:
                await add_note(rolled, "rolled back savepoint")
                await inner.rollback()
        tx = await rolled.transaction()
        await add_note(rolled, "manual")
        await tx.commit()
        await asyncio.gather(*(add_note(rolled, f"task {n}") for n in range(3)))
        async with rolled.connection() as conn:
            await add_note(conn, "connection")
        seen = await texts(rolled)
        assert seen[:4] == ["before", "plain", "committed savepoint", "manual"]
        assert sorted(seen[4:7]) == ["task 0", "task 1", "task 2"]
        assert seen[7:] == ["connection"]
    finally:
        await rolled.disconnect()

    async with Database(durable_url) as normal:
        assert await texts(normal) == ["before"]

    # Connecting the same object again starts a new rolled-back session.
    async with rolled:
        await add_note(rolled, "second session")
        assert await texts(rolled) == ["before", "second session"]
    async with Database(durable_url) as normal:
        assert await texts(normal) == ["before"]


# -- errors and locks -------------------------------------------------------------------------


@pytest.fixture
async def deferred_tables(db: Database, dialect: str) -> AsyncIterator[None]:
    """A parent and a child table whose foreign key is checked at COMMIT."""
    if dialect == "mysql":
        # MySQL has no deferred constraints: its COMMIT does not fail this way. The
        # next test covers an error raised inside the transaction instead.
        pytest.skip("MySQL has no deferred constraints")
    await db.execute("DROP TABLE IF EXISTS dbaccess_child")
    await db.execute("DROP TABLE IF EXISTS dbaccess_parent")
    await db.execute("CREATE TABLE dbaccess_parent (id INTEGER PRIMARY KEY)")
    await db.execute(
        "CREATE TABLE dbaccess_child (id INTEGER PRIMARY KEY, parent_id INTEGER "
        "REFERENCES dbaccess_parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    try:
        yield
    finally:
        await db.execute("DROP TABLE IF EXISTS dbaccess_child")
        await db.execute("DROP TABLE IF EXISTS dbaccess_parent")


@pytest.mark.usefixtures("deferred_tables")
async def test_failed_commit_leaves_no_lock(db: Database) -> None:
    proceed = asyncio.Event()

    async def other() -> None:  # started outside the block: a connection of its own
        await proceed.wait()
        async with db.transaction():
            await db.execute("INSERT INTO dbaccess_parent VALUES (1)")
            await db.execute("INSERT INTO dbaccess_child VALUES (1, 1)")

    other_task = asyncio.create_task(other())
    async with db.connection() as conn:
        tx = await conn.transaction()
        await conn.execute("INSERT INTO dbaccess_child VALUES (1, 999)")  # no parent 999
        with pytest.raises(IntegrityError):
            await tx.commit()
        assert state(tx) is TransactionState.FAILED
        proceed.set()
        # Had the failed transaction kept its locks, this would wait: on SQLite for the
        # busy timeout and then fail, on PostgreSQL for the conflicting row's key.
        await asyncio.wait_for(other_task, 10)
        rows = await conn.fetch_all("SELECT id, parent_id FROM dbaccess_child")
        assert [tuple(row.values()) for row in rows] == [(1, 1)]
        async with conn.transaction():  # this connection is clean too
            await conn.execute("INSERT INTO dbaccess_child VALUES (2, 1)")
    assert await db.fetch_val("SELECT COUNT(*) FROM dbaccess_child") == 2
    assert db.pool_stats.in_use == 0

    # The same through `async with`: the failed COMMIT raises out of the block.
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await db.execute("INSERT INTO dbaccess_child VALUES (3, 999)")
    assert state(tx) is TransactionState.FAILED
    async with db.transaction():
        await db.execute("INSERT INTO dbaccess_child VALUES (3, 1)")
    assert await db.fetch_val("SELECT COUNT(*) FROM dbaccess_child") == 3
    assert db.pool_stats.in_use == 0


async def test_integrity_error_inside_transaction_leaves_no_lock(db: Database) -> None:
    await db.execute(users.insert(), {"name": "taken"})
    proceed = asyncio.Event()

    async def other() -> None:  # started outside the block: a connection of its own
        await proceed.wait()
        async with db.transaction():
            await db.execute(users.insert(), {"name": "fresh"})

    other_task = asyncio.create_task(other())
    async with db.connection() as conn:
        with pytest.raises(IntegrityError):
            async with conn.transaction():
                await conn.execute(users.insert(), {"name": "fresh"})  # locks "fresh"
                await conn.execute(users.insert(), {"name": "taken"})
        proceed.set()
        # Had the transaction not been rolled back, inserting "fresh" again would wait.
        await asyncio.wait_for(other_task, 10)
        names = await conn.fetch_all(sa.select(users.c.name).order_by(users.c.name))
        assert [row["name"] for row in names] == ["fresh", "taken"]


async def test_rollback_after_error_and_reuse(db: Database, dialect: str) -> None:
    async with db.connection() as conn:
        raw = conn.raw_connection
        tx = await conn.transaction()
        await add_note(conn, "gone")
        with pytest.raises(ProgrammingError):
            await conn.execute("SELECT * FROM dbaccess_no_such_table")
        if dialect == "postgresql":
            # PostgreSQL refuses every statement of a transaction after an error
            # until it is rolled back (SQLSTATE 25P02, an InternalError).
            with pytest.raises(InternalError):
                await conn.fetch_val("SELECT 1")
        await tx.rollback()
        assert state(tx) is TransactionState.ROLLED_BACK
        assert await conn.fetch_val("SELECT 1") == 1
        async with conn.transaction():
            await add_note(conn, "kept")
        assert conn.raw_connection is raw  # the same driver connection throughout
    assert await texts(db) == ["kept"]


async def test_commit_after_a_caught_error(db: Database, dialect: str) -> None:
    async def run() -> None:
        async with db.transaction():
            await add_note(db, "first")
            with contextlib.suppress(ProgrammingError):
                await db.execute("SELECT * FROM dbaccess_no_such_table")

    if dialect == "postgresql":
        # PostgreSQL aborted the transaction at the error: COMMIT would roll it back,
        # and dbaccess says so instead of pretending it committed.
        with pytest.raises(InternalError, match="cannot commit"):
            await run()
        assert await texts(db) == []
    else:
        # MySQL and SQLite undo only the failed statement.
        await run()
        assert await texts(db) == ["first"]
    assert db.pool_stats.in_use == 0
    await add_note(db, "afterwards")
    assert (await texts(db))[-1] == "afterwards"


async def test_transaction_state_repr(db: Database) -> None:
    tx: Any = db.transaction()
    assert "not started" in repr(tx)
    async with tx:
        assert "transaction active" in repr(tx)
        async with db.transaction() as inner:
            assert "savepoint active" in repr(inner)
    assert "already committed" in repr(tx)
