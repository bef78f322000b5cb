"""The README's pool hooks example, run as it is written (on PostgreSQL: it uses asyncpg)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dbaccess import DatabaseURL

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(marker: str) -> str:
    """The README's Python code block that contains ``marker``."""
    text = README.read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"expected one README example with {marker!r}"
    return found[0]


async def test_readme_pool_hooks_example(database_url: str, dialect: str) -> None:
    if dialect != "postgresql" or DatabaseURL(database_url).driver == "psycopg":
        pytest.skip("the example registers an asyncpg type codec")
    code = readme_example("async def init(conn)")
    assert '"postgresql://localhost/app"' in code
    namespace: dict[str, Any] = {}
    exec(code.replace('"postgresql://localhost/app"', repr(database_url)), namespace)
    database = namespace["database"]
    async with database:
        value = await database.fetch_val("SELECT 1.5::numeric")
        assert isinstance(value, float)  # init's codec
        assert value == 1.5
        assert await database.fetch_val("SHOW statement_timeout") == "5s"  # setup's setting
