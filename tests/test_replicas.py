"""Read replicas (dbaccess/replicas.py): ``Database(url, replicas=[...])``.

On every backend the "replica" is the same database reached through a node of its own
(SQLite: the same file), which proves where each call runs by the pool statistics of
each node. On PostgreSQL, a real streaming replica (tests/servers.py) proves it by
``pg_is_in_recovery()``, and lags when its replay is paused. A replica that goes away
is a server of the test's own (a fresh PostgreSQL pair, the private MariaDB) or, on
SQLite, a file whose directory is missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dbaccess import (
    ConfigurationError,
    Database,
    DatabaseURL,
    InterfaceError,
    OperationalError,
    sqlalchemy_url,
)
from dbaccess.opentelemetry import DBAccessInstrumentor
from dbaccess.replicas import is_read

from .conftest import _private
from .servers import (
    PrivateMariaDB,
    PrivateMariaDBPrimary,
    PrivateMariaDBReplica,
    PrivatePostgreSQL,
    PrivateReplica,
)

Pair = tuple[PrivatePostgreSQL, PrivateReplica]

#: The tests' bound on any wait, so that a hang fails the test instead of stalling it.
HANG = 30.0
#: The read-your-writes window of the tests that wait for its end: long enough that a
#: loaded machine does not end it between a write and the read after it.
WINDOW = 1.0

notes = sa.table("replica_notes", sa.column("id", sa.Integer), sa.column("text", sa.String))


@pytest.fixture
def primary_url(database_url: str, tmp_path: Path) -> str:
    """The test database; on SQLite a file (an in-memory database is new per connection)."""
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        return str(url.replace(database=str(tmp_path / "primary.db")))
    return database_url


async def make_table(db: Database) -> None:
    await db.execute("DROP TABLE IF EXISTS replica_notes")
    await db.execute("CREATE TABLE replica_notes (id INTEGER PRIMARY KEY, text VARCHAR(50))")


@pytest.fixture
async def routed(primary_url: str) -> AsyncIterator[Database]:
    """The test database with itself as a replica, a long read-your-writes window."""
    async with Database(primary_url, replicas=[primary_url], replica_sticky_seconds=60) as db:
        # In a task of its own: the test's context must not inherit its window.
        await asyncio.create_task(make_table(db))
        yield db
        await db.execute("DROP TABLE replica_notes")


def acquired(db: Database) -> dict[str, int]:
    """Connections lent so far, per node."""
    return {name: stats.acquired for name, stats in db.pool_stats_by_node.items()}


async def ran_on(db: Database, call: Callable[[], Awaitable[Any]]) -> set[str]:
    """The nodes that lent a connection while ``call()`` ran."""
    before = acquired(db)
    await call()  # in this task (wait_for() would run it in another, before Python 3.12)
    after = acquired(db)
    return {name for name in after if after[name] != before[name]}


async def until(condition: Callable[[], bool], poke: Callable[[], Awaitable[Any]]) -> None:
    """Call ``poke()`` (reads, which start the replicas' checks) until ``condition()``."""

    async def wait() -> None:
        while not condition():
            await poke()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), HANG)


# -- routing, on every backend -----------------------------------------------------------


async def test_plain_reads_go_to_the_replica(routed: Database) -> None:
    db = routed
    select = sa.select(notes.c.id, notes.c.text)
    reads: list[Callable[[], Awaitable[Any]]] = [
        lambda: db.fetch_all("SELECT id, text FROM replica_notes"),
        lambda: db.fetch_one(select),
        lambda: db.fetch_val(sa.text("SELECT count(*) FROM replica_notes")),
        lambda: db.fetch_all(sa.union(select, select)),
        lambda: db.fetch_all("  /* a comment */ SELECT 1 AS one"),
        lambda: aiter_all(db.iterate(select)),
        lambda: aiter_all(db.batched_iterate("SELECT id FROM replica_notes", batch_size=2)),
    ]
    for read in reads:
        assert await asyncio.create_task(ran_on(db, read)) == {"replica1"}


async def aiter_all(stream: Any) -> list[Any]:
    return [item async for item in stream]


