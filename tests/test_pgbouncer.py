"""PgBouncer in transaction mode (Debian's package, a private instance from
tests/servers.py in front of the shared PostgreSQL, with 4 server connections for many
more clients): with ``prepared_statements=false`` every code path works there
concurrently; without it, the error names the option instead of leaving the user with
"prepared statement ... does not exist". On MySQL and SQLite the option is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from dbaccess import ConfigurationError, Database, DatabaseURL, OperationalError, ProgrammingError

from .conftest import released
from .servers import PrivatePgBouncer
from .test_options import with_options

#: Clients per test, against PgBouncer's 4 server connections.
TASKS = 24


def postgres_only(database_url: str) -> None:
    if not DatabaseURL(database_url).dialect.startswith("postgres"):
        pytest.skip("PgBouncer fronts PostgreSQL (the option's refusal elsewhere: below)")


@pytest.fixture
def bounced(database_url: str, private_pgbouncer: PrivatePgBouncer) -> Iterator[str]:
    """The test database, through the private PgBouncer, with prepared_statements=false."""
    postgres_only(database_url)
    url = DatabaseURL(database_url)
    yield private_pgbouncer.url(url.scheme, url.database)


@pytest.fixture
def misconfigured(bounced: str) -> str:
    """The same without the option: the drivers' defaults, behind transaction pooling."""
    return str(DatabaseURL(bounced).replace(options={}))


def admin(bouncer: PrivatePgBouncer, command: str) -> None:
    """A command of PgBouncer's admin console (its `pgbouncer` database)."""
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(bouncer.port),
            "-U",
            "postgres",
            "-d",
            "pgbouncer",
            "-c",
            command,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_the_option_is_refused_where_it_means_nothing(database_url: str) -> None:
    if DatabaseURL(database_url).dialect.startswith("postgres"):
        Database(with_options(database_url, prepared_statements="false"))
        Database(database_url, prepared_statements=False)
        with pytest.raises(ConfigurationError, match="contradict"):
            Database(database_url, prepared_statements=False, statement_cache_size=10)
        with pytest.raises(ConfigurationError, match="not a boolean"):
            Database(with_options(database_url, prepared_statements="sometimes"))
    else:
        with pytest.raises(ConfigurationError, match="prepared_statements"):
            Database(with_options(database_url, prepared_statements="false"))


def test_a_pgbouncer_option_points_to_it(database_url: str) -> None:
    if not DatabaseURL(database_url).dialect.startswith("postgres"):
        pytest.skip("prepared_statements is an option of the PostgreSQL backends")
    with pytest.raises(ConfigurationError, match="did you mean 'prepared_statements'"):
        Database(with_options(database_url, pgbouncer="transaction"))


async def test_every_code_path_runs_concurrently(bounced: str) -> None:
    async with Database(bounced, min_size=0, max_size=TASKS) as db:
        await db.execute("DROP TABLE IF EXISTS dbaccess_bounced")
        await db.execute("CREATE TABLE dbaccess_bounced (id int PRIMARY KEY, task int)")

        async def client(task: int) -> None:
            first = task * 100
            for n in range(20):  # two statements, alternating: no plan is reused by name
                assert await db.fetch_val("SELECT :n * 2", {"n": n}) == n * 2
                assert await db.fetch_one("SELECT :n + 1000 AS v", {"n": n}) == (n + 1000,)
            rows = [{"id": first + k, "task": task} for k in range(30)]
            await db.execute_many(
                "INSERT INTO dbaccess_bounced (id, task) VALUES (:id, :task)", rows
            )
            query = "SELECT id FROM dbaccess_bounced WHERE task = :task ORDER BY id"
            values = {"task": task}
            ids = [row[0] async for row in db.iterate(query, values, chunk_size=7)]
            assert ids == list(range(first, first + 30))
            async with db.transaction():
                await db.execute("SET LOCAL statement_timeout = 5000")
                assert await db.fetch_val("SHOW statement_timeout") == "5s"
                ids = [row[0] async for row in db.iterate(query, values, chunk_size=4)]
                assert len(ids) == 30
                await db.execute("DELETE FROM dbaccess_bounced WHERE id = :id", {"id": first})
                with pytest.raises(ZeroDivisionError):
                    async with db.transaction():  # a savepoint, rolled back
                        await db.execute("DELETE FROM dbaccess_bounced WHERE task = :task", values)
                        raise ZeroDivisionError
            assert (
                await db.fetch_val(
                    "SELECT count(*) FROM dbaccess_bounced WHERE task = :task", values
                )
                == 29
            )
            async with db.connection() as conn:
                # Statements between the chunks, each committing on its own.
                async for row in conn.iterate(query, values, chunk_size=5):
                    await conn.execute(
                        "UPDATE dbaccess_bounced SET task = -task WHERE id = :id", {"id": row[0]}
                    )
            assert (
                await db.fetch_val(
                    "SELECT count(*) FROM dbaccess_bounced WHERE task = :t", {"t": -task}
                )
                == 29
            )
            # A session setting: the session is reset before the connection goes back.
            await db.execute("SET application_name = 'dirty'")
            assert await db.fetch_val("SELECT 1") == 1

        try:
            await asyncio.gather(*(client(task) for task in range(1, TASKS + 1)))
        finally:
            await db.execute("DROP TABLE IF EXISTS dbaccess_bounced")
        assert await released(db)


