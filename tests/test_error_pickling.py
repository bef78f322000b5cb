"""dbaccess errors pickle and unpickle as the same class (the classes built at run time,
that are both dbaccess's and the driver's, included), with their message, attributes and
``.orig``: they cross process boundaries (pytest-xdist, multiprocessing, task queues)."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from dbaccess import (
    Database,
    DatabaseError,
    DatabaseURL,
    DBAccessError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from dbaccess.errors import translate

from .conftest import users


async def raised(call: Callable[[], Awaitable[Any]]) -> DBAccessError:
    try:
        await call()
    except DBAccessError as exc:
        return exc
    pytest.fail("the call raised no dbaccess error")


async def real_errors(db: Database, database_url: str) -> list[DBAccessError]:
    """Errors as the backend raises them: bad SQL, a unique key, a server not there."""
    await db.execute(users.insert().values(id=1, name="ann"))
    unreachable = Database(DatabaseURL(database_url).replace(port=1))  # nothing listens
    return [
        await raised(lambda: db.fetch_all("SELECT * FROM no_such_table")),
        await raised(lambda: db.fetch_all("SELEC 1")),
        await raised(lambda: db.execute(users.insert().values(id=2, name="ann"))),
        await raised(lambda: db.fetch_val("SELECT :n", {"m": 1})),  # ours alone, no .orig
        *([await raised(unreachable.connect)] if "sqlite" not in database_url else []),
    ]


def same_error(copy: BaseException, error: BaseException) -> None:
    assert type(copy) is type(error)
    assert copy.args == error.args and str(copy) == str(error)
    assert str(copy)  # never an empty message
    assert isinstance(copy, DBAccessError)
    orig = getattr(error, "orig", None)
    if orig is None:
        assert getattr(copy, "orig", None) is None
    else:
        assert isinstance(copy, type(orig))  # still the driver's class too
        assert type(copy.orig) is type(orig)
        assert copy.orig.args == orig.args
    # The driver's details (asyncpg's sqlstate, sqlite3's error code...) survive; its
    # private internals (psycopg's _info, a server result) need not.
    for name, value in vars(error).items():
        if name != "orig" and not name.startswith("_"):
            assert getattr(copy, name) == value, name


async def test_real_errors_survive_a_pickle_round_trip(db: Database, database_url: str) -> None:
    errors = await real_errors(db, database_url)
    kinds = {type(error).__mro__[1] if error.orig else type(error) for error in errors}
    assert ProgrammingError in kinds and IntegrityError in kinds
    for error in errors:
        # From protocol 3: protocol 2 maps some builtin names to Python 2's
        # (ConnectionRefusedError comes back an OSError, ours or not).
        for protocol in range(3, pickle.HIGHEST_PROTOCOL + 1):
            same_error(pickle.loads(pickle.dumps(error, protocol)), error)


async def test_the_server_being_down_pickles_as_operational_error(
    database_url: str, dialect: str
) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite has no server to be down")
    db = Database(DatabaseURL(database_url).replace(port=1))  # nothing listens on port 1
    error = await raised(db.connect)
    assert isinstance(error, OperationalError)
    same_error(pickle.loads(pickle.dumps(error)), error)


def _reraise(error: BaseException) -> None:
    """Raise, in a worker process, an error that came from the parent."""
    raise error


async def test_errors_cross_a_process_pool(db: Database, database_url: str) -> None:
    errors = await real_errors(db, database_url)
    # spawn: a fresh interpreter, which imports dbaccess and the driver to unpickle.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_reraise, error) for error in errors]
        for future, error in zip(futures, errors):
            copy = future.exception(timeout=60)
            assert copy is not None
            same_error(copy, error)


class _Handle:
    """Something a driver error may carry that cannot be pickled (a socket, a lock)."""

    def __reduce__(self) -> Any:
        raise TypeError("a handle cannot be pickled")


class _DriverError(Exception):
    pass


def test_what_does_not_pickle_is_left_behind() -> None:
    orig = _DriverError("connection reset")
    orig.handle = _Handle()  # type: ignore[attr-defined]
    orig.code = 1234  # type: ignore[attr-defined]
    error = translate(orig, OperationalError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and isinstance(copy, _DriverError)
    assert str(copy) == "connection reset" and copy.code == 1234  # type: ignore[attr-defined]
    assert not hasattr(copy, "handle")
    # .orig itself holds the handle: it stays behind, the rest does not.
    assert copy.orig is None
    assert isinstance(copy, DatabaseError)
