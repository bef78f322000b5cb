"""fetch_all, fetch_one, fetch_val, execute, execute_result and execute_many, with Core
expressions and raw SQL, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dbaccess import (
    Database,
    DatabaseError,
    ExecuteResult,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from .conftest import notes, users


async def add_notes(db: Database, *texts: str) -> None:
    await db.execute_many(notes.insert(), [{"text": t, "completed": False} for t in texts])


async def test_fetch_all_core_and_raw_agree(db: Database) -> None:
    await add_notes(db, "a", "b", "c")
    core = await db.fetch_all(sa.select(notes.c.id, notes.c.text).order_by(notes.c.id))
    raw = await db.fetch_all("SELECT id, text FROM dbaccess_notes ORDER BY id")
    assert [r["text"] for r in core] == ["a", "b", "c"]
    assert [tuple(r.values()) for r in core] == [tuple(r.values()) for r in raw]


async def test_fetch_one_returns_first_row_or_none(db: Database) -> None:
    await add_notes(db, "first", "second")
    row = await db.fetch_one(sa.select(notes).order_by(notes.c.id))
    assert row is not None and row["text"] == "first"
    assert await db.fetch_one(sa.select(notes).where(notes.c.text == "missing")) is None
    assert await db.fetch_one("SELECT * FROM dbaccess_notes WHERE id < 0") is None


async def test_fetch_val_by_position_and_name(db: Database) -> None:
    await add_notes(db, "x", "y")
    query = "SELECT count(*) AS n, max(text) AS m FROM dbaccess_notes"
    assert await db.fetch_val(query) == 2
    assert await db.fetch_val(query, column=1) == "y"
    assert await db.fetch_val(query, column="m") == "y"
    assert await db.fetch_val("SELECT id FROM dbaccess_notes WHERE id < 0") is None


async def test_raw_sql_binds_named_parameters(db: Database) -> None:
    await add_notes(db, "alpha", "beta")
    rows = await db.fetch_all(
        "SELECT text FROM dbaccess_notes WHERE text = :t OR text = :u ORDER BY text",
        {"t": "beta", "u": "alpha"},
    )
    assert [r["text"] for r in rows] == ["alpha", "beta"]


async def test_core_select_with_bindparam_values(db: Database) -> None:
    await add_notes(db, "alpha", "beta")
    query = sa.select(notes.c.text).where(notes.c.text == sa.bindparam("wanted"))
    assert await db.fetch_val(query, {"wanted": "beta"}) == "beta"


@pytest.mark.parametrize("form", ["IN :ids", "IN (:ids)"])
async def test_raw_in_list_expands(db: Database, form: str) -> None:
    await add_notes(db, "a", "b", "c", "d")
    query = f"SELECT text FROM dbaccess_notes WHERE text {form} ORDER BY text"
    assert [r[0] for r in await db.fetch_all(query, {"ids": ["b", "d"]})] == ["b", "d"]
    assert [r[0] for r in await db.fetch_all(query, {"ids": ("a",)})] == ["a"]
    # Same SQL, another list length: compiled once, expanded per call.
    assert len(await db.fetch_all(query, {"ids": ["a", "b", "c"]})) == 3
    assert await db.fetch_all(query, {"ids": []}) == []
    negated = f"SELECT text FROM dbaccess_notes WHERE text NOT {form} ORDER BY text"
    assert [r[0] for r in await db.fetch_all(negated, {"ids": ["a", "b"]})] == ["c", "d"]
    assert len(await db.fetch_all(negated, {"ids": []})) == 4


async def test_core_in_list(db: Database) -> None:
    await add_notes(db, "a", "b", "c")
    query = sa.select(notes.c.text).where(notes.c.text.in_(["a", "c"])).order_by(notes.c.text)
    assert [r.text for r in await db.fetch_all(query)] == ["a", "c"]
    expanding = sa.select(notes.c.text).where(notes.c.text.in_(sa.bindparam("t", expanding=True)))
    assert len(await db.fetch_all(expanding, {"t": ["a", "b"]})) == 2
    assert await db.fetch_all(expanding, {"t": []}) == []


async def test_percent_and_escaped_colon_in_raw_sql(db: Database) -> None:
    await add_notes(db, "100% sure", "50:50")
    assert await db.fetch_val("SELECT text FROM dbaccess_notes WHERE text LIKE '%sure'") == (
        "100% sure"
    )
    like = await db.fetch_val("SELECT text FROM dbaccess_notes WHERE text LIKE :p", {"p": "%su%"})
    assert like == "100% sure"
    assert await db.fetch_val("SELECT '\\:literal'") == ":literal"


async def test_execute_returns_new_primary_key_for_core_insert(db: Database) -> None:
    first = await db.execute(notes.insert(), {"text": "one", "completed": True})
    second = await db.execute(notes.insert().values(text="two", completed=False))
    assert isinstance(first, int) and second == first + 1
    assert await db.fetch_val(sa.select(notes.c.text).where(notes.c.id == second)) == "two"


async def test_execute_returns_first_value_of_returning(db: Database) -> None:
    new_id = await db.execute(
        "INSERT INTO dbaccess_notes (text, completed) VALUES (:t, :c) RETURNING id",
        {"t": "r", "c": False},
    )
    assert await db.fetch_val("SELECT text FROM dbaccess_notes WHERE id = :i", {"i": new_id}) == "r"
    returned = await db.execute(
        notes.insert().returning(notes.c.text), {"text": "core", "completed": True}
    )
    assert returned == "core"


async def test_execute_returns_none_for_statements_without_result(db: Database) -> None:
    await add_notes(db, "a")
    assert await db.execute("UPDATE dbaccess_notes SET completed = :c", {"c": True}) is None
    assert await db.execute(notes.update().values(completed=False)) is None
    assert await db.execute(notes.delete().where(notes.c.text == "none")) is None


async def test_raw_insert_reports_lastrowid_where_the_database_does(
    db: Database, dialect: str
) -> None:
    result = await db.execute(
        "INSERT INTO dbaccess_notes (text, completed) VALUES ('r', :c)", {"c": False}
    )
    stored = await db.fetch_val("SELECT id FROM dbaccess_notes WHERE text = 'r'")
    # PostgreSQL reports no id for an INSERT without RETURNING (see README, "execute").
    assert result == (None if dialect == "postgresql" else stored)


async def test_execute_result_reports_rowcount_and_lastrowid(db: Database) -> None:
    inserted = await db.execute_result(notes.insert(), {"text": "a", "completed": False})
    assert isinstance(inserted, ExecuteResult)
    assert inserted.rowcount == 1
    assert inserted.lastrowid == await db.fetch_val(sa.select(notes.c.id))
    await add_notes(db, "b", "c")
    # Matched rows, also those already holding the new value (MySQL's FOUND_ROWS).
    updated = await db.execute_result(
        "UPDATE dbaccess_notes SET completed = :c WHERE text IN :t", {"c": False, "t": ["a", "b"]}
    )
    assert (updated.rowcount, updated.lastrowid, updated.rows) == (2, None, [])
    deleted = await db.execute_result(notes.delete())
    assert deleted.rowcount == 3


async def test_execute_result_returns_returning_rows(db: Database) -> None:
    result = await db.execute_result(
        notes.insert().returning(notes.c.id, notes.c.text), {"text": "ret", "completed": True}
    )
    assert result.rowcount == 1
    assert [(r.text, r[notes.c.id]) for r in result.rows] == [("ret", result.rows[0]["id"])]


async def test_ddl_statements(db: Database) -> None:
    table = sa.Table("dbaccess_ddl", sa.MetaData(), sa.Column("x", sa.Integer))
    await db.execute(sa.schema.CreateTable(table))
    try:
        await db.execute("INSERT INTO dbaccess_ddl (x) VALUES (1)")
        assert await db.fetch_val(sa.select(table.c.x)) == 1
    finally:
        await db.execute(sa.schema.DropTable(table))


async def test_execute_many_inserts_all_rows(db: Database) -> None:
    await db.execute_many(
        "INSERT INTO dbaccess_notes (text, completed) VALUES (:text, :completed)",
        [{"text": f"n{i}", "completed": i % 2 == 0} for i in range(250)],
    )
    assert await db.fetch_val("SELECT count(*) FROM dbaccess_notes") == 250
    done = await db.fetch_val(sa.select(sa.func.count()).where(notes.c.completed.is_(True)))
    assert done == 125


async def test_execute_many_rows_with_different_keys(db: Database) -> None:
    await db.execute_many(
        notes.insert(),
        [
            {"text": "explicit", "completed": True},
            {"text": "default"},  # `completed` takes the column default
            {"text": "explicit again", "completed": True},
        ],
    )
    rows = await db.fetch_all(sa.select(notes.c.text, notes.c.completed).order_by(notes.c.id))
    assert [(r.text, r.completed) for r in rows] == [
        ("explicit", True),
        ("default", False),
        ("explicit again", True),
    ]


async def test_python_side_column_defaults_apply(db: Database) -> None:
    calls: list[str] = []

    def stamp(context: object) -> str:
        calls.append("called")
        return f"stamped-{len(calls)}"

    table = sa.Table(
        "dbaccess_defaults",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scalar", sa.Integer, default=42),
        sa.Column("made", sa.String(20), default=stamp, onupdate=lambda: "updated"),
    )
    await db.execute(sa.schema.CreateTable(table))
    try:
        await db.execute(table.insert())
        await db.execute(table.insert(), {"scalar": 1, "made": "given"})
        await db.execute_many(table.insert(), [{}, {"scalar": 2}])
        rows = await db.fetch_all(sa.select(table.c.scalar, table.c.made).order_by(table.c.id))
        assert [tuple(r.values()) for r in rows] == [
            (42, "stamped-1"),
            (1, "given"),
            (42, "stamped-2"),
            (2, "stamped-3"),
        ]
        await db.execute(table.update().where(table.c.scalar == 1).values(scalar=3))
        assert await db.fetch_val(sa.select(table.c.made).where(table.c.scalar == 3)) == "updated"
    finally:
        await db.execute(sa.schema.DropTable(table))


# -- execute_many of a Core insert: rows bound straight from their keys ------------


async def test_execute_many_core_rows_of_the_same_keys_in_any_order(db: Database) -> None:
    rows: list[dict[str, object]] = [
        {"text": f"n{i}", "completed": i % 3 == 0}
        if i % 2
        else {"completed": False, "text": f"n{i}"}
        for i in range(300)
    ]
    await db.execute_many(notes.insert(), rows)
    found = await db.fetch_all(sa.select(notes.c.text, notes.c.completed).order_by(notes.c.id))
    assert [(r.text, r.completed) for r in found] == [(r["text"], r["completed"]) for r in rows]


async def test_execute_many_refuses_an_unknown_key_in_a_later_row(db: Database) -> None:
    good = [{"text": "a", "completed": True}, {"text": "b", "completed": False}]
    for bad in (
        {"text": "c", "completed": True, "nope": 1},  # one key more
        {"text": "c", "nope": 1},  # as many keys, one of them unknown
    ):
        with pytest.raises(ProgrammingError, match="'nope'"):
            await db.execute_many(notes.insert(), [*good, bad])
    assert await db.fetch_val("SELECT count(*) FROM dbaccess_notes") == 0
    assert db.pool_stats.in_use == 0


async def test_execute_many_row_missing_a_key_without_default(db: Database) -> None:
    # `text` is NOT NULL
    rows: list[dict[str, object]] = [{"text": "a", "completed": True}, {"completed": False}]
    # The second row compiles to an INSERT without `text`, which the database refuses
    # (MariaDB's strict mode reports it as error 1364: an IntegrityError, as elsewhere).
    with pytest.raises(IntegrityError):
        await db.execute_many(notes.insert(), rows)
    assert await db.fetch_val("SELECT count(*) FROM dbaccess_notes") == 0


async def test_execute_many_core_applies_defaults_to_every_row(db: Database) -> None:
    counter = iter(range(1, 1000))
    table = sa.Table(
        "dbaccess_bulk_defaults",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("scalar", sa.Integer, default=7),
        sa.Column("serial", sa.Integer, default=lambda: next(counter)),
        sa.Column("twice", sa.Integer, default=lambda ctx: ctx.get_current_parameters()["n"] * 2),
    )
    await db.execute(sa.schema.CreateTable(table))
    try:
        await db.execute_many(
            table.insert(), [*({"n": n} for n in range(5)), {"n": 5, "scalar": 0, "serial": 0}]
        )
        rows = await db.fetch_all(
            sa.select(table.c.n, table.c.scalar, table.c.serial, table.c.twice).order_by(table.c.id)
        )
        assert [tuple(r.values()) for r in rows] == [
            (0, 7, 1, 0),
            (1, 7, 2, 2),
            (2, 7, 3, 4),
            (3, 7, 4, 6),
            (4, 7, 5, 8),
            (5, 0, 0, 10),
        ]
    finally:
        await db.execute(sa.schema.DropTable(table))


async def test_columns_whose_names_need_quoting(db: Database) -> None:
    """A column named with a space or a percent sign binds under its own name."""
    table = sa.Table(
        "dbaccess_odd_names",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a b", sa.String(20)),
        sa.Column("x%y", sa.Integer, key="xy"),
    )
    await db.execute(sa.schema.CreateTable(table))
    try:
        await db.execute(table.insert(), {"id": 1, "a b": "one", "xy": 1})
        await db.execute_many(
            table.insert(), [{"id": 2, "a b": "two", "xy": 2}, {"id": 3, "a b": "three"}]
        )
        await db.execute(table.update().where(table.c.id == 3), {"xy": 3})
        query = sa.select(table.c.id).where(table.c["a b"] == sa.bindparam("a b"))
        assert await db.fetch_val(query, {"a b": "two"}) == 2
        where = sa.select(table.c["a b"]).where(table.c.xy == 3)
        assert await db.fetch_val(where) == "three"
        rows = await db.fetch_all(sa.select(table).order_by(table.c.id))
        assert [(r[0], r["a b"], r[2]) for r in rows] == [
            (1, "one", 1),
            (2, "two", 2),
            (3, "three", 3),
        ]
    finally:
        await db.execute(sa.schema.DropTable(table))


async def test_core_parameters_without_values_take_their_literals(db: Database) -> None:
    """A statement that mixes bindparam() names and literals: the values fill the first,
    the query itself the second, and a bindparam() without a value is refused."""
    await add_notes(db, "a", "b", "c")
    query = sa.select(notes.c.text).where(notes.c.text != sa.bindparam("skip"), notes.c.text != "c")
    assert await db.fetch_all(query, {"skip": "a"}) == [("b",)]
    with pytest.raises(ProgrammingError, match="'skip'"):
        await db.fetch_all(query)
    update = (
        notes.update().where(notes.c.text == sa.bindparam("old")).values(text=sa.bindparam("new"))
    )
    await db.execute(update, {"old": "a", "new": "z"})
    assert await db.fetch_val(sa.select(notes.c.text).order_by(notes.c.id)) == "z"


async def test_execute_many_is_atomic(db: Database) -> None:
    await db.execute(users.insert(), {"name": "taken"})
    with pytest.raises(IntegrityError):
        await db.execute_many(users.insert(), [{"name": "new"}, {"name": "taken"}])
    assert await db.fetch_val("SELECT count(*) FROM dbaccess_users") == 1
    assert db.pool_stats.in_use == 0


async def test_execute_many_with_no_rows_does_nothing(db: Database) -> None:
    await db.execute_many(notes.insert(), [])
    assert await db.fetch_val("SELECT count(*) FROM dbaccess_notes") == 0


async def test_execute_many_refuses_a_single_mapping(db: Database) -> None:
    with pytest.raises(InterfaceError, match="list of mappings"):
        await db.execute_many(notes.insert(), {"text": "x"})  # type: ignore[call-overload]


async def test_connection_has_the_same_query_methods(db: Database) -> None:
    async with db.connection() as conn:
        new_id = await conn.execute(notes.insert(), {"text": "c", "completed": False})
        await conn.execute_many(notes.insert(), [{"text": "d", "completed": True}])
        assert await conn.fetch_val(sa.select(notes.c.text).where(notes.c.id == new_id)) == "c"
        assert len(await conn.fetch_all(sa.select(notes))) == 2
        row = await conn.fetch_one(sa.select(notes).where(notes.c.text == "d"))
        assert row is not None and row.completed is True
        assert (await conn.execute_result(notes.delete())).rowcount == 2


async def test_unknown_parameter_is_refused_before_the_database(db: Database) -> None:
    with pytest.raises(ProgrammingError, match="'nope'"):
        await db.fetch_all("SELECT * FROM dbaccess_notes WHERE id = :id", {"id": 1, "nope": 2})
    with pytest.raises(ProgrammingError, match="'id'"):
        await db.fetch_all("SELECT * FROM dbaccess_notes WHERE id = :id")
    assert db.pool_stats.in_use == 0


async def test_unknown_parameter_of_a_core_query_is_refused_every_time(db: Database) -> None:
    def query() -> sa.Select[tuple[str]]:
        return sa.select(notes.c.text).where(notes.c.id == sa.bindparam("id"))

    assert await db.fetch_all(query(), {"id": 1}) == []  # compiled and cached
    for _ in range(2):
        with pytest.raises(ProgrammingError, match="'nope'"):
            await db.fetch_all(query(), {"id": 1, "nope": 2})
    with pytest.raises(ProgrammingError, match="'nope'"):
        await db.execute(notes.insert(), {"text": "x", "nope": 2})


# -- transactions that run few statements ---------------------------------------------
# (SQLite runs a transaction's BEGIN with its first statement, in one call to the
# connection's thread: these are the edges of that.)


@pytest.mark.parametrize("readonly", [False, True])
async def test_transactions_without_statements_end_cleanly(db: Database, readonly: bool) -> None:
    async with db.connection() as conn:
        async with conn.transaction(readonly=readonly):
            pass
        transaction = await conn.transaction(readonly=readonly)
        await transaction.rollback()
        # Neither left a transaction open or the connection read-only.
        await conn.execute(notes.insert(), {"text": "after", "completed": False})
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1


async def test_first_statement_of_a_transaction_of_each_kind(db: Database) -> None:
    """The first statement may be a query, a statement, a bulk insert or a stream."""
    await add_notes(db, "a")
    async with db.transaction():
        assert [row.text async for row in db.iterate(sa.select(notes.c.text))] == ["a"]
    async with db.transaction():
        await db.execute_many(notes.insert(), [{"text": "b", "completed": True}])
    async with db.transaction():
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 2
    async with db.transaction(force_rollback=True):
        await db.execute(notes.delete())
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 2


async def test_failing_first_statement_of_a_transaction(db: Database) -> None:
    with pytest.raises(ProgrammingError):
        async with db.transaction():
            await db.execute("INSERT INTO dbaccess_nowhere (x) VALUES (1)")
    with pytest.raises(ProgrammingError):
        async with db.transaction():
            await db.fetch_all("SELEC 1")
    async with db.connection() as conn:  # no transaction left open on the connection
        await conn.execute(notes.insert(), {"text": "after", "completed": False})
    assert await db.fetch_val(sa.select(notes.c.text)) == "after"
    assert db.pool_stats.in_use == 0


async def test_read_only_transaction_refuses_its_first_write(db: Database) -> None:
    with pytest.raises(DatabaseError):
        async with db.transaction(readonly=True):
            await db.execute(notes.insert(), {"text": "x", "completed": False})
    await db.execute(notes.insert(), {"text": "y", "completed": False})  # writable again
    assert await db.fetch_val(sa.select(notes.c.text)) == "y"


async def test_sqlite_transaction_that_cannot_begin(dialect: str, tmp_path: Path) -> None:
    """BEGIN IMMEDIATE waits for another writer's lock up to the busy timeout; when it
    gives up, the first statement reports it, and the transaction cannot commit: the
    error names the one that kept it from beginning."""
    if dialect != "sqlite":
        pytest.skip("SQLite's write lock")
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    async with Database(url) as holder, Database(url, busy_timeout=0.05) as other:
        await holder.execute(sa.schema.CreateTable(notes))
        async with holder.transaction():
            await holder.execute(notes.insert(), {"text": "held", "completed": False})
            async with other.connection() as conn:
                transaction = await conn.transaction()
                with pytest.raises(OperationalError, match="locked"):
                    await conn.execute(notes.insert(), {"text": "x", "completed": False})
                with pytest.raises(OperationalError, match=r"never began.*locked"):
                    await transaction.commit()
            with pytest.raises(OperationalError, match="locked"):
                async with other.transaction():
                    await other.execute(notes.insert(), {"text": "x", "completed": False})
        async with other.transaction():  # the lock is free again
            await other.execute(notes.insert(), {"text": "later", "completed": False})
        texts = await other.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
        assert [row.text for row in texts] == ["held", "later"]
        assert other.pool_stats.in_use == 0
