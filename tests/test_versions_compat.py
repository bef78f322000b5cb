"""What must work the same on every SQLAlchemy and driver version pyproject.toml admits.

CI runs the whole suite on the lowest versions too (ci/lowest-constraints.txt); these
tests also run, on the newest asyncpg, the paths dbaccess takes on older ones.
"""

from __future__ import annotations

import decimal

import pytest
import sqlalchemy as sa

from dbaccess import Database, ProgrammingError
from dbaccess.backends import asyncpg as asyncpg_backend

measures = sa.Table(
    "dbaccess_measures",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ratio", sa.Float),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("ratio_as_decimal", sa.Float(asdecimal=True)),
    sa.Column("amount_as_float", sa.Numeric(10, 2, asdecimal=False)),
)


async def test_float_and_numeric_columns_read_back_typed(database: Database) -> None:
    await database.execute(sa.schema.DropTable(measures, if_exists=True))
    await database.execute(sa.schema.CreateTable(measures))
    try:
        values = {"ratio": 0.5, "amount": decimal.Decimal("12.34")}
        await database.execute(
            measures.insert(),
            {**values, "ratio_as_decimal": 0.25, "amount_as_float": decimal.Decimal("1.50")},
        )
        row = await database.fetch_one(sa.select(measures))
        assert row is not None
        assert (row.ratio, row.amount) == (0.5, decimal.Decimal("12.34"))
        assert type(row.ratio) is float and type(row.amount) is decimal.Decimal
        assert row.ratio_as_decimal == decimal.Decimal("0.25")
        assert row.amount_as_float == 1.5 and type(row.amount_as_float) is float
    finally:
        await database.execute(sa.schema.DropTable(measures, if_exists=True))


SERIES = "SELECT n FROM (VALUES (1), (2), (3)) AS t(n) WHERE n >= :low ORDER BY n"


@pytest.fixture(params=["asyncpg's own", "before asyncpg 0.32"])
async def pg(
    request: pytest.FixtureRequest, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Database:
    if not database_url.startswith("postgres"):
        pytest.skip("asyncpg's cursors: PostgreSQL only")
    if request.param == "before asyncpg 0.32":
        monkeypatch.setattr(asyncpg_backend, "_CURSOR_IN_ANY_TRANSACTION", False)
    return Database(database_url, min_size=1, max_size=2)


async def test_iterate_outside_a_transaction(pg: Database) -> None:
    async with pg:
        assert [row.n async for row in pg.iterate(SERIES, {"low": 2})] == [2, 3]
        assert await pg.fetch_val("SELECT 1") == 1  # the connection came back clean


async def test_iterate_inside_a_transaction_and_early_exit(pg: Database) -> None:
    async with pg, pg.transaction():
        async for row in pg.iterate(SERIES, {"low": 1}):
            assert row.n == 1
            break  # leaves the cursor early: it is closed, its name free again
        assert [row.n async for row in pg.iterate(SERIES, {"low": 2})] == [2, 3]
        assert await pg.fetch_val("SELECT 3") == 3


async def test_a_failing_statement_in_the_loop_body_raises_its_own_error(pg: Database) -> None:
    async with pg:
        with pytest.raises(ProgrammingError, match="no_such_table"):
            async with pg.transaction():
                async for _row in pg.iterate(SERIES, {"low": 1}):
                    await pg.fetch_all("SELECT * FROM no_such_table")
        assert await pg.fetch_val("SELECT 2") == 2
