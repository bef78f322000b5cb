"""Statement logs on the ``dbaccess`` logger: DEBUG per statement, WARNING when slow."""

from __future__ import annotations

import logging
import re

import pytest

from dbaccess import ConfigurationError, Database, DatabaseURL, DBAccessError, QueryEvent

from .conftest import notes, system_name

SECRET_VALUE = "value-that-must-not-be-logged"


def statement_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(("statement", "slow"))]


async def test_each_statement_is_logged_at_debug_without_values(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    await db.execute(notes.insert(), {"text": SECRET_VALUE, "completed": False})
    await db.fetch_all(notes.select())
    insert, select = statement_records(caplog)[-2:]
    backend = await system_name(db)
    assert insert.levelno == select.levelno == logging.DEBUG
    assert insert.getMessage().startswith(f"statement on {backend} took ")
    # (With RETURNING, as on PostgreSQL where Core asks for the new id, it returned a row.)
    assert re.search(
        r" ms, 1 row (affected|returned): INSERT INTO dbaccess_notes", insert.getMessage()
    )
    assert " ms, 1 row returned: SELECT " in select.getMessage()
    assert SECRET_VALUE not in caplog.text
    # The structured event for handlers that format their own lines has no values either.
    event: QueryEvent = insert.query  # type: ignore[attr-defined]
    assert event.parameters == ()
    assert event.duration is not None and event.rowcount == 1


async def test_values_are_logged_when_switched_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    async with Database(database_url, log_parameters=True) as database:
        await database.fetch_val("SELECT :value", {"value": SECRET_VALUE})
    (record,) = statement_records(caplog)
    assert record.getMessage().endswith(f"parameters: ('{SECRET_VALUE}',)")
    assert record.query.parameters == (SECRET_VALUE,)  # type: ignore[attr-defined]


async def test_long_values_are_cut_in_the_log(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    async with Database(database_url, log_parameters=True) as database:
        await database.fetch_val("SELECT :value", {"value": "x" * 10_000})
    (record,) = statement_records(caplog)
    assert "..." in record.getMessage()
    assert len(record.getMessage()) < 1000


async def test_failed_statements_are_logged_with_their_error_class(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    with pytest.raises(DBAccessError):
        await database.execute("SELECT * FROM dbaccess_no_such_table")
    (record,) = statement_records(caplog)
    assert " failed after " in record.getMessage()
    assert "ProgrammingError: SELECT * FROM dbaccess_no_such_table" in record.getMessage()


async def test_slow_statements_are_logged_at_warning(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dbaccess")
    # Every statement takes longer than a nanosecond, and none takes an hour.
    async with Database(database_url, slow_statement_threshold=1e-9) as slow:
        await slow.fetch_val("SELECT :value", {"value": SECRET_VALUE})
        async for _ in slow.iterate("SELECT 2"):
            pass
    async with Database(database_url, slow_statement_threshold=3600) as fast:
        await fast.fetch_val("SELECT 3")
    records = statement_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert records[0].getMessage().startswith("slow statement on ")
    assert "(slow_statement_threshold is 1e-09 s)" in records[0].getMessage()
    assert "SELECT 2" in records[1].getMessage()
    assert SECRET_VALUE not in caplog.text


async def test_nothing_is_logged_below_debug(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dbaccess")
    assert not database._engine.observer.watching()  # the one check every statement pays
    await database.fetch_val("SELECT 1")
    async with database.transaction():
        await database.fetch_val("SELECT 1")
    assert statement_records(caplog) == []
    assert not [r for r in caplog.records if r.levelno < logging.INFO]


async def test_transactions_and_connections_are_logged_at_debug(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    async with Database(database_url) as database:
        async with database.transaction(), database.transaction():
            await database.fetch_val("SELECT 1")
        with pytest.raises(RuntimeError):
            async with database.transaction():
                raise RuntimeError("roll back")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("opened a connection to ") for m in messages)
    assert any(m.startswith("transaction began on ") for m in messages)
    assert any(m.startswith("savepoint on ") and " released after " in m for m in messages)
    assert any(m.startswith("transaction on ") and " committed after " in m for m in messages)
    assert any(" rolled back after " in m for m in messages)


async def test_no_log_line_holds_the_password(
    database_url: str, secret_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        pytest.skip("SQLite URLs have no password")
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    # PostgreSQL here trusts any password; MariaDB refuses it: both paths are logged.
    database = Database(url.replace(password=secret_password), log_parameters=True)
    try:
        async with database:
            await database.fetch_val("SELECT 1")
    except DBAccessError as exc:
        assert secret_password not in str(exc)
    assert caplog.records
    assert secret_password not in caplog.text


@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_a_bad_threshold_is_refused(database_url: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match="option slow_statement_threshold="):
        Database(database_url, slow_statement_threshold=value)  # type: ignore[arg-type]


def test_a_bad_log_parameters_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="option log_parameters='maybe'"):
        Database(database_url, log_parameters="maybe")  # type: ignore[arg-type]