async def test_a_timeout_cancels_the_statement_on_the_server(bounced: str) -> None:
    # The pid the driver was given at connect is PgBouncer's: the cancel request goes
    # through PgBouncer, to the server connection that runs the statement.
    marker = f"dbaccess-bounced-{time.monotonic_ns()}"
    async with Database(with_options(bounced, application_name=marker)) as db:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            await db.fetch_val("SELECT pg_sleep(30)", timeout=0.5)
        assert time.monotonic() - started < 10
        direct = str(DatabaseURL(bounced).replace(port=5432, options={}))
        async with Database(direct) as watcher:
            for _ in range(100):
                running = await watcher.fetch_val(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
                )
                if running == 0:
                    break
                await asyncio.sleep(0.1)
            assert running == 0, "the statement still runs on the server"
        assert await db.fetch_val("SELECT 5") == 5


async def test_cancelled_statements_leave_pgbouncer_running(
    bounced: str, private_pgbouncer: PrivatePgBouncer
) -> None:
    # A timeout or a cancelled task sends a cancel request, and the connection is
    # closed: had that cut the request's own socket off before PgBouncer forwarded it
    # (asyncpg's terminate() does), PgBouncer 1.18 exits ("bad client state", its
    # PR #846) and takes every client with it. Before the fix it died within three
    # rounds like these; statements that end near their timeout race the requests.
    async with Database(bounced, min_size=0, max_size=8) as db:

        async def timed_out(n: int) -> None:
            timeout = 0.05 + 0.05 * (n % 4)
            sleep = (0.9 + 0.1 * (n % 3)) * timeout if n % 2 else 30
            with contextlib.suppress(OperationalError):
                await db.fetch_val(
                    "SELECT count(*) FROM pg_sleep(:s)", {"s": sleep}, timeout=timeout
                )

        async def cancelled() -> None:
            task = asyncio.create_task(db.fetch_val("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OperationalError):
                await task

        for _ in range(5):
            await asyncio.gather(*(timed_out(n) for n in range(8)), cancelled())
            assert private_pgbouncer.exit_status() is None, private_pgbouncer.log()
        assert await db.fetch_val("SELECT 6") == 6
        assert await released(db)
        # The last requests finish before the test's loop closes (which would cut them
        # off, as terminate() did: the next test would find PgBouncer dead).
        for _ in range(500):
            if len(asyncio.all_tasks()) == 1:
                break
            await asyncio.sleep(0.01)


async def test_without_the_option_the_error_names_it(
    misconfigured: str, private_pgbouncer: PrivatePgBouncer
) -> None:
    async with Database(misconfigured, min_size=1, max_size=1) as db:
        for n in range(6):  # psycopg prepares from the fifth execution, asyncpg at once
            assert await db.fetch_val("SELECT :n + 1", {"n": n}) == n + 1
        # PgBouncer replaces its server connections once released (as after
        # server_lifetime, or a restart of PostgreSQL): the statement the driver
        # prepared is on none of them.
        admin(private_pgbouncer, "RECONNECT")
        with pytest.raises(ProgrammingError) as info:
            for n in range(6):
                await db.fetch_val("SELECT :n + 1", {"n": n})
    message = str(info.value)
    assert "does not exist" in message
    assert "PgBouncer" in message
    assert "prepared_statements=false" in message


#: A client process of its own: tasks alternating two queries of the same parameter
#: types, counting right answers, wrong answers and errors (with the advice they gave).
CLIENT = """
import asyncio, collections, json, sys
from dbaccess import Database

def failed(seen, exc):
    named = "prepared_statements=false" in str(exc)
    seen["error naming the option" if named else repr(exc)[:300]] += 1

async def main(url):
    seen = collections.Counter()
    db = Database(url, min_size=0, max_size=10)
    async def task(k):
        for n in range(40):
            try:
                if k % 2:
                    right = await db.fetch_val("SELECT :a * 2", {"a": n}) == n * 2
                else:
                    right = await db.fetch_val("SELECT :a + 1000", {"a": n}) == n + 1000
                seen["right" if right else "wrong"] += 1
            except Exception as exc:  # at connect too: asyncpg's type introspection
                failed(seen, exc)
    async with db:
        await asyncio.gather(*(task(k) for k in range(10)))
    print(json.dumps(seen))

asyncio.run(main(sys.argv[1]))
"""


async def test_without_the_option_no_query_runs_another_ones_statement(
    misconfigured: str,
) -> None:
    # The drivers number their statements from 1 (asyncpg, per process) or 0 (psycopg,
    # per connection): two clients behind PgBouncer used the same names for different
    # queries, and one's statement answered the other's call (11-16% of the answers wrong,
    # without an error). dbaccess's names are its own: the mistake is an error instead.
    clients = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, misconfigured, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    seen: dict[str, int] = {}
    for client in clients:
        out, _ = await asyncio.wait_for(client.communicate(), 120)
        assert client.returncode == 0
        for what, count in json.loads(out).items():
            seen[what] = seen.get(what, 0) + count
    assert set(seen) <= {"right", "error naming the option"}, seen
    assert seen.get("right", 0) > 0
