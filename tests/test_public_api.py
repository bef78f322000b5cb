"""The public surface: what `dbaccess` exports is exactly what `__all__` lists."""

from __future__ import annotations

import inspect

import dbaccess


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(dbaccess).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert sorted(dbaccess.__all__) == dbaccess.__all__
    assert set(dbaccess.__all__) == public


def test_every_error_descends_from_the_root() -> None:
    errors = [getattr(dbaccess, name) for name in dbaccess.__all__ if name.endswith("Error")]
    assert len(errors) == 10
    assert all(issubclass(error, dbaccess.DBAccessError) for error in errors)
    database_errors = {"DataError", "IntegrityError", "InternalError", "NotSupportedError"}
    database_errors |= {"OperationalError", "ProgrammingError"}
    for name in database_errors:
        assert issubclass(getattr(dbaccess, name), dbaccess.DatabaseError)


def test_the_database_api_of_encode_databases_is_present() -> None:
    methods = [
        "connect",
        "disconnect",
        "fetch_all",
        "fetch_one",
        "fetch_val",
        "execute",
        "execute_many",
        "iterate",
        "connection",
        "transaction",
        "force_rollback",
    ]
    for name in methods:
        assert callable(getattr(dbaccess.Database, name)), name
    connection_methods = ["fetch_all", "fetch_one", "fetch_val", "execute", "execute_many"]
    for name in [*connection_methods, "iterate", "transaction"]:
        assert callable(getattr(dbaccess.Connection, name)), name
    for name in ["start", "commit", "rollback"]:
        assert callable(getattr(dbaccess.Transaction, name)), name