async def test_writes_and_what_is_not_plainly_a_read_run_on_the_primary(
    routed: Database,
) -> None:
    db = routed

    async def fresh(call: Callable[[], Awaitable[Any]]) -> set[str]:
        # A task of its own: started before any write, it has no read-your-writes window.
        return await asyncio.create_task(ran_on(db, call))

    assert await fresh(lambda: db.execute(notes.insert().values(id=1, text="a"))) == {"primary"}
    assert await fresh(lambda: db.execute_result("UPDATE replica_notes SET text = 'b'")) == {
        "primary"
    }
    assert await fresh(
        lambda: db.execute_many(notes.insert(), [{"id": 2, "text": "c"}, {"id": 3, "text": "d"}])
    ) == {"primary"}
    locking = sa.select(notes.c.id).with_for_update()
    assert await fresh(lambda: db.fetch_all(locking)) == {"primary"}
    deleting = notes.delete().where(notes.c.id == 3).returning(notes.c.id)
    assert await fresh(lambda: db.fetch_all(deleting)) == {"primary"}
    assert await fresh(lambda: db.fetch_all("SELECT id FROM replica_notes")) == {"replica1"}


async def test_transactions_connection_blocks_and_force_rollback_use_the_primary(
    routed: Database, primary_url: str
) -> None:
    db = routed

    async def in_transaction() -> None:
        async with db.transaction():
            await db.fetch_all("SELECT id FROM replica_notes")
            await aiter_all(db.iterate("SELECT id FROM replica_notes"))

    async def in_connection_block() -> None:
        async with db.connection() as connection:
            await db.fetch_val("SELECT 1")
            await connection.fetch_val("SELECT 1")
            await aiter_all(db.iterate("SELECT id FROM replica_notes"))

    assert await asyncio.create_task(ran_on(db, in_transaction)) == {"primary"}
    assert await asyncio.create_task(ran_on(db, in_connection_block)) == {"primary"}
    with db.route("replica"):  # a block's connection wins over a forced target
        assert await asyncio.create_task(ran_on(db, in_transaction)) == {"primary"}
    schema = sa.MetaData()
    sa.Table("replica_schema", schema, sa.Column("id", sa.Integer, primary_key=True))
    assert await asyncio.create_task(ran_on(db, lambda: db.create_all(schema))) == {"primary"}
    assert await asyncio.create_task(ran_on(db, lambda: db.drop_all(schema))) == {"primary"}

    async with Database(primary_url, replicas=[primary_url], force_rollback=True) as rolled:
        # Its one connection, held since connect(), runs everything: no node lends one.
        assert await ran_on(rolled, lambda: rolled.fetch_val("SELECT 1")) == set()
        assert rolled.pool_stats_by_node["primary"].in_use == 1


async def test_a_task_reads_its_writes_then_the_replica_after_the_window(
    primary_url: str,
) -> None:
    async with Database(primary_url, replicas=[primary_url], replica_sticky_seconds=WINDOW) as db:
        await asyncio.create_task(make_table(db))

        async def write_then_read() -> None:
            assert await ran_on(db, lambda: db.execute(notes.insert().values(id=1, text="a"))) == {
                "primary"
            }
            read = lambda: db.fetch_val("SELECT text FROM replica_notes WHERE id = 1")  # noqa: E731
            assert await ran_on(db, read) == {"primary"}
            assert await db.fetch_val("SELECT text FROM replica_notes WHERE id = 1") == "a"
            # A task started after the write inherits the window.
            assert await asyncio.create_task(ran_on(db, read)) == {"primary"}
            await asyncio.sleep(WINDOW + 0.1)  # the window is over
            assert await ran_on(db, read) == {"replica1"}

        await asyncio.create_task(write_then_read())

        # Where it ends: a task started before the write does not see the window.
        wrote = asyncio.Event()

        async def sibling() -> set[str]:
            await wrote.wait()
            return await ran_on(db, lambda: db.fetch_val("SELECT 1"))

        async def writer() -> None:
            await db.execute("UPDATE replica_notes SET text = 'b'")
            wrote.set()

        started_before = asyncio.create_task(sibling())
        await asyncio.create_task(writer())
        assert await started_before == {"replica1"}

        # The end of a transaction block counts as a write.
        async def transaction_then_read() -> set[str]:
            async with db.transaction():
                await db.fetch_val("SELECT 1")
            return await ran_on(db, lambda: db.fetch_val("SELECT 1"))

        assert await asyncio.create_task(transaction_then_read()) == {"primary"}
        await db.execute("DROP TABLE replica_notes")


