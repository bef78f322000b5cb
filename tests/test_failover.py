"""Several hosts in one PostgreSQL URL (libpq's ``h1:5432,h2:5433``) with
``target_session_attrs``, on a real streaming replica (tests/servers.py: pg_basebackup of
a private primary): connections land on the host the option asks for; when the primary
stops, calls fail fast with OperationalError; once the replica is promoted, the same
Database reaches it, writes included. MySQL and SQLite refuse such URLs.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from dbaccess import ConfigurationError, Database, DatabaseURL, OperationalError, sqlalchemy_url

from .servers import PrivatePostgreSQL, PrivateReplica

Pair = tuple[PrivatePostgreSQL, PrivateReplica]

#: What a call may take to fail while no host fits: refused connections on loopback
#: take milliseconds; this leaves room for a loaded machine, far below connect_timeout
#: (10 s) times the two hosts.
FAILS_WITHIN = 5.0

#: The tests' bound on any one call, so that a hang fails the test instead of stalling it.
HANG = 30.0


@pytest.fixture
def scheme(database_url: str) -> str:
    """The URL's scheme (asyncpg or psycopg), skipping the test off PostgreSQL (before
    any server of the test's own is made: list it first)."""
    url = DatabaseURL(database_url)
    if not url.dialect.startswith("postgres"):
        pytest.skip(
            "several hosts and target_session_attrs are PostgreSQL's (libpq's); "
            "MySQL and SQLite refuse them (test_several_hosts_are_refused_off_postgresql)"
        )
    return url.scheme


def hosts_url(scheme: str, *servers: PrivatePostgreSQL, attrs: str | None = None) -> str:
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    query = f"?target_session_attrs={attrs}" if attrs else ""
    return f"{scheme}://postgres@{hosts}/postgres{query}"


LANDED = "SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby"


async def landed_on(db: Database) -> tuple[int, bool]:
    """The port of the server the query ran on, and whether it is in recovery (a standby)."""
    row = await asyncio.wait_for(db.fetch_one(LANDED), HANG)
    assert row is not None
    return int(row["port"]), bool(row["standby"])


def test_several_hosts_are_refused_off_postgresql(database_url: str) -> None:
    url = DatabaseURL(database_url)
    if url.dialect.startswith("postgres"):
        pytest.skip("PostgreSQL takes several hosts: the tests below")
    several = url.replace(hosts=[("127.0.0.1", 3306), ("127.0.0.1", 3307)])
    with pytest.raises(ConfigurationError, match="names several hosts; only PostgreSQL"):
        Database(several)


@pytest.mark.parametrize(
    ("attrs", "on_standby"),
    [
        ("read-write", False),
        ("primary", False),
        ("read-only", True),
        ("standby", True),
        ("prefer-standby", True),
    ],
)
@pytest.mark.parametrize("replica_first", [True, False], ids=["replica-first", "primary-first"])
async def test_connection_lands_on_the_host_target_session_attrs_asks_for(
    scheme: str, streaming_pair: Pair, attrs: str, on_standby: bool, replica_first: bool
) -> None:
    primary, replica = streaming_pair
    order = (replica, primary) if replica_first else (primary, replica)
    async with Database(hosts_url(scheme, *order, attrs=attrs)) as db:
        expected = replica if on_standby else primary
        assert await landed_on(db) == (expected.port, on_standby)


async def test_the_keyword_option_works_as_the_url_option(
    scheme: str, streaming_pair: Pair
) -> None:
    primary, replica = streaming_pair
    url = hosts_url(scheme, primary, replica)
    async with Database(url, target_session_attrs="standby") as db:
        assert await landed_on(db) == (replica.port, True)


async def test_prefer_standby_without_a_standby_takes_the_primary(
    scheme: str, streaming_pair: Pair
) -> None:
    primary, _ = streaming_pair
    url = hosts_url(scheme, primary, primary, attrs="prefer-standby")
    async with Database(url) as db:
        assert await landed_on(db) == (primary.port, False)


@pytest.mark.parametrize(
    ("given", "guess"),
    [("read-wrte", "read-write"), ("standbye", "standby"), ("prefer_standby", "prefer-standby")],
)
def test_a_misspelt_target_session_attrs_is_refused_with_a_guess(
    scheme: str, given: str, guess: str
) -> None:
    url = f"{scheme}://postgres@127.0.0.1:1,127.0.0.1:2/postgres"
    with pytest.raises(ConfigurationError, match=f"did you mean {guess!r}"):
        Database(f"{url}?target_session_attrs={given}")
    with pytest.raises(ConfigurationError, match=f"did you mean {guess!r}"):
        Database(url, target_session_attrs=given)


