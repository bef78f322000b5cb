"""The dbaccess pytest plugin (entry point ``dbaccess``; ``-p no:dbaccess`` turns it off).

It only adds options, a marker and fixtures whose names start with ``dbaccess_``: a run
that asks for none of them is not affected. ``dbaccess_test_url`` (session) creates a
throw-away database on the configured server and builds its schema; ``dbaccess_database``
(per test) is a connected ``Database`` on it whose changes are all rolled back after the
test, or, under ``@pytest.mark.dbaccess_truncate``, emptied from the tables.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from dbaccess import Database, DatabaseURL

try:
    import pytest_asyncio
except ImportError:  # the fixtures that need it say so when a test asks for them
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = [
    "URL_ENVIRONMENT_VARIABLE",
    "dbaccess_database",
    "dbaccess_schema",
    "dbaccess_test_url",
    "dbaccess_url",
]

#: The environment variable naming the test server (after --dbaccess-url, before the ini).
URL_ENVIRONMENT_VARIABLE = "DBACCESS_TEST_DATABASE_URL"

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dbaccess", "dbaccess test databases")
    group.addoption(
        "--dbaccess-url",
        dest="dbaccess_url",
        default=None,
        metavar="URL",
        help="the database server to create the throw-away test database on "
        f"(overrides ${URL_ENVIRONMENT_VARIABLE} and the dbaccess_url ini option)",
    )
    parser.addini(
        "dbaccess_url",
        "the database server to create the throw-away test database on, e.g. "
        "postgresql://postgres@localhost/app (the test database is app_test)",
    )
    parser.addini(
        "dbaccess_schema",
        "'module:attribute': a sqlalchemy MetaData whose tables the test database gets, "
        "or a callable given the test Database (may be async)",
    )
    parser.addini(
        "dbaccess_alembic_ini",
        "path of an alembic.ini (relative to the rootdir) whose migrations "
        "(upgrade head) build the test database",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dbaccess_truncate(*tables): dbaccess_database commits for real in this test and "
        "empties the tables before and after (the given ones, or all), instead of rolling back",
    )


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on an event loop of its own, in another thread, so
    that it meets neither the loops of pytest-asyncio (whatever their scope) nor an
    Alembic env.py that starts its own."""
    with ThreadPoolExecutor(1, thread_name_prefix="dbaccess-test-database") as executor:
        return executor.submit(asyncio.run, coroutine).result()


def _load(spec: str) -> Any:
    """The object a "module:attribute" string names."""
    from dbaccess import ConfigurationError

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"dbaccess_schema = {spec!r}: expected 'module:attribute', e.g. 'app.models:metadata'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"dbaccess_schema = {spec!r}: cannot import {module_name!r} ({exc}); "
            "is its directory on sys.path (pytest's pythonpath ini option)?"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"dbaccess_schema = {spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    return target


@pytest.fixture(scope="session")
def dbaccess_url(request: pytest.FixtureRequest) -> str:
    """The test server's URL: --dbaccess-url, $DBACCESS_TEST_DATABASE_URL or the ini's."""
    configured = (
        request.config.getoption("dbaccess_url")
        or os.environ.get(URL_ENVIRONMENT_VARIABLE)
        or request.config.getini("dbaccess_url")
    )
    if not configured:
        pytest.fail(
            "dbaccess: no test database server configured: pass --dbaccess-url=URL, set "
            f"{URL_ENVIRONMENT_VARIABLE}, or set dbaccess_url in the pytest configuration",
            pytrace=False,
        )
    return str(configured)


@pytest.fixture(scope="session")
def dbaccess_schema(request: pytest.FixtureRequest) -> Any:
    """What builds the test database's schema: the dbaccess_schema ini's object, or None.

    Override it to return a ``MetaData`` or a callable taking the test ``Database``.
    """
    spec = request.config.getini("dbaccess_schema")
    return _load(str(spec)) if spec else None


async def _build(url: DatabaseURL, schema: Any) -> None:
    from dbaccess import Database
    from dbaccess.testing import run_schema

    async with Database(url) as database:
        await run_schema(database, schema)


@pytest.fixture(scope="session")
def dbaccess_test_url(
    request: pytest.FixtureRequest,
    dbaccess_url: str,
    dbaccess_schema: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DatabaseURL]:
    """Create this session's (and pytest-xdist worker's) test database, build its
    schema, yield its URL, and drop it at the end."""
    from dbaccess.testing import create_database, drop_database, run_alembic
    from dbaccess.testing import worker_database_url as worker_url

    url = worker_url(dbaccess_url, directory=tmp_path_factory.mktemp("dbaccess"))
    alembic_ini = str(request.config.getini("dbaccess_alembic_ini") or "")
    _run(create_database(url))
    try:
        if alembic_ini:
            path = request.config.rootpath / Path(alembic_ini)
            with ThreadPoolExecutor(1, thread_name_prefix="dbaccess-alembic") as executor:
                executor.submit(run_alembic, url, path).result()
        if dbaccess_schema is not None:
            _run(_build(url, dbaccess_schema))
        yield url
    finally:
        _run(drop_database(url))


async def _database(request: pytest.FixtureRequest, url: DatabaseURL) -> AsyncIterator[Database]:
    from dbaccess import Database
    from dbaccess.testing import clear_tables

    marker = request.node.get_closest_marker("dbaccess_truncate")
    if marker is None:
        # One transaction around the whole test, rolled back at disconnect; the code
        # under test's transactions become savepoints of it, also from many tasks.
        async with Database(url, force_rollback=True) as database:
            yield database
        return
    tables = [str(table) for table in marker.args] or None
    async with Database(url) as database:
        # Before too: the tests rolled back before this one used up ids of the sequences
        # (PostgreSQL) and AUTO_INCREMENT counters (MySQL), which this restarts.
        await clear_tables(database, tables)
        try:
            yield database
        finally:
            await clear_tables(database, tables)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def dbaccess_database(
        request: pytest.FixtureRequest, dbaccess_test_url: DatabaseURL
    ) -> AsyncIterator[Database]:
        """A connected Database on the test database; every change is rolled back after
        the test (or, under ``dbaccess_truncate``, deleted from the tables before and after)."""
        async for database in _database(request, dbaccess_test_url):
            yield database

else:

    @pytest.fixture
    def dbaccess_database() -> None:
        """Needs pytest-asyncio: say so."""
        pytest.fail(
            "dbaccess_database is an async fixture and needs pytest-asyncio: "
            "pip install pytest-asyncio",
            pytrace=False,
        )
