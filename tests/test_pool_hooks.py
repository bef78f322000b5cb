"""The pool's hooks and limits: init, setup, max_lifetime, max_idle, max_queries.

Each is observed for real: a hook changes what queries on that connection see, and a
limit replaces the connection, which the server sees as a new connection id. Waits poll
for the outcome with a generous bound and assert on ids, never on durations.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dbaccess import ConfigurationError, Database

# -- helpers ---------------------------------------------------------------------------


async def driver_fetch_val(raw: Any, sql: str) -> Any:
    """Run one query through the driver's own connection, as a hook would."""
    if hasattr(raw, "fetchval"):  # asyncpg
        return await raw.fetchval(sql)
    if type(raw).__module__.startswith("psycopg"):
        cursor = await raw.execute(sql)
        row = await cursor.fetchone()
        return row[0]
    if hasattr(raw, "get_transaction_status"):  # aiomysql, asyncmy
        async with raw.cursor() as cursor:
            await cursor.execute(sql)
            row = await cursor.fetchone()
        return row[0]
    async with raw.execute(sql) as cursor:  # aiosqlite
        row = await cursor.fetchone()
    return row[0]


SERVER_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


async def server_id(db: Database, dialect: str) -> Any:
    """The id the server gives the connection a call borrows (SQLite: none)."""
    return await db.fetch_val(SERVER_ID[dialect]) if dialect in SERVER_ID else None


class Seen:
    """The driver connections a test met, kept alive so that identity means something."""

    def __init__(self) -> None:
        self.raws: list[Any] = []

    def index(self, raw: Any) -> int:
        """A number per distinct driver connection, in the order first met."""
        for position, known in enumerate(self.raws):
            if known is raw:
                return position
        self.raws.append(raw)
        return len(self.raws) - 1


async def borrow(db: Database, dialect: str, seen: Seen) -> tuple[int, Any]:
    """Borrow a connection, run one query on it: (which driver connection, server id)."""
    async with db.connection() as connection:
        ident = await server_id(db, dialect) if dialect in SERVER_ID else None
        if ident is None:
            assert await connection.fetch_val("SELECT 1") == 1
        return seen.index(connection.raw_connection), ident


async def eventually(check: Callable[[], Awaitable[bool]], tries: int = 200) -> bool:
    """Poll ``check`` every 50 ms, up to ``tries`` times."""
    for _ in range(tries):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def server_has(dialect: str, database_url: str, ident: Any) -> bool:
    """Whether the server still has a connection with this id (asked on a new one)."""
    sql = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid = :id",
        "mysql": "SELECT count(*) FROM information_schema.processlist WHERE id = :id",
    }[dialect]
    async with Database(database_url, min_size=1, max_size=1) as other:
        return bool(await other.fetch_val(sql, {"id": ident}))


def driver_class_name(dialect: str, database_url: str) -> str:
    if dialect == "postgresql":
        return "psycopg" if "+psycopg" in database_url else "asyncpg"
    if dialect == "sqlite":
        return "aiosqlite"
    return "asyncmy" if "+asyncmy" in database_url else "aiomysql"


# -- init --------------------------------------------------------------------------------


async def tag_session(raw: Any, dialect: str, value: str) -> None:
    """Leave a mark on one driver connection that later queries on it can read."""
    if dialect == "postgresql":
        await raw.execute(f"SELECT set_config('dbaccess.tag', '{value}', false)")
    elif dialect == "mysql":
        async with raw.cursor() as cursor:
            await cursor.execute(f"SET @dbaccess_tag = '{value}'")
    else:
        await raw.create_function("dbaccess_tag", 0, lambda: value)


READ_TAG = {
    "postgresql": "SELECT current_setting('dbaccess.tag', true)",
    "mysql": "SELECT @dbaccess_tag",
    "sqlite": "SELECT dbaccess_tag()",
}


async def test_init_runs_once_per_new_connection_with_the_driver_connection(
    database_url: str, dialect: str, one_session: None
) -> None:
    calls: list[Any] = []
    counter = itertools.count(1)

    async def init(raw: Any) -> None:
        calls.append(raw)
        await tag_session(raw, dialect, f"init-{next(counter)}")

    async with Database(database_url, min_size=2, max_size=3, init=init) as db:
        assert len(calls) == 2  # the min_size connections
        # The driver's own class, or dbaccess's subclass of it (asyncpg's, which names
        # its statements uniquely across processes).
        assert all(
            any(
                cls.__module__.split(".")[0] == driver_class_name(dialect, database_url)
                for cls in type(raw).__mro__[:2]
            )
            for raw in calls
        )
        tags = set()
        for _ in range(5):  # reused connections do not run it again
            tags.add(await db.fetch_val(READ_TAG[dialect]))
        assert len(calls) == 2
        assert tags <= {"init-1", "init-2"} and tags
        held = await hold_at_once(db, 3, READ_TAG[dialect])
        assert len(calls) == 3  # the third was opened for it
        assert any(raw is calls[2] for raw, _ in held)
        assert {tag for _, tag in held} == {"init-1", "init-2", "init-3"}


