"""dbaccess.testing.worker_database_url: the test database's name per pytest-xdist
worker, and a clear error, without the password, for a name it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbaccess import ConfigurationError, DatabaseURL
from dbaccess.testing import worker_database_url


def test_one_name_per_worker(database_url: str, dialect: str, tmp_path: Path) -> None:
    server = DatabaseURL(database_url)
    main = worker_database_url(server, worker="", directory=tmp_path)
    gw1 = worker_database_url(server, worker="gw1", directory=tmp_path)
    if dialect == "sqlite":
        assert (main.database, gw1.database) == (
            str(tmp_path / "test.db"),
            str(tmp_path / "test_gw1.db"),
        )
    else:
        assert (main.database, gw1.database) == (
            f"{server.database}_test",
            f"{server.database}_test_gw1",
        )
        assert main.replace(database=server.database) == server  # nothing else changes


def test_a_bad_name_is_refused_without_the_password(
    database_url: str, dialect: str, secret_password: str
) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite test databases are files named by dbaccess, not by the URL")
    url = DatabaseURL(database_url).replace(password=secret_password, database="app-prod")
    with pytest.raises(ConfigurationError) as caught:
        worker_database_url(url, worker="gw0")
    message = str(caught.value)
    assert "'app-prod_test_gw0'" in message and "letters, digits and underscores" in message
    assert secret_password not in message
