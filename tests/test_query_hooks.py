"""Query hooks: sync or async callables told of each statement before and after it runs."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from dbaccess import Database, IntegrityError, InterfaceError, QueryEvent, QueryHook

from .conftest import notes, system_name


async def test_hooks_see_each_statement_before_and_after(db: Database) -> None:
    before: list[QueryEvent] = []
    after: list[QueryEvent] = []
    with db.add_query_hook(before=before.append, after=after.append):
        await db.execute(notes.insert(), {"text": "hooked-value", "completed": False})
        rows = await db.fetch_all(notes.select())
    assert len(rows) == 1
    assert [event.sql for event in before] == [event.sql for event in after]
    insert, select = after
    assert "INSERT INTO dbaccess_notes" in insert.sql
    assert "hooked-value" in insert.parameters
    assert insert.rowcount == 1
    assert select.rowcount == 1
    for event in before:
        assert (event.duration, event.rowcount, event.error) == (None, None, None)
    for event in after:
        assert event.duration is not None and event.duration >= 0
        assert event.error is None
        assert event.backend == await system_name(db)
        assert event.url is db.url
        assert not event.many


async def test_rowcount_is_rows_affected_returned_and_streamed(db: Database) -> None:
    values = [{"text": f"note {i}", "completed": False} for i in range(3)]
    await db.execute_many(notes.insert(), values)
    seen: list[QueryEvent] = []
    with db.add_query_hook(after=seen.append):
        await db.execute(notes.update().values(completed=True))
        await db.fetch_one(notes.select())
        await db.fetch_all(notes.select().where(notes.c.text == "none"))
        streamed = [row async for row in db.iterate(notes.select())]
        await db.execute_many(notes.insert(), values)
    update, one, empty, stream, many = seen
    assert update.rowcount == 3
    assert one.rowcount == 1  # fetch_one asks for one row
    assert empty.rowcount == 0
    assert len(streamed) == 3 and stream.rowcount == 3
    assert many.many
    assert len(many.parameters) == 3
    assert many.rowcount is None  # the drivers do not report it for a batch


async def test_async_hooks_are_awaited_in_order(database: Database) -> None:
    calls: list[str] = []

    async def before(event: QueryEvent) -> None:
        calls.append(f"before {event.sql}")

    async def after(event: QueryEvent) -> None:
        calls.append(f"after {event.sql}")

    hook = database.add_query_hook(before=before, after=after)
    assert isinstance(hook, QueryHook)
    assert await database.fetch_val("SELECT 42") == 42
    assert calls == ["before SELECT 42", "after SELECT 42"]
    hook.remove()
    await database.fetch_val("SELECT 43")
    assert len(calls) == 2
    hook.remove()  # a second removal does nothing


async def test_after_hook_sees_the_error_and_the_caller_gets_it(db: Database) -> None:
    seen: list[QueryEvent] = []
    await db.execute(notes.insert(), {"id": 1, "text": "a", "completed": False})
    with db.add_query_hook(after=seen.append), pytest.raises(IntegrityError):
        await db.execute(notes.insert(), {"id": 1, "text": "b", "completed": False})
    (event,) = seen
    assert isinstance(event.error, IntegrityError)
    assert event.rowcount is None
    assert event.duration is not None


async def test_a_hook_that_raises_never_breaks_the_query(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: QueryEvent) -> None:
        raise RuntimeError("hook bug")

    async def broken_async(event: QueryEvent) -> None:
        raise ValueError("async hook bug")

    caplog.set_level(logging.ERROR, logger="dbaccess")
    with database.add_query_hook(before=broken, after=broken_async):
        assert await database.fetch_val("SELECT 7") == 7
        async with database.transaction():
            assert await database.fetch_val("SELECT 8") == 8
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 4
    assert {type(r.exc_info[1]) for r in errors if r.exc_info} == {RuntimeError, ValueError}
    assert "query hook before=" in errors[0].getMessage()


async def test_hooks_cover_connection_blocks_and_tasks(database: Database) -> None:
    seen: list[str] = []
    with database.add_query_hook(after=lambda event: seen.append(event.sql)):
        async with database.connection() as connection:
            await connection.fetch_val("SELECT 1")
            async for _ in connection.iterate("SELECT 2"):
                pass
        async with database.transaction():
            await database.execute("SELECT 3")
    assert seen == ["SELECT 1", "SELECT 2", "SELECT 3"]


async def test_bad_hooks_are_refused(database_url: str) -> None:
    database = Database(database_url)
    with pytest.raises(InterfaceError, match=r"give before=, after= or both"):
        database.add_query_hook()
    with pytest.raises(InterfaceError, match=r"after='print' is not callable"):
        database.add_query_hook(after="print")  # type: ignore[arg-type]


async def test_core_statements_are_reported_with_driver_placeholders(db: Database) -> None:
    seen: list[QueryEvent] = []
    with db.add_query_hook(after=seen.append):
        await db.fetch_all(sa.select(notes.c.id).where(notes.c.text == "secret-xyz"))
    (event,) = seen
    assert "secret-xyz" not in event.sql
    assert list(event.parameters) == ["secret-xyz"]