async def hold_at_once(db: Database, count: int, sql: str) -> list[tuple[Any, Any]]:
    """Hold ``count`` connections at once (one task each); each runs ``sql``:
    [(driver connection, result)]."""
    all_held = asyncio.Event()
    results: list[tuple[Any, Any]] = []

    async def hold() -> None:
        async with db.connection() as connection:
            results.append((connection.raw_connection, await connection.fetch_val(sql)))
            if len(results) == count:
                all_held.set()
            await all_held.wait()

    await asyncio.gather(*(hold() for _ in range(count)))
    return results


async def test_postgresql_init_registers_a_type_codec(database_url: str, dialect: str) -> None:
    if dialect != "postgresql" or "+psycopg" in database_url:
        pytest.skip("type codecs are asyncpg's (psycopg has adapters instead)")

    async def init(conn: Any) -> None:
        await conn.set_type_codec(
            "numeric", encoder=str, decoder=lambda text: ("numeric", text), schema="pg_catalog"
        )

    async with Database(database_url, min_size=0, init=init) as db:
        assert await db.fetch_val("SELECT 1.5::numeric") == ("numeric", "1.5")
    async with Database(database_url) as db:  # without init, the driver's own decoding
        assert str(await db.fetch_val("SELECT 1.5::numeric")) == "1.5"


class HookFailed(Exception):
    pass


async def test_init_failure_fails_connect_and_closes_the_connection(
    database_url: str, dialect: str, own_server_sessions: None
) -> None:
    opened: list[Any] = []

    async def init(raw: Any) -> None:
        opened.append(await driver_fetch_val(raw, SERVER_ID.get(dialect, "SELECT 1")))
        opened.append(raw)
        raise HookFailed("no codecs today")

    db = Database(database_url, init=init)
    with pytest.raises(HookFailed, match="no codecs today"):
        await db.connect()
    assert not db.is_connected
    ident, raw = opened
    if dialect in SERVER_ID:
        assert await eventually(lambda: _gone(dialect, database_url, ident))
    else:
        assert await eventually(lambda: _thread_ended(raw))
    # The same Database connects once the hook succeeds.
    attempts: list[Any] = []

    async def init_once(raw: Any) -> None:
        attempts.append(raw)
        if len(attempts) == 1:
            raise HookFailed("first one fails")

    db = Database(database_url, min_size=0, max_size=1, init=init_once)
    async with db:
        with pytest.raises(HookFailed):
            await db.fetch_val("SELECT 1")
        assert db.pool_stats.size == 0  # the failed one holds no place
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.size == 1


async def _gone(dialect: str, database_url: str, ident: Any) -> bool:
    return not await server_has(dialect, database_url, ident)


async def _thread_ended(raw: Any) -> bool:
    # aiosqlite < 0.22 connections are threads themselves; later ones hold one.
    return not getattr(raw, "_thread", raw).is_alive()


# -- setup -------------------------------------------------------------------------------


async def test_setup_runs_on_every_acquire(database_url: str, dialect: str) -> None:
    counter = itertools.count(1)
    raws: list[Any] = []

    async def setup(raw: Any) -> None:
        raws.append(raw)
        await tag_session(raw, dialect, f"setup-{next(counter)}")

    async with Database(database_url, max_size=1, setup=setup) as db:
        assert raws == []  # opening the pool lends nothing
        assert await db.fetch_val(READ_TAG[dialect]) == "setup-1"
        assert await db.fetch_val(READ_TAG[dialect]) == "setup-2"
        async with db.connection() as connection:
            assert raws[-1] is connection.raw_connection
            assert await connection.fetch_val(READ_TAG[dialect]) == "setup-3"
            assert await connection.fetch_val(READ_TAG[dialect]) == "setup-3"  # one loan
        async with db.transaction():
            assert await db.fetch_val(READ_TAG[dialect]) == "setup-4"
        rows = [row[0] async for row in db.iterate(READ_TAG[dialect])]
        assert rows == ["setup-5"]
        assert len(raws) == 5
        assert all(raw is raws[0] for raw in raws)  # max_size=1: the same connection


async def test_a_setup_hook_may_be_a_plain_function(database_url: str) -> None:
    calls: list[Any] = []
    async with Database(database_url, setup=calls.append) as db:
        assert await db.fetch_val("SELECT 1") == 1
        assert len(calls) == 1