async def test_no_host_fitting_is_an_operational_error_at_once(
    scheme: str, streaming_pair: Pair
) -> None:
    _, replica = streaming_pair
    url = hosts_url(scheme, replica, replica, attrs="read-write")
    db = Database(url, min_size=0)
    await db.connect()  # min_size=0: no connection yet
    started = time.monotonic()
    with pytest.raises(OperationalError):
        await asyncio.wait_for(db.fetch_val("SELECT 1"), HANG)
    assert time.monotonic() - started < FAILS_WITHIN
    await db.disconnect()


table = sa.table("failover_notes", sa.column("id"), sa.column("text"))


async def replicated(replica: PrivateReplica, scheme: str, rows: int) -> None:
    """Wait until the replica has replayed the primary's ``rows`` notes."""
    async with Database(hosts_url(scheme, replica)) as standby:
        for _ in range(200):
            with_rows = await standby.fetch_val(
                "SELECT count(*) FROM pg_class WHERE relname = 'failover_notes'"
            )
            if with_rows and await standby.fetch_val("SELECT count(*) FROM failover_notes") == rows:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the replica did not replay {rows} rows within 10 s")


async def test_primary_failover_fails_fast_then_reaches_the_promoted_replica(
    scheme: str, fresh_pair: Pair
) -> None:
    primary, replica = fresh_pair
    url = hosts_url(scheme, primary, replica, attrs="read-write")
    async with Database(url, min_size=2, max_size=4) as db:
        await db.execute("CREATE TABLE failover_notes (id serial PRIMARY KEY, text text)")
        await db.execute(sa.insert(table).values(text="before"))
        assert await landed_on(db) == (primary.port, False)
        await replicated(replica, scheme, 1)

        await asyncio.to_thread(primary.stop)
        # Stale pooled connections and new ones alike: each call fails, and fast.
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(OperationalError):
                await asyncio.wait_for(db.fetch_val("SELECT 1"), HANG)
            assert time.monotonic() - started < FAILS_WITHIN

        await asyncio.to_thread(replica.promote)
        # The same Database, not reconnected: the next call opens a connection that
        # lands on the promoted replica, where writes now go.
        assert await landed_on(db) == (replica.port, False)
        await db.execute(sa.insert(table).values(text="after"))
        async with db.transaction():
            await db.execute(sa.insert(table).values(text="in a transaction"))
        texts = await db.fetch_all(sa.select(table.c.text).order_by(table.c.id))
        assert [row[0] for row in texts] == ["before", "after", "in a transaction"]


async def test_sqlalchemy_url_carries_the_hosts_and_target_session_attrs(
    scheme: str, streaming_pair: Pair
) -> None:
    primary, replica = streaming_pair
    url = hosts_url(scheme, replica, primary, attrs="read-write")
    if tuple(int(part) for part in re.findall(r"\d+", sa.__version__)[:3]) < (2, 0, 18):
        with pytest.raises(ConfigurationError, match=r"SQLAlchemy takes from version 2\.0\.18"):
            sqlalchemy_url(url)
        return
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.text(LANDED))).one()
    finally:
        await engine.dispose()
    assert (row.port, row.standby) == (primary.port, False)


async def test_the_password_stays_out_of_a_failure_to_reach_any_host(
    scheme: str, secret_password: str
) -> None:
    # Two ports nothing listens on: their servers were never started.
    unused = [PrivatePostgreSQL(), PrivatePostgreSQL()]
    try:
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in unused)
        url = f"{scheme}://postgres:{secret_password}@{hosts}/postgres?target_session_attrs=primary"
        db = Database(url, min_size=0)
        assert secret_password not in repr(db)
        await db.connect()  # min_size=0: no connection yet
        with pytest.raises(OperationalError) as info:
            await asyncio.wait_for(db.fetch_val("SELECT 1"), HANG)
        assert secret_password not in str(info.value)
        assert secret_password not in repr(info.value)
        await db.disconnect()
    finally:
        for server in unused:
            server.remove()


async def test_a_timed_out_statement_is_cancelled_on_its_own_server(
    scheme: str, streaming_pair: Pair
) -> None:
    # With several hosts the cancel request goes to the connection's own address, not
    # through a new connection that could land elsewhere.
    primary, replica = streaming_pair
    marker = f"dbaccess-failover-{time.monotonic_ns()}"
    async with Database(hosts_url(scheme, replica, primary, attrs="read-write")) as db:
        with pytest.raises(OperationalError, match=r"timed out after timeout=0\.5 s"):
            await db.fetch_val(f"SELECT pg_sleep(30), '{marker}'", timeout=0.5)
        running = (
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || :marker || '%' "
            "AND pid <> pg_backend_pid()"
        )
        for _ in range(100):
            if await db.fetch_val(running, {"marker": marker}) == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the statement still runs on the primary 5 s after its timeout")
        assert await landed_on(db) == (primary.port, False)