async def test_no_window_with_replica_sticky_seconds_0(primary_url: str) -> None:
    async with Database(primary_url, replicas=[primary_url], replica_sticky_seconds=0) as db:
        await db.execute("SELECT 1")  # a statement through execute() counts as a write
        assert await ran_on(db, lambda: db.fetch_val("SELECT 1")) == {"replica1"}


async def test_a_forced_target_for_a_block(routed: Database, primary_url: str) -> None:
    db = routed
    read = lambda: db.fetch_val("SELECT 1")  # noqa: E731

    async def forced() -> None:
        with db.route("primary"):
            assert await ran_on(db, read) == {"primary"}
            # Tasks started in the block inherit it.
            assert await asyncio.create_task(ran_on(db, read)) == {"primary"}
        assert await ran_on(db, read) == {"replica1"}
        await db.execute("UPDATE replica_notes SET text = 'x'")
        assert await ran_on(db, read) == {"primary"}  # read-your-writes
        with db.route("replica"):  # ...unless told otherwise
            assert await ran_on(db, read) == {"replica1"}
            # Even what is not plainly a read (EXPLAIN).
            assert await ran_on(db, lambda: db.fetch_all("EXPLAIN SELECT 1")) == {"replica1"}
            # Writes stay on the primary.
            assert await ran_on(db, lambda: db.execute("UPDATE replica_notes SET id = 1")) == {
                "primary"
            }

    await asyncio.create_task(forced())
    with pytest.raises(InterfaceError, match="route\\(\\) takes 'primary' or 'replica'"):
        db.route("standby")  # type: ignore[arg-type]
    # Without replicas, route() is accepted and changes nothing.
    async with Database(primary_url) as plain:
        with plain.route("replica"):
            assert await plain.fetch_val("SELECT 1") == 1
        assert plain.replicas == ()
        assert set(plain.pool_stats_by_node) == {"primary"}


async def test_pool_stats_per_node_and_hooks_see_replica_statements(
    routed: Database,
) -> None:
    db = routed
    assert set(db.pool_stats_by_node) == {"primary", "replica1"}
    assert db.pool_stats_by_node["primary"] == db.pool_stats
    events: list[tuple[str, DatabaseURL]] = []
    with db.add_query_hook(after=lambda event: events.append((event.sql, event.url))):
        assert await asyncio.create_task(ran_on(db, lambda: db.fetch_val("SELECT 2"))) == {
            "replica1"
        }
    assert events == [("SELECT 2", db.replicas[0].url)]
    (replica,) = db.replicas
    assert (replica.name, replica.healthy, replica.reason) == ("replica1", True, None)


# -- health, on every backend --------------------------------------------------------------


