"""The pytest plugin (dbaccess.testing.pytest_plugin), run on projects of its own with
pytester on every backend: the test database is created and dropped (also a crashed
run's leftover), every test starts clean whatever the code under test commits, an ASGI
app commits from concurrent requests, pytest-xdist workers get a database each."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseURL
from dbaccess.testing import (
    create_database,
    database_exists,
    drop_database,
    list_tables,
    worker_database_url,
)

pytest_plugins = ["pytester"]

# Imported here, before any inner run: pytester removes the modules an inline run
# imported, and importing them again breaks some (asyncpg's compiled modules crash;
# SQLAlchemy's dialects warn that they register their functions a second time).
for _module in (
    "sqlalchemy.dialects.mysql",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.ext.asyncio",
    "asyncpg",
    "aiomysql",
    "asyncmy",
    "aiosqlite",
    "greenlet",
    "alembic.command",
    "starlette.applications",
    "httpx",
):
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)

#: The inner runs' options: no cache files, and no hypothesis plugin, whose end-of-run
#: summary costs seconds per run and which no inner test uses.
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

# The project under test: its tables, as an application declares them.
SCHEMA = """
    import sqlalchemy as sa

    metadata = sa.MetaData()
    users = sa.Table(
        "plugin_users", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    notes = sa.Table(
        "plugin_notes", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("plugin_users.id")),
        sa.Column("text", sa.String(100), nullable=False),
    )

    async def count(database, table=notes):
        return await database.fetch_val(sa.select(sa.func.count()).select_from(table))
"""


def make_project(
    pytester: pytest.Pytester,
    server_url: str,
    *,
    schema: str = "schema:metadata",
    ini: str = "",
    **files: str,
) -> None:
    """A project whose pytest configuration names the server and the schema."""
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "pythonpath = .\n"
        "filterwarnings =\n"
        "    error\n"
        # aiomysql 0.2.0 raises MariaDB's note on Alembic's named primary key as a warning.
        "    ignore:Name '.*' ignored for PRIMARY key:Warning\n"
        f"dbaccess_url = {server_url}\n"
        f"dbaccess_schema = {schema}\n" + textwrap.dedent(ini)
    )
    pytester.makepyfile(schema=textwrap.dedent(SCHEMA))
    pytester.makepyfile(**{name: textwrap.dedent(text) for name, text in files.items()})


def run(pytester: pytest.Pytester, *args: str, passed: int) -> pytest.RunResult:
    result = pytester.runpytest(*INNER, *args)
    result.assert_outcomes(passed=passed)
    return result


def seen_urls(pytester: pytest.Pytester) -> list[str]:
    """The test database URLs the inner tests wrote down (one file per worker)."""
    return sorted(path.read_text() for path in pytester.path.glob("seen-*.txt"))


SEE_URL = """
    from pathlib import Path
    import os

    def write_down(url):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (Path(__file__).parent / f"seen-{worker}.txt").write_text(str(url))
"""


def test_creates_the_schema_and_drops_the_database(
    pytester: pytest.Pytester, database_url: str
) -> None:
    make_project(
        pytester,
        database_url,
        seen=SEE_URL,
        test_app="""
            from dbaccess import Database
            from dbaccess.testing import database_exists, list_tables
            from seen import write_down

            async def test_the_database_exists_with_the_schema(dbaccess_test_url):
                write_down(dbaccess_test_url)
                assert await database_exists(dbaccess_test_url)
                async with Database(dbaccess_test_url) as database:
                    assert await list_tables(database) == ["plugin_notes", "plugin_users"]
        """,
    )
    run(pytester, passed=1)
    [url] = seen_urls(pytester)
    server = DatabaseURL(database_url)
    if server.dialect == "sqlite":
        assert url.startswith("sqlite:///") and url.endswith("/test.db")
    else:
        assert DatabaseURL(url).database == f"{server.database}_test"
    assert not asyncio.run(database_exists(url))


ISOLATION = """
    import pytest
    import sqlalchemy as sa
    from schema import count, notes, users

    async def test_commits_in_every_way(dbaccess_database):
        db = dbaccess_database
        await db.execute(users.insert(), {"id": 1, "name": "ann"})
        async with db.transaction():
            await db.execute(notes.insert(), {"user_id": 1, "text": "committed"})
            with pytest.raises(LookupError):
                async with db.transaction():  # nested: a savepoint, rolled back alone
                    await db.execute(notes.insert(), {"user_id": 1, "text": "undone"})
                    raise LookupError
        async with db.connection() as connection:
            async with connection.transaction():
                await connection.execute(notes.insert(), {"user_id": 1, "text": "block"})
        transaction = await db.transaction()
        await db.execute(notes.insert(), {"user_id": 1, "text": "by hand"})
        await transaction.commit()
        texts = {row.text for row in await db.fetch_all(sa.select(notes.c.text))}
        assert texts == {"committed", "block", "by hand"}

    async def test_starts_clean(dbaccess_database):
        assert await count(dbaccess_database) == 0
        assert await count(dbaccess_database, users) == 0
        # The id 1 is free again: the row of the test before was rolled back.
        await dbaccess_database.execute(users.insert(), {"id": 1, "name": "bob"})
