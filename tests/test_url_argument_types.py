"""What ``Database(url)`` and ``DatabaseURL(url)`` accept as the URL: a str or a
DatabaseURL. Anything else is a TypeError, as in encode/databases, since it is an
argument of the wrong type rather than a URL with a mistake in it (ConfigurationError)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from dbaccess import ConfigurationError, Database, DatabaseURL

NOT_URLS: list[Any] = [
    123,
    None,
    b"sqlite:///:memory:",
    pathlib.Path("/tmp/app.db"),
    ["sqlite:///:memory:"],
    {"url": "sqlite:///:memory:"},
]


@pytest.mark.parametrize("value", NOT_URLS, ids=lambda value: type(value).__name__)
def test_database_of_a_non_string_url_raises_type_error(value: Any) -> None:
    with pytest.raises(TypeError) as raised:
        Database(value)
    message = str(raised.value)
    assert message == (
        "a database URL must be a str, a DatabaseURL or a SQLAlchemy URL, "
        f"not {type(value).__qualname__}"
    )
    assert not isinstance(raised.value, ConfigurationError)


@pytest.mark.parametrize("value", NOT_URLS, ids=lambda value: type(value).__name__)
def test_database_url_of_a_non_string_raises_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=f"not {type(value).__qualname__}$"):
        DatabaseURL(value)


def test_the_message_names_the_type_never_the_value() -> None:
    class Secret:
        def __repr__(self) -> str:
            return "postgresql://user:hunter2@host/db"

        __str__ = __repr__

    with pytest.raises(TypeError) as raised:
        Database(Secret())  # type: ignore[arg-type]
    assert "hunter2" not in str(raised.value)
    assert "Secret" in str(raised.value)


def test_a_str_and_a_database_url_still_work(database_url: str) -> None:
    from_str = Database(database_url)
    from_url = Database(DatabaseURL(database_url))
    assert from_str.url == from_url.url == database_url
    assert type(from_url.url) is DatabaseURL
    assert str(from_url.url) == database_url


def test_a_str_subclass_is_read_as_its_text() -> None:
    class Named(str):
        pass

    url = DatabaseURL(Named("sqlite:///:memory:"))
    assert type(str(url)) is str
    assert url == "sqlite:///:memory:"


async def test_a_database_url_object_connects(database_url: str) -> None:
    async with Database(DatabaseURL(database_url)) as database:
        assert await database.fetch_val("SELECT 1") == 1


def test_a_malformed_string_is_still_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="malformed database URL"):
        Database("no scheme here")
