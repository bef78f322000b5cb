"""Transactions the server rolled back, and bulk writes that failed half-way: nothing is
ever committed outside the transaction the application opened.

A deadlock victim (MySQL/MariaDB 1213, PostgreSQL 40P01) and a SQLite write interrupted
by command_timeout lose their whole transaction on the server. dbaccess notices: every
later statement in the block raises an error naming the original one, rollback()
succeeds, commit() raises, and ``async with`` re-raises the original error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbaccess import (
    Database,
    DatabaseError,
    IntegrityError,
    OperationalError,
    TransactionState,
)

from .conftest import accounts, notes

#: A write that never ends by itself (SQLite), for command_timeout to interrupt.
ENDLESS_INSERT = (
    "INSERT INTO dbaccess_notes (text, completed) "
    "SELECT 'endless', 0 FROM (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL "
    "SELECT n + 1 FROM s) SELECT n FROM s)"
)

LONG_STATEMENTS = {
    "postgresql": "SELECT pg_sleep(10)",
    "mysql": "SELECT SLEEP(10)",
    "sqlite": ENDLESS_INSERT,
}


async def balances(db: Database) -> dict[int, int]:
    rows = await db.fetch_all(sa.select(accounts).order_by(accounts.c.id))
    return {row.id: row.balance for row in rows}


async def note_texts(db: Database) -> list[str]:
    rows = await db.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row.text for row in rows]


async def deadlock(
    db: Database, victim_body: Callable[[BaseException], Awaitable[None]]
) -> list[BaseException | None]:
    """Two sibling transactions lock rows 1 and 2 in opposite orders; the server picks
    a victim, which runs ``victim_body(error)`` inside its block. Returns, per task,
    what its block raised (None for the winner)."""
    first_locks_taken = 0
    both_locked = asyncio.Event()

    async def transfer(first: int, second: int) -> None:
        nonlocal first_locks_taken
        async with db.transaction():
            await db.execute(
                accounts.update().where(accounts.c.id == first), {"balance": first * 100}
            )
            first_locks_taken += 1
            if first_locks_taken == 2:
                both_locked.set()
            await both_locked.wait()
            try:
                await db.execute(
                    accounts.update().where(accounts.c.id == second), {"balance": first * 1000}
                )
            except OperationalError as exc:  # the deadlock victim
                assert "eadlock" in str(exc)
                await victim_body(exc)

    return list(await asyncio.gather(transfer(1, 2), transfer(2, 1), return_exceptions=True))


@pytest.fixture
async def two_accounts(db: Database, dialect: str) -> Database:
    if dialect == "sqlite":
        pytest.skip("SQLite has a single writer: transactions cannot deadlock")
    await db.execute_many(accounts.insert(), [{"id": 1, "balance": 0}, {"id": 2, "balance": 0}])
    return db


async def test_deadlock_victim_cannot_commit_anything(two_accounts: Database) -> None:
    db = two_accounts

    async def carry_on(error: BaseException) -> None:
        # What an application that swallowed the error would run next in its block.
        with pytest.raises(DatabaseError) as later:
            await db.execute(accounts.insert(), {"id": 99, "balance": -1})
        assert "eadlock" in str(later.value) or "aborted" in str(later.value)

    outcomes = await deadlock(db, carry_on)
    # The victim's block left normally: its COMMIT is refused, naming the deadlock.
    failures = [o for o in outcomes if o is not None]
    assert len(failures) == 1
    assert isinstance(failures[0], DatabaseError)
    assert "cannot commit" in str(failures[0])
    final = await balances(db)
    assert 99 not in final  # the statement after the deadlock was never committed
    # Only the winner's two updates are there.
    assert final in ({1: 100, 2: 1000}, {1: 2000, 2: 200})
    assert db.pool_stats.in_use == 0


async def test_deadlock_victim_rolls_back_cleanly(two_accounts: Database) -> None:
    db = two_accounts

    async def leave(error: BaseException) -> None:
        raise error  # what `async with` sees when the application lets it through

    outcomes = await deadlock(db, leave)
    failures = [o for o in outcomes if o is not None]
    # async with re-raised the deadlock itself, not an error of the rollback.
    assert len(failures) == 1 and isinstance(failures[0], OperationalError)
    assert "eadlock" in str(failures[0])
    assert 99 not in await balances(db)
    assert await db.fetch_val("SELECT 1") == 1


async def test_interrupted_statement_in_a_transaction_propagates(
    database_url: str, dialect: str, tmp_path: Path
) -> None:
    """The statement interrupted by command_timeout is the error the block raises, and
    the block's earlier work is rolled back (on SQLite the server already did: the
    ROLLBACK dbaccess would send must not replace the error)."""
    url = f"sqlite:///{tmp_path / 'aborts.db'}" if dialect == "sqlite" else database_url
    async with Database(url, command_timeout=0.3) as db:
        await db.execute(sa.schema.DropTable(notes, if_exists=True))
        await db.execute(sa.schema.CreateTable(notes))
        try:
            with pytest.raises(OperationalError) as info:
                async with db.transaction():
                    await db.execute(notes.insert(), {"text": "before", "completed": False})
                    await db.execute(LONG_STATEMENTS[dialect])
            assert "time" in str(info.value).lower() or "interrupt" in str(info.value).lower()
            assert await note_texts(db) == []
            assert db.pool_stats.in_use == 0
        finally:
            await db.execute(sa.schema.DropTable(notes, if_exists=True))


async def test_sqlite_write_interrupted_in_a_transaction(dialect: str, tmp_path: Path) -> None:
    """SQLite rolls the whole transaction back when command_timeout interrupts a write:
    later statements in the block would otherwise run (and commit) on their own."""
    if dialect != "sqlite":
        pytest.skip("SQLite's rollback of the whole transaction on SQLITE_INTERRUPT")
    async with Database(f"sqlite:///{tmp_path / 'interrupt.db'}", command_timeout=0.3) as db:
        await db.execute(sa.schema.CreateTable(notes))
        transaction = await db.transaction()
        await db.execute(notes.insert(), {"text": "before", "completed": False})
        with pytest.raises(OperationalError, match="interrupt"):
            await db.execute(ENDLESS_INSERT)
        with pytest.raises(OperationalError, match=r"no longer holds the transaction.*interrupt"):
            await db.execute(notes.insert(), {"text": "after", "completed": False})
        await transaction.rollback()  # succeeds: nothing left to undo
        assert transaction.state is TransactionState.ROLLED_BACK
        assert await note_texts(db) == []

        # The same, leaving the block normally after swallowing the error: no commit.
        with pytest.raises(OperationalError, match="cannot commit"):
            async with db.transaction():
                await db.execute(notes.insert(), {"text": "before", "completed": False})
                with contextlib.suppress(OperationalError):
                    await db.execute(ENDLESS_INSERT)
        assert await note_texts(db) == []
        # And the connection is fine afterwards.
        async with db.transaction():
            await db.execute(notes.insert(), {"text": "later", "completed": False})
        assert await note_texts(db) == ["later"]


# -- execute_many: all rows or none, inside a transaction too ------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["transaction", "savepoint"])
async def test_execute_many_in_a_transaction_is_all_or_nothing(db: Database, nested: bool) -> None:
    await db.execute(accounts.insert(), {"id": 510, "balance": 0})  # row 510 will clash
    rows = [{"id": n, "balance": n} for n in range(1, 1001)]
    async with db.transaction():
        await db.execute(notes.insert(), {"text": "kept", "completed": False})
        async with db.transaction() if nested else contextlib.nullcontext():
            with pytest.raises(IntegrityError):
                await db.execute_many(accounts.insert(), rows)
            # The caller caught the error and goes on: the transaction is usable, and
            # none of the 509 rows before the clash is in it.
            assert await db.fetch_val(sa.select(sa.func.count()).select_from(accounts)) == 1
            await db.execute(notes.insert(), {"text": "also kept", "completed": False})
    assert await balances(db) == {510: 0}
    assert await note_texts(db) == ["kept", "also kept"]


async def test_execute_many_in_a_transaction_succeeds_whole(db: Database) -> None:
    async with db.transaction():
        await db.execute_many(accounts.insert(), [{"id": n, "balance": n} for n in range(1, 11)])
        assert len(await balances(db)) == 10
    assert sum((await balances(db)).values()) == 55