"""


@pytest.mark.parametrize("loop_scope", ["function", "module", "session"])
def test_each_test_starts_clean(
    pytester: pytest.Pytester, database_url: str, loop_scope: str
) -> None:
    # pytest-asyncio's loop scopes: the fixture follows the project's default.
    make_project(
        pytester,
        database_url,
        ini=f"asyncio_default_test_loop_scope = {loop_scope}\n",
        test_isolation=ISOLATION,
    )
    result = pytester.runpytest(*INNER, "-o", f"asyncio_default_fixture_loop_scope={loop_scope}")
    result.assert_outcomes(passed=2)


def test_ddl_is_rolled_back_where_the_backend_can(
    pytester: pytest.Pytester, database_url: str, dialect: str
) -> None:
    if dialect == "mysql":
        pytest.skip("MySQL/MariaDB commit DDL implicitly: dbaccess_truncate is the way there")
    make_project(
        pytester,
        database_url,
        test_ddl="""
            from dbaccess.testing import list_tables

            async def test_creates_a_table(dbaccess_database):
                await dbaccess_database.execute("CREATE TABLE plugin_extra (id INTEGER)")
                assert "plugin_extra" in await list_tables(dbaccess_database)

            async def test_it_is_gone(dbaccess_database):
                assert "plugin_extra" not in await list_tables(dbaccess_database)
        """,
    )
    run(pytester, passed=2)


ASGI_APP = """
    import asyncio

    import sqlalchemy as sa
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from schema import notes

    def make_app(database):
        async def add(request: Request) -> JSONResponse:
            body = await request.json()
            try:
                async with database.transaction():
                    await database.execute(notes.insert(), {"text": body["text"]})
                    await asyncio.sleep(0)  # let the other requests run meanwhile
                    async with database.transaction():
                        await database.execute(notes.insert(), {"text": body["text"] + "+"})
                    if body["fail"]:
                        raise LookupError("refused")
            except LookupError:
                return JSONResponse({"ok": False}, status_code=409)
            return JSONResponse({"ok": True}, status_code=201)

        async def texts(request: Request) -> JSONResponse:
            rows = await database.fetch_all(sa.select(notes.c.text))
            return JSONResponse(sorted(row.text for row in rows))

        return Starlette(routes=[Route("/notes", add, methods=["POST"]), Route("/notes", texts)])
