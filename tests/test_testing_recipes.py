"""The testing recipes of docs/testing.md, run on every backend (the page includes them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseURL, migrate

from .conftest import notes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def test_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """The backend's URL with the notes table; SQLite in a file, which outlives a pool."""
    url = database_url
    if DatabaseURL(url).dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    async with Database(url) as db:
        await db.execute(sa.schema.CreateTable(notes, if_not_exists=True))
    yield url
    async with Database(url) as db:
        await db.execute(sa.schema.DropTable(notes, if_exists=True))


# --8<-- [start:fixtures]
@pytest.fixture
async def rolled_back(test_url: str) -> AsyncIterator[Database]:
    """A connected Database whose every change is undone when the test ends."""
    async with Database(test_url, force_rollback=True) as db:
        yield db


@pytest.fixture
async def migrated_url(tmp_path: Path) -> str:
    """The URL of a fresh SQLite file upgraded to the newest Alembic revision."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    await migrate(url, config=ROOT / "migrations-example" / "alembic.ini")
    return url


# --8<-- [end:fixtures]


# --8<-- [start:tests]
async def test_changes_are_rolled_back(rolled_back: Database, test_url: str) -> None:
    await rolled_back.execute(notes.insert(), {"text": "only in this test"})
    assert await rolled_back.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1
    await rolled_back.disconnect()  # what the fixture does when the test ends
    async with Database(test_url) as db:
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0


async def test_the_migrated_schema_is_there(migrated_url: str) -> None:
    async with Database(migrated_url) as db:
        await db.execute("INSERT INTO members (name) VALUES ('ann')")
        assert await db.fetch_val("SELECT name FROM members") == "ann"


# --8<-- [end:tests]
