"""The application's tables: what `alembic revision --autogenerate` compares the database to."""

import sqlalchemy as sa

# Named constraints: Alembic can then drop and alter them by name on every backend,
# SQLite's batch mode included.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # Indexed: a foreign key's lookups, and MySQL needs an index of its own for it.
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    # Added by revision 0002, which fills it in for the rows already there.
    sa.Column("priority", sa.Integer, nullable=False, server_default="1"),
    # Added by revision 0003.
    sa.CheckConstraint("priority BETWEEN 0 AND 3", name="priority_range"),
    sa.Index(None, "member_id", "done"),
)