"""


def test_an_asgi_app_commits_from_concurrent_requests(
    pytester: pytest.Pytester, database_url: str
) -> None:
    make_project(
        pytester,
        database_url,
        app=ASGI_APP,
        test_requests="""
            import asyncio

            import httpx
            import pytest

            from app import make_app
            from schema import count

            @pytest.fixture
            async def client(dbaccess_database):
                transport = httpx.ASGITransport(app=make_app(dbaccess_database))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    yield client

            async def test_concurrent_requests(client):
                responses = await asyncio.gather(
                    *(
                        client.post("/notes", json={"text": f"n{i:02}", "fail": i % 4 == 0})
                        for i in range(20)
                    )
                )
                assert sorted(r.status_code for r in responses) == [201] * 15 + [409] * 5
                texts = (await client.get("/notes")).json()
                expected = sorted(
                    t for i in range(20) if i % 4 for t in (f"n{i:02}", f"n{i:02}+")
                )
                assert texts == expected

            async def test_the_next_test_sees_none_of_it(client, dbaccess_database):
                assert (await client.get("/notes")).json() == []
                assert await count(dbaccess_database) == 0
        """,
    )
    run(pytester, passed=2)


def test_a_database_per_xdist_worker(pytester: pytest.Pytester, database_url: str) -> None:
    tests = {
        f"test_worker_{n}": """
            import asyncio
            from schema import count, notes
            from seen import write_down

            async def test_commits(dbaccess_database, dbaccess_test_url):
                write_down(dbaccess_test_url)
                assert await count(dbaccess_database) == 0
                async with dbaccess_database.transaction():
                    await dbaccess_database.execute(notes.insert(), {"text": "x"})
                await asyncio.sleep(0.2)  # keep this worker busy: the other takes the next
                assert await count(dbaccess_database) == 1
        """
        for n in range(4)
    }
    make_project(pytester, database_url, seen=SEE_URL, **tests)
    result = pytester.runpytest_subprocess(*INNER, "-n", "2")
    result.assert_outcomes(passed=4)
    urls = seen_urls(pytester)
    assert len(urls) == 2 and urls[0] != urls[1]
    server = DatabaseURL(database_url)
    if server.dialect != "sqlite":
        names = sorted(DatabaseURL(url).database for url in urls)
        assert names == [f"{server.database}_test_gw0", f"{server.database}_test_gw1"]
    assert not any(asyncio.run(database_exists(url)) for url in urls)


async def test_create_database_drops_a_leftover(database_url: str, tmp_path: Path) -> None:
    url = worker_database_url(database_url, worker="leftover", directory=tmp_path)
    await create_database(url)
    async with Database(url) as leftover:
        await leftover.execute("CREATE TABLE plugin_leftover (id INTEGER)")
        # Still connected, as a crashed run's session may be: dropping it ends it.
        await create_database(url)
    async with Database(url) as fresh:
        assert await list_tables(fresh) == []
    await drop_database(url)
    assert not await database_exists(url)


def test_a_crashed_runs_database_is_replaced(
    pytester: pytest.Pytester, database_url: str, dialect: str
) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite test databases are files in a new temporary directory per run")
    url = worker_database_url(database_url)

    async def crash_leftover() -> None:
        await create_database(url)
        async with Database(url) as leftover:
            await leftover.execute("CREATE TABLE plugin_leftover (id INTEGER)")

    asyncio.run(crash_leftover())
    make_project(
        pytester,
        database_url,
        test_fresh="""
            from dbaccess.testing import list_tables

            async def test_fresh(dbaccess_database):
                assert await list_tables(dbaccess_database) == ["plugin_notes", "plugin_users"]
        """,
    )
    run(pytester, passed=1)
    assert not asyncio.run(database_exists(url))


def test_truncate_marker_empties_the_tables(pytester: pytest.Pytester, database_url: str) -> None:
    make_project(
        pytester,
        database_url,
        test_truncate="""
            import pytest
            from schema import count, notes, users

            async def test_rolled_back_uses_up_ids(dbaccess_database):
                await dbaccess_database.execute(users.insert(), {"name": "zed"})

            @pytest.mark.dbaccess_truncate
            async def test_commits_for_real(dbaccess_database, dbaccess_test_url):
                from dbaccess import Database

                user_id = await dbaccess_database.execute(users.insert(), {"name": "ann"})
                await dbaccess_database.execute(notes.insert(), {"user_id": user_id, "text": "a"})
                async with Database(dbaccess_test_url) as other:  # another session sees it
                    assert await count(other) == 1

            @pytest.mark.dbaccess_truncate("plugin_notes", "plugin_users")
            async def test_starts_empty_with_ids_from_one(dbaccess_database):
                assert await count(dbaccess_database) == 0
                assert await dbaccess_database.execute(users.insert(), {"name": "bob"}) == 1
                async with dbaccess_database.transaction():
                    await dbaccess_database.execute(notes.insert(), {"user_id": 1, "text": "b"})

            async def test_rolled_back_again(dbaccess_database):
                assert await count(dbaccess_database, users) == 0
        """,
    )
    run(pytester, passed=4)


def test_schema_from_a_callable(pytester: pytest.Pytester, database_url: str) -> None:
    make_project(
        pytester,
        database_url,
        schema="builder:build",
        builder="""
            from schema import metadata
            from dbaccess.testing import create_tables

            async def build(database):
                await create_tables(database, metadata)
                await database.execute("CREATE TABLE plugin_seeded (id INTEGER)")
                await database.execute("INSERT INTO plugin_seeded (id) VALUES (7)")
        """,
        test_seeded="""
            async def test_seeded(dbaccess_database):
                assert await dbaccess_database.fetch_val("SELECT id FROM plugin_seeded") == 7
        """,
    )
    run(pytester, passed=1)


def test_schema_from_alembic_migrations(pytester: pytest.Pytester, database_url: str) -> None:
    make_project(
        pytester,
        database_url,
        schema="",
        ini="dbaccess_alembic_ini = alembic.ini\n",
        test_migrated="""
            from dbaccess.testing import list_tables

            async def test_migrated(dbaccess_database):
                assert await list_tables(dbaccess_database) == ["migrated_notes"]
                await dbaccess_database.execute("INSERT INTO migrated_notes (text) VALUES ('a')")
                version = "SELECT version_num FROM alembic_version"
                assert await dbaccess_database.fetch_val(version) == "0001"
        """,
    )
    pytester.makefile(".ini", alembic="[alembic]\nscript_location = %(here)s/migrations\n")
    migrations = pytester.mkpydir("migrations")
    (migrations / "env.py").write_text(
        textwrap.dedent(
            """
            # As Alembic's async template has it.
            import asyncio

            from alembic import context
            from sqlalchemy import pool
            from sqlalchemy.ext.asyncio import create_async_engine

            def migrate(connection):
                context.configure(connection=connection, target_metadata=None)
                with context.begin_transaction():
                    context.run_migrations()

            async def main():
                url = context.config.get_main_option("sqlalchemy.url")
                engine = create_async_engine(url, poolclass=pool.NullPool)
                async with engine.connect() as connection:
                    await connection.run_sync(migrate)
                await engine.dispose()

            asyncio.run(main())
            """
        )
    )
    (migrations / "versions").mkdir()
    (migrations / "versions" / "0001_notes.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op

            revision = "0001"
            down_revision = None

            def upgrade():
                op.create_table(
                    "migrated_notes",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("text", sa.String(100)),
                )

            def downgrade():
                op.drop_table("migrated_notes")
            """
        )
    )
    run(pytester, passed=1)


