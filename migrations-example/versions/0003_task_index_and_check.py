"""Index tasks by member and state; keep priority between 0 and 3.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tasks_before() -> sa.Table:
    """The tasks table as revision 0002 left it (for offline SQL, which cannot reflect)."""
    return sa.Table(
        "tasks",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("priority", sa.Integer, nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        # The copy is made from this definition: an index left out here would be lost.
        sa.Index("ix_tasks_member_id", "member_id"),
    )


def upgrade() -> None:
    # SQLite cannot add a constraint to a table: batch mode copies the table into a
    # new one that has it (elsewhere it is a plain ALTER TABLE). It reflects the table
    # first, which offline SQL (--sql) cannot: there it is given the table instead.
    offline = op.get_context().as_sql
    with op.batch_alter_table("tasks", copy_from=tasks_before() if offline else None) as batch:
        batch.create_check_constraint(
            op.f("ck_tasks_priority_range"), sa.text("priority BETWEEN 0 AND 3")
        )
    # After the copy, so that it is made on the table that stays.
    op.create_index(op.f("ix_tasks_member_id_done"), "tasks", ["member_id", "done"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint(op.f("ck_tasks_priority_range"), type_="check")
    op.drop_index(op.f("ix_tasks_member_id_done"), table_name="tasks")