async def test_setup_failure_discards_the_connection(
    database_url: str, dialect: str, one_session: None
) -> None:
    fail = [False]
    seen = Seen()

    async def setup(raw: Any) -> None:
        if fail[0]:
            fail[0] = False
            raise HookFailed("setup refused")

    async with Database(database_url, max_size=1, setup=setup) as db:
        first, first_id = await borrow(db, dialect, seen)
        fail[0] = True
        with pytest.raises(HookFailed, match="setup refused"):
            await db.fetch_val("SELECT 1")
        assert db.pool_stats.in_use == 0
        second, second_id = await borrow(db, dialect, seen)
        assert second != first  # a new driver connection
        if dialect in SERVER_ID:
            assert second_id != first_id
            assert await eventually(lambda: _gone(dialect, database_url, first_id))
        assert db.pool_stats.size == 1


async def test_cancelled_setup_discards_the_connection(database_url: str, dialect: str) -> None:
    started = asyncio.Event()
    block = [True]

    async def setup(raw: Any) -> None:
        if block[0]:
            started.set()
            await asyncio.sleep(3600)

    async with Database(database_url, max_size=1, setup=setup) as db:
        task = asyncio.create_task(db.fetch_val("SELECT 1"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert db.pool_stats.in_use == 0
        block[0] = False
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats.size == 1


# -- max_queries -------------------------------------------------------------------------


async def test_max_queries_replaces_the_connection(
    database_url: str, dialect: str, one_session: None
) -> None:
    seen = Seen()
    async with Database(database_url, max_size=1, max_queries=3) as db:
        borrowed = [await borrow(db, dialect, seen) for _ in range(7)]
        # One query per loan: loans 1-3 on the first connection, 4-6 on a second...
        assert [which for which, _ in borrowed] == [0, 0, 0, 1, 1, 1, 2]
        if dialect in SERVER_ID:
            idents = [ident for _, ident in borrowed]
            assert len({idents[0], idents[3], idents[6]}) == 3
        assert db.pool_stats.size == 1


async def test_max_queries_counts_queries_not_loans(database_url: str, dialect: str) -> None:
    seen = Seen()
    async with Database(database_url, max_size=1, max_queries=4) as db:
        async with db.connection() as connection:
            first = seen.index(connection.raw_connection)
            for _ in range(6):  # past the limit: the connection is never cut mid-block
                assert await connection.fetch_val("SELECT 1") == 1
        async with db.connection() as connection:
            assert seen.index(connection.raw_connection) != first


# -- max_lifetime ------------------------------------------------------------------------


async def test_max_lifetime_replaces_old_connections(
    database_url: str, dialect: str, one_session: None
) -> None:
    seen = Seen()
    async with Database(database_url, max_size=1, max_lifetime=0.3) as db:
        first, first_id = await borrow(db, dialect, seen)

        async def replaced() -> bool:
            which, _ = await borrow(db, dialect, seen)
            return which != first

        assert await eventually(replaced)
        if dialect in SERVER_ID:
            assert await eventually(lambda: _gone(dialect, database_url, first_id))


async def test_max_lifetime_never_cuts_a_connection_in_use(database_url: str, dialect: str) -> None:
    seen = Seen()
    async with Database(database_url, max_size=1, max_lifetime=0.2) as db:
        async with db.connection() as connection:
            first = seen.index(connection.raw_connection)
            await asyncio.sleep(0.5)  # past its lifetime, still lent
            assert await connection.fetch_val("SELECT 1") == 1
            assert seen.index(connection.raw_connection) == first
        which, _ = await borrow(db, dialect, seen)
        assert which != first  # replaced once it came back


async def test_pool_recycle_in_the_url_is_max_lifetime(database_url: str, dialect: str) -> None:
    # encode/databases' MySQL URL option; dbaccess takes it on every backend.
    seen = Seen()
    separator = "&" if "?" in database_url else "?"
    async with Database(f"{database_url}{separator}pool_recycle=0.3&max_size=1") as db:
        first, _ = await borrow(db, dialect, seen)

        async def replaced() -> bool:
            which, _ = await borrow(db, dialect, seen)
            return which != first

        assert await eventually(replaced)


# -- max_idle ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_idle", "max_inactive_connection_lifetime"])
async def test_max_idle_closes_idle_connections(
    database_url: str, dialect: str, name: str, one_session: None
) -> None:
    seen = Seen()
    keywords: dict[str, Any] = {name: 0.3}
    async with Database(database_url, min_size=1, max_size=2, **keywords) as db:
        first, first_id = await borrow(db, dialect, seen)

        async def closed() -> bool:
            return db.pool_stats.size == 0

        # Nobody acquires: the pool closes it by itself.
        assert await eventually(closed)
        if dialect in SERVER_ID:
            assert await eventually(lambda: _gone(dialect, database_url, first_id))
        which, _ = await borrow(db, dialect, seen)
        assert which != first
        assert db.pool_stats.size == 1


async def test_max_idle_keeps_connections_in_use(database_url: str, dialect: str) -> None:
    seen = Seen()
    async with Database(database_url, max_size=2, max_idle=0.2) as db:
        async with db.connection() as connection:
            first = seen.index(connection.raw_connection)
            await asyncio.sleep(0.5)
            assert await connection.fetch_val("SELECT 1") == 1
        # Just returned: its idle time starts now.
        which, _ = await borrow(db, dialect, seen)
        assert which == first


async def test_retired_connections_keep_max_size(database_url: str, dialect: str) -> None:
    # Connections past max_queries close in the background; callers waiting meanwhile
    # get the places back as they close, and the pool never holds more than max_size.
    async with Database(database_url, max_size=2, max_queries=1) as db:
        sizes: list[int] = []

        async def one() -> None:
            assert await db.fetch_val("SELECT 1") == 1
            sizes.append(db.pool_stats.size)

        await asyncio.gather(*(one() for _ in range(20)))
        assert max(sizes) <= 2
        assert db.pool_stats.in_use == 0


# -- options -----------------------------------------------------------------------------


async def test_minsize_and_maxsize_are_min_size_and_max_size(database_url: str) -> None:
    # aiomysql's spellings, which encode/databases users passed as keywords.
    async with Database(database_url, minsize=2, maxsize=4) as db:
        assert db.pool_stats.size == 2
        assert db.pool_stats.max_size == 4


URLS = ["postgresql://u@127.0.0.1/d", "mysql://u@127.0.0.1/d", "sqlite:///:memory:"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    ("given", "nearest"),
    [
        ("max_queris", "max_queries"),
        ("max_idel", "max_idle"),
        ("max_life_time", "max_lifetime"),
        ("pool_recyle", "pool_recycle"),
        ("stup", "setup"),
        ("pool_size", "max_size"),
        ("max_sise", "max_size"),
    ],
)
def test_misspelt_options_name_the_nearest(url: str, given: str, nearest: str) -> None:
    keywords: dict[str, Any] = {given: 1}
    with pytest.raises(ConfigurationError, match=f"did you mean '{nearest}'") as info:
        Database(url, **keywords)
    assert repr(given) in str(info.value)
    separator = "&" if "?" in url else "?"
    with pytest.raises(ConfigurationError, match=f"did you mean '{nearest}'"):
        Database(f"{url}{separator}{given}=1")


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"init": 5}, "init"),
        ({"setup": "SET x = 1"}, "setup"),
        ({"max_queries": 0}, "max_queries"),
        ({"max_lifetime": -1}, "max_lifetime"),
        ({"max_idle": "soon"}, "max_idle"),
        ({"pool_recycle": "0"}, "pool_recycle"),
        ({"max_inactive_connection_lifetime": -1}, "max_inactive_connection_lifetime"),
        ({"maxsize": 0}, "maxsize"),
    ],
)
def test_bad_hook_and_limit_values_are_named(
    url: str, keywords: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Database(url, **keywords)


@pytest.mark.parametrize("url", URLS)
def test_hooks_cannot_come_from_the_url(url: str) -> None:
    separator = "&" if "?" in url else "?"
    with pytest.raises(ConfigurationError, match="keyword argument"):
        Database(f"{url}{separator}init=mymodule.init")


@pytest.mark.parametrize("url", URLS)
def test_an_option_and_its_alias_together_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="'pool_recycle' and 'max_lifetime'"):
        Database(url, pool_recycle=10, max_lifetime=20)
    with pytest.raises(ConfigurationError, match="'max_size' and 'maxsize'"):
        Database(url, max_size=3, maxsize=4)


@pytest.mark.parametrize("url", URLS)
def test_the_drivers_never_values_mean_never(url: str) -> None:
    # aiomysql's pool_recycle=-1 and asyncpg's max_inactive_connection_lifetime=0 are
    # their defaults, which some configurations spell out: no limit.
    assert Database(url, pool_recycle=-1)._engine.backend.options.max_lifetime is None
    assert Database(url, pool_recycle=3600)._engine.backend.options.max_lifetime == 3600
    never = Database(url, max_inactive_connection_lifetime=0)
    assert never._engine.backend.options.max_idle is None
    assert Database(url, max_inactive_connection_lifetime=9)._engine.backend.options.max_idle == 9