def test_inert_unless_asked(pytester: pytest.Pytester) -> None:
    # A project that knows nothing of dbaccess (its ini only keeps pytest-asyncio quiet).
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(*INNER, "--strict-config", "--strict-markers")
    result.assert_outcomes(passed=1)


def test_a_missing_server_url_says_how_to_set_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBACCESS_TEST_DATABASE_URL", raising=False)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_needs="async def test_needs(dbaccess_database):\n    pass\n")
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*no test database server configured: pass --dbaccess-url=URL, set "
            "DBACCESS_TEST_DATABASE_URL, or set dbaccess_url*"
        ]
    )


def test_the_url_from_the_command_line_and_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "dbaccess_url = postgresql://nowhere/x\n"
    )
    pytester.makepyfile(test_url="def test_url(dbaccess_url):\n    print('URL=' + dbaccess_url)\n")
    monkeypatch.setenv("DBACCESS_TEST_DATABASE_URL", "sqlite:///from-env.db")
    pytester.runpytest(*INNER, "-s").stdout.fnmatch_lines(["*URL=sqlite:///from-env.db*"])
    pytester.runpytest(
        *INNER, "-s", "--dbaccess-url=sqlite:///from-option.db"
    ).stdout.fnmatch_lines(["*URL=sqlite:///from-option.db*"])
    monkeypatch.delenv("DBACCESS_TEST_DATABASE_URL")
    pytester.runpytest(*INNER, "-s").stdout.fnmatch_lines(["*URL=postgresql://nowhere/x*"])


def test_a_bad_schema_setting_is_named(pytester: pytest.Pytester, tmp_path: Path) -> None:
    make_project(
        pytester,
        f"sqlite:///{tmp_path / 'x.db'}",
        schema="schema:no_such_thing",
        test_bad="async def test_bad(dbaccess_database):\n    pass\n",
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*dbaccess_schema = 'schema:no_such_thing': 'schema' has no attribute 'no_such_thing'*"]
    )


def test_no_ddl_for_an_empty_metadata() -> None:
    from dbaccess.testing.schema import _ddl_for

    assert _ddl_for(sa.MetaData(), "postgresql") == []