async def test_a_replica_down_at_connect_leaves_reads_on_the_primary(
    primary_url: str, tmp_path: Path, secret_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = DatabaseURL(primary_url)
    if url.dialect == "sqlite":
        down = url.replace(database=str(tmp_path / "missing" / "replica.db"))
    else:
        down = url.replace(hostname="127.0.0.1", port=1, password=secret_password)
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    db = Database(primary_url, replicas=[down], replica_check_interval=0.1, connect_timeout=5)
    assert secret_password not in repr(db)
    async with db:
        (replica,) = db.replicas
        assert not replica.healthy and replica.reason is not None
        assert secret_password not in replica.reason
        assert await ran_on(db, lambda: db.fetch_val("SELECT 1")) == {"primary"}
        assert await ran_on(db, lambda: aiter_all(db.iterate("SELECT 1"))) == {"primary"}
        assert db.pool_stats_by_node["replica1"].size == 0
    assert "out of rotation" in caplog.text
    assert secret_password not in caplog.text


async def test_a_failed_replica_leaves_rotation_and_comes_back(
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The replica stops: reads fall back to the primary without an error; it starts
    again: reads go back to it."""
    url = DatabaseURL(database_url)
    stop: Callable[[], None] | None
    start: Callable[[], None]
    if url.dialect == "sqlite":
        # An open SQLite file cannot be taken away from its connections: the replica's
        # folder is missing from the start, and made later.
        folder = tmp_path / "replica"
        primary_url = str(url.replace(database=str(tmp_path / "primary.db")))
        replica_url = str(url.replace(database=str(folder / "replica.db")))
        stop = None

        def start() -> None:
            folder.mkdir()
    elif url.dialect.startswith("postgres"):
        pair: Pair = request.getfixturevalue("fresh_pair")
        server: PrivatePostgreSQL | PrivateMariaDB = pair[1]
        primary_url = str(DatabaseURL(pair[0].url()).replace(scheme=url.scheme))
        replica_url = str(DatabaseURL(server.url()).replace(scheme=url.scheme))
        stop, start = server.stop, server.start
    else:
        server = request.getfixturevalue("private_mariadb")
        request.addfinalizer(server.ensure_running)
        primary_url = database_url
        replica_url = str(DatabaseURL(server.url()).replace(scheme=url.scheme))
        stop, start = server.stop, server.start

    db = Database(
        primary_url, replicas=[replica_url], replica_check_interval=0.1, replica_sticky_seconds=0
    )
    async with db:
        read = lambda: db.fetch_val("SELECT 1")  # noqa: E731
        if stop is not None:
            assert await ran_on(db, read) == {"replica1"}
            await asyncio.to_thread(stop)
            # Each read answers; the first one after the stop tries the replica first.
            await until(lambda: not db.replicas[0].healthy, read)
        assert await ran_on(db, read) == {"primary"}
        assert await ran_on(db, lambda: aiter_all(db.iterate("SELECT 1"))) == {"primary"}
        await asyncio.to_thread(start)
        await until(lambda: db.replicas[0].healthy, read)
        assert await ran_on(db, read) == {"replica1"}


# -- on a real streaming replica (PostgreSQL) -------------------------------------------------


@pytest.fixture
def scheme(database_url: str) -> str:
    url = DatabaseURL(database_url)
    if not url.dialect.startswith("postgres"):
        pytest.skip("a streaming replica of a private PostgreSQL; MySQL/SQLite: tests above")
    return url.scheme


def of(scheme: str, server: PrivatePostgreSQL) -> str:
    return str(DatabaseURL(server.url()).replace(scheme=scheme))


STANDBY = "SELECT pg_is_in_recovery()"


@pytest.fixture
async def standby(scheme: str, streaming_pair: Pair) -> AsyncIterator[Database]:
    """The streaming replica itself, without routing."""
    async with Database(of(scheme, streaming_pair[1])) as db:
        yield db


async def test_reads_land_on_the_standby_and_a_writer_reads_its_writes(
    scheme: str, streaming_pair: Pair
) -> None:
    primary, replica = streaming_pair
    async with Database(
        of(scheme, primary), replicas=[of(scheme, replica)], replica_sticky_seconds=WINDOW
    ) as db:
        assert await db.fetch_val(STANDBY) is True
        await db.execute("DROP TABLE IF EXISTS replica_notes")
        await db.execute("CREATE TABLE replica_notes (id INTEGER PRIMARY KEY, text TEXT)")

        async def write_then_read() -> None:
            await db.execute(notes.insert().values(id=1, text="mine"))
            assert await db.fetch_val(STANDBY) is False
            assert await db.fetch_val(sa.select(notes.c.text)) == "mine"
            await asyncio.sleep(WINDOW + 0.1)
            assert await db.fetch_val(STANDBY) is True
            # Hooks see the replica's statements, naming its server.
            events: list[DatabaseURL] = []
            with db.add_query_hook(after=lambda event: events.append(event.url)):
                await db.fetch_val(STANDBY)
            assert [event.port for event in events] == [replica.port]

        await asyncio.create_task(write_then_read())
        async with db.transaction():
            assert await db.fetch_val(STANDBY) is False
        with db.route("primary"):
            assert await db.fetch_val(STANDBY) is False
        await db.execute("DROP TABLE replica_notes")


async def test_spans_and_logs_name_the_standby(
    scheme: str, streaming_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    primary, replica = streaming_pair
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = DBAccessInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider())
    caplog.set_level(logging.DEBUG, logger="dbaccess")
    try:
        async with Database(of(scheme, primary), replicas=[of(scheme, replica)]) as db:
            caplog.clear()
            assert await asyncio.create_task(db.fetch_val(STANDBY)) is True
            await db.execute("SELECT 1")
    finally:
        instrumentor.uninstrument()
    ports = [
        (span.attributes or {}).get("server.port")
        for span in exporter.get_finished_spans()
        if "db.query.text" in (span.attributes or {})
    ]
    assert ports[-2:] == [replica.port, primary.port]
    statements = [r.getMessage() for r in caplog.records if r.getMessage().startswith("statement")]
    assert statements[0].startswith(f"statement on postgresql (replica 127.0.0.1:{replica.port})")
    assert statements[1].startswith("statement on postgresql took")


async def test_a_function_that_writes_in_a_select_falls_back_to_the_primary(
    scheme: str, streaming_pair: Pair, standby: Database
) -> None:
    """The standby refuses it (read-only): it runs on the primary, without an error."""
    primary, replica = streaming_pair
    async with Database(of(scheme, primary), replicas=[of(scheme, replica)]) as db:
        await db.execute("CREATE SEQUENCE IF NOT EXISTS replica_sequence")
        replayed = "SELECT to_regclass('replica_sequence') IS NOT NULL"
        seen: list[bool] = []

        async def look() -> None:  # replication is asynchronous: wait for the standby
            seen.append(await standby.fetch_val(replayed))

        await until(lambda: bool(seen) and seen[-1], look)
        with db.route("replica"):
            assert await db.fetch_val("SELECT nextval('replica_sequence') > 0") is True
        assert db.replicas[0].healthy
        await db.execute("DROP SEQUENCE replica_sequence")


async def test_a_timeout_on_the_replica_is_the_callers_error(
    scheme: str, streaming_pair: Pair
) -> None:
    """Not run again on the primary (the caller's time is spent), and the replica stays."""
    primary, replica = streaming_pair
    async with Database(of(scheme, primary), replicas=[of(scheme, replica)]) as db:
        with pytest.raises(OperationalError, match=r"timed out after timeout=0\.2"):
            await db.fetch_val("SELECT pg_sleep(5)", timeout=0.2)
        assert db.replicas[0].healthy
        assert db.pool_stats_by_node["primary"].acquired == 0
        assert await db.fetch_val(STANDBY) is True


async def test_a_lagging_replica_leaves_rotation_until_it_catches_up(
    scheme: str, streaming_pair: Pair, standby: Database
) -> None:
    primary, replica = streaming_pair
    async with Database(
        of(scheme, primary),
        replicas=[of(scheme, replica)],
        max_replica_lag=0.5,
        replica_check_interval=0.1,
        replica_sticky_seconds=0,
    ) as db:
        assert db.replicas[0].healthy and db.replicas[0].lag == 0
        await standby.execute("SELECT pg_wal_replay_pause()")
        try:
            await db.execute("CREATE TABLE IF NOT EXISTS replica_lag (id INTEGER)")

            async def write_and_read() -> None:
                await db.execute("INSERT INTO replica_lag VALUES (1)")
                await db.fetch_val(STANDBY)

            await until(lambda: not db.replicas[0].healthy, write_and_read)
            assert "lags" in (db.replicas[0].reason or "")
            assert await db.fetch_val(STANDBY) is False
        finally:
            await standby.execute("SELECT pg_wal_replay_resume()")
        await until(lambda: db.replicas[0].healthy, lambda: db.fetch_val(STANDBY))
        assert await db.fetch_val(STANDBY) is True
        await db.execute("DROP TABLE replica_lag")


async def test_replicas_in_the_url(scheme: str, streaming_pair: Pair) -> None:
    primary, replica = streaming_pair
    url = (
        f"{of(scheme, primary)}?replicas=127.0.0.1:{replica.port}&replica_sticky_seconds=0"
        "&target_session_attrs=read-write&connect_timeout=7"
    )
    async with Database(url) as db:
        assert "replicas" not in db.url.options
        assert db.replicas[0].url.port == replica.port
        # The replicas share the URL's options, but for the choice of the primary's host.
        assert db.replicas[0].url.options == {"connect_timeout": "7"}
        assert db.replicas[0].healthy
        assert await db.fetch_val(STANDBY) is True


# -- on a real binlog replica (MariaDB) ------------------------------------------------------


@pytest.fixture
def mariadb_pair(
    database_url: str,
) -> Iterator[tuple[PrivateMariaDBPrimary, PrivateMariaDBReplica]]:
    """A private MariaDB writing a binlog and its replica, removed after the test."""
    if DatabaseURL(database_url).dialect != "mysql":
        pytest.skip("a binlog replica of a private MariaDB; PostgreSQL/SQLite: tests above")
    for primary in _private(PrivateMariaDBPrimary):
        for replica in _private(PrivateMariaDBReplica, primary):
            yield primary, replica


async def test_a_mariadb_replica_that_stops_applying_leaves_rotation(
    database_url: str, mariadb_pair: tuple[PrivateMariaDBPrimary, PrivateMariaDBReplica]
) -> None:
    """Seconds_Behind_Master is NULL while the replica's SQL thread is stopped: out of
    rotation (infinitely behind) until it runs again."""
    primary, replica = mariadb_pair
    scheme = DatabaseURL(database_url).scheme
    server = "SELECT @@server_id"
    async with (
        Database(
            primary.url(scheme),
            replicas=[replica.url(scheme)],
            max_replica_lag=5,
            replica_check_interval=0.1,
            replica_sticky_seconds=0,
        ) as db,
        Database(replica.url(scheme)) as direct,
    ):
        (node,) = db.replicas
        assert node.healthy and node.lag is not None and node.lag <= 5  # catching up: >= 0
        assert await db.fetch_val(server) == 2
        await direct.execute("STOP SLAVE SQL_THREAD")
        try:
            await until(lambda: not db.replicas[0].healthy, lambda: db.fetch_val(server))
            assert "lags inf s behind" in (db.replicas[0].reason or "")
            assert await db.fetch_val(server) == 1
        finally:
            await direct.execute("START SLAVE SQL_THREAD")
        await until(lambda: db.replicas[0].healthy, lambda: db.fetch_val(server))
        assert await db.fetch_val(server) == 2


# -- configuration -------------------------------------------------------------------------


def test_bad_replica_configuration_is_refused_clearly(
    database_url: str, secret_password: str
) -> None:
    url = DatabaseURL(database_url)
    other = (
        "sqlite:////tmp/other.db"
        if url.dialect != "sqlite"
        else f"postgresql://user:{secret_password}@127.0.0.1/app"
    )
    with pytest.raises(ConfigurationError, match="of another kind than the primary") as caught:
        Database(database_url, replicas=[other])
    assert secret_password not in str(caught.value)
    replica = "sqlite:////tmp/replica.db" if url.dialect == "sqlite" else database_url
    bad_option = f"{replica}{'&' if '?' in replica else '?'}no_such_option=1"
    with pytest.raises(ConfigurationError, match=r"^replica .*unknown URL option 'no_such_opt"):
        Database(database_url, replicas=[bad_option])
    with pytest.raises(ConfigurationError, match="a list of database URLs, not str"):
        Database(database_url, replicas=database_url)
    with pytest.raises(ConfigurationError, match="replica_sticky_seconds"):
        Database(database_url, replicas=[], replica_sticky_seconds=-1)
    with pytest.raises(ConfigurationError, match="max_replica_lag"):
        Database(database_url, max_replica_lag="soon")
    with pytest.raises(ConfigurationError, match="replica_check_interval=none"):
        Database(database_url, replica_check_interval=None)
    with pytest.raises(ConfigurationError, match="in-memory SQLite"):
        Database("sqlite:///:memory:", replicas=["sqlite:///:memory:"])
    if url.dialect != "sqlite":
        with pytest.raises(ConfigurationError, match="given twice"):
            Database(_with(database_url, replicas="127.0.0.1:1"), replicas=[database_url])
        with pytest.raises(ConfigurationError, match="is empty"):
            Database(_with(database_url, replicas=""))
    else:
        with pytest.raises(ConfigurationError, match="SQLite"):
            Database(_with(database_url, replicas="127.0.0.1"))


def _with(url: str, **options: str) -> str:
    """The URL with more options (keeping its own: behind PgBouncer, prepared_statements)."""
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


def test_migrations_take_the_primary_of_a_url_with_replicas(database_url: str) -> None:
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        pytest.skip("SQLite URLs take no replicas= option (replicas are files: a keyword)")
    with_replicas = _with(database_url, replicas="127.0.0.1:1", max_replica_lag="5")
    assert sqlalchemy_url(with_replicas) == sqlalchemy_url(database_url)
    with pytest.raises(ConfigurationError, match="max_replica_lag"):
        sqlalchemy_url(_with(database_url, replicas="127.0.0.1:1", max_replica_lag="soon"))


def test_replica_passwords_stay_hidden(database_url: str, secret_password: str) -> None:
    url = DatabaseURL(database_url)
    if url.dialect == "sqlite":
        pytest.skip("SQLite URLs have no password")
    replica = url.replace(username="reader", password=secret_password)
    db = Database(database_url, replicas=[replica])
    assert secret_password not in repr(db)
    assert secret_password not in repr(db.replicas)
    assert "***" in repr(db)


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        ("SELECT 1", True),
        ("  select * from t where a = :a", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("VALUES (1), (2)", True),
        ("(SELECT 1) UNION (SELECT 2)", True),
        ("-- a comment\nSELECT 'INSERT INTO t' AS text", True),
        ('SELECT "update" FROM t', True),
        ("SELECT replace(name, 'a', 'b') FROM t", True),
        ("SELECT * FROM t FOR UPDATE", False),
        ("SELECT * FROM t FOR SHARE", False),
        ("SELECT * FROM t LOCK IN SHARE MODE", False),
        ("SELECT * INTO new_t FROM t", False),
        ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", False),
        ("SELECT nextval('s')", False),
        ("SELECT pg_advisory_lock(1)", False),
        ("SELECT set_config('a.b', '1', false)", False),
        ("SELECT @x := 1", False),
        ("SELECT LAST_INSERT_ID()", False),
        ("SELECT 1; DELETE FROM t", False),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET a = 1", False),
        ("SET search_path = x", False),
        ("SHOW TABLES", False),
        ("EXPLAIN ANALYZE DELETE FROM t", False),
        ("SELECT $$x$$", False),
    ],
)
def test_what_counts_as_a_read(sql: str, reads: bool) -> None:
    assert is_read(sql) is reads
    assert is_read(sa.text(sql)) is reads


def test_core_queries_that_count_as_reads() -> None:
    table = sa.table("t", sa.column("id"))
    assert is_read(sa.select(table.c.id))
    assert is_read(sa.union(sa.select(table.c.id), sa.select(table.c.id)))
    assert is_read(sa.text("SELECT id FROM t").columns(table.c.id))
    assert not is_read(sa.select(table.c.id).with_for_update())
    assert not is_read(table.insert().values(id=1))
    assert not is_read(table.update().values(id=1))
    other = sa.Table("u", sa.MetaData(), sa.Column("id", sa.Integer))
    assert not is_read(sa.schema.CreateTable(other))


def test_replica_hosts_in_the_url_are_parsed_as_the_urls_hosts_are() -> None:
    # One parser for a URL's hosts and replicas= (url.parse_hosts): IPv6 in brackets, and
    # a bad port is a ConfigurationError naming it, for one host as for several.
    db = Database("postgresql://u@h/d?replicas=[::1]:5433")
    assert [node.url.hosts for node in db.replicas] == [(("::1", 5433),)]
    for bad in ("h2:abc", "h2,h3:abc"):
        with pytest.raises(ConfigurationError, match=r"option replicas=.*is not from 1 to 65535"):
            Database(f"postgresql://u@h/d?replicas={bad}")
