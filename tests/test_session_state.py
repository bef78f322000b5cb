"""Pooled connections carry no session state to their next user.

A statement that changes the session (a setting, a temporary table, a session lock, a
listener, a user variable, a pragma) is recognised when it is compiled; the connection
that ran it is reset before it goes back to the pool (PostgreSQL) or replaced (MySQL,
SQLite). Connections that ran nothing of the kind go back as they are, with no round
trip. Each test uses a pool of one connection, so the next call gets the same slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.schema import CreateTable, DropTable

from dbaccess import Database

from .conftest import notes, released

BACKEND_ID = {
    "postgresql": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
    "sqlite": None,
}

#: (statement that changes the session, query that shows it, value it shows when clean)
SESSION_CHANGES: dict[str, list[tuple[str, str, Any]]] = {
    "postgresql": [
        ("SET statement_timeout = 4321", "SHOW statement_timeout", "0"),
        ("SET search_path TO pg_catalog", "SHOW search_path", '"$user", public'),
        (
            "CREATE TEMPORARY TABLE dbaccess_temp (a int)",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'dbaccess_temp'",
            0,
        ),
        ("LISTEN dbaccess_channel", "SELECT count(*) FROM pg_listening_channels()", 0),
        (
            "SELECT pg_advisory_lock(4242)",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            0,
        ),
        (
            "SELECT set_config('application_name', 'dirty', false)",
            "SHOW application_name",
            "",
        ),
    ],
    "mysql": [
        ("SET @dbaccess_var = 5", "SELECT @dbaccess_var", None),
        ("SET SESSION sql_mode = 'ANSI_QUOTES'", "SELECT @@SESSION.sql_mode LIKE 'ANSI%'", 0),
        # (MariaDB lists no temporary tables: creating it again fails if it is there.)
        (
            "CREATE TEMPORARY TABLE dbaccess_temp (a int)",
            "CREATE TEMPORARY TABLE dbaccess_temp (a int)",
            None,
        ),
        ("SELECT GET_LOCK('dbaccess_lock', 0)", "SELECT IS_USED_LOCK('dbaccess_lock')", None),
        ("SELECT @dbaccess_other := 7", "SELECT @dbaccess_other", None),
    ],
    "sqlite": [
        ("PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys", 1),
        (
            "CREATE TEMP TABLE dbaccess_temp (a int)",
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'dbaccess_temp'",
            0,
        ),
    ],
}


@pytest.fixture
async def single(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url, min_size=1, max_size=1) as db:
        yield db


@pytest.mark.parametrize("case", range(max(len(c) for c in SESSION_CHANGES.values())))
async def test_session_change_does_not_reach_the_next_user(
    single: Database, dialect: str, case: int
) -> None:
    cases = SESSION_CHANGES[dialect]
    if case >= len(cases):
        pytest.skip(f"{dialect} has {len(cases)} cases")
    change, probe, clean = cases[case]
    if dialect == "postgresql" and "application_name" in probe:
        clean = await single.fetch_val(probe)  # whatever the connection started with
    await single.execute(change)  # a call of its own, on the pool's one connection
    assert await single.fetch_val(probe) == clean
    assert single.pool_stats.in_use == 0


async def test_session_change_holds_for_the_block_that_made_it(
    single: Database, dialect: str
) -> None:
    change, probe, clean = SESSION_CHANGES[dialect][0]
    async with single.connection() as conn:
        await conn.execute(change)
        changed = await conn.fetch_val(probe)
        assert changed != clean
        assert await conn.fetch_val(probe) == changed  # the block keeps its own session
    assert await single.fetch_val(probe) == clean


#: (take a session lock, take it without waiting: 1 or True if it was free, release it)
SESSION_LOCKS = {
    "postgresql": (
        "SELECT pg_advisory_lock(4343)",
        "SELECT pg_try_advisory_lock(4343)",
        "SELECT pg_advisory_unlock(4343)",
    ),
    "mysql": (
        "SELECT GET_LOCK('dbaccess_free', 0)",
        "SELECT GET_LOCK('dbaccess_free', 0)",
        "DO RELEASE_LOCK('dbaccess_free')",
    ),
}


async def test_a_session_lock_is_free_for_others_once_the_call_returns(
    single: Database, database_url: str, dialect: str, one_session: None
) -> None:
    """The connection that took the lock is reset or replaced: another session can take
    the lock at once, not only when the server has noticed the old connection closed.
    (Behind PgBouncer in transaction mode a session lock has no session to belong to.)"""
    if dialect not in SESSION_LOCKS:
        pytest.skip("SQLite has no session locks")
    take, try_take, release = SESSION_LOCKS[dialect]
    async with Database(database_url, min_size=1, max_size=1) as other:
        for _ in range(20):  # the server's clean-up of a closed connection races the next call
            await single.execute(take)
            async with other.connection() as conn:
                assert await conn.fetch_val(try_take) in (1, True)
                await conn.execute(release)


async def test_plain_statements_keep_the_connection(single: Database, dialect: str) -> None:
    """No reset, and no new connection, after statements that leave the session alone."""
    probe = BACKEND_ID[dialect]
    if probe is None:
        pytest.skip("SQLite connections have no server id")
    first = await single.fetch_val(probe)
    await single.fetch_all("SELECT 1 AS a, 'SET x' AS b")  # SET inside a string: no reset
    async with single.transaction():
        await single.fetch_val("SELECT 1")
    assert await single.fetch_val(probe) == first


async def test_iterate_in_a_connection_block_uses_its_connection(
    database_url: str, dialect: str
) -> None:
    """With one connection in the pool, iterate() inside a connection() block streams
    on the block's connection (it would wait for a second one forever), sees the
    block's session, and the loop's own statements run between chunks."""
    async with Database(database_url, min_size=1, max_size=1, acquire_timeout=5) as db:
        await db.execute(DropTable(notes, if_exists=True))
        await db.execute(CreateTable(notes))
        try:
            await db.execute_many(
                notes.insert(), [{"text": f"n{i}", "completed": False} for i in range(2500)]
            )
            async with db.connection() as conn:
                temp = "CREATE TEMPORARY TABLE dbaccess_seen (text varchar(20))"
                await conn.execute(temp)
                seen = 0
                async for row in conn.iterate("SELECT text FROM dbaccess_notes ORDER BY id"):
                    seen += 1
                    if seen % 500 == 0:  # a statement in the loop's body, between chunks
                        await conn.execute(
                            "INSERT INTO dbaccess_seen (text) VALUES (:t)", {"t": row.text}
                        )
                assert seen == 2500
                # Leaving a loop early closes the stream; the block goes on.
                async for _ in conn.iterate("SELECT text FROM dbaccess_seen"):
                    break
                assert await conn.fetch_val("SELECT count(*) FROM dbaccess_seen") == 5
            assert await released(db)  # the abandoned loop's clean-up runs in a task
            # The temporary table went with the block's session.
            async with db.connection() as conn:
                await conn.execute(temp)
        finally:
            await db.execute(DropTable(notes, if_exists=True))


async def test_iterate_in_a_connection_block_commits_the_loops_writes(
    database_url: str, dialect: str
) -> None:
    """Outside a transaction, what the loop's body writes is committed as it goes,
    even when the loop is left early."""
    async with Database(database_url, min_size=1, max_size=2) as db:
        await db.execute(DropTable(notes, if_exists=True))
        await db.execute(CreateTable(notes))
        try:
            await db.execute_many(
                notes.insert(), [{"text": f"n{i}", "completed": False} for i in range(1500)]
            )
            async with db.connection() as conn:
                async for row in conn.iterate("SELECT id FROM dbaccess_notes ORDER BY id"):
                    if row.id % 2:
                        await conn.execute(
                            "UPDATE dbaccess_notes SET completed = :c WHERE id = :id",
                            {"c": True, "id": row.id},
                        )
                    if row.id == 1200:
                        break
            # Another connection sees the writes: they were committed.
            done = await db.fetch_val(
                "SELECT count(*) FROM dbaccess_notes WHERE completed = :c", {"c": True}
            )
            assert done == 600
        finally:
            await db.execute(DropTable(notes, if_exists=True))
