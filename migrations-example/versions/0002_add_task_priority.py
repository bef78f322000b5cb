"""Add tasks.priority and fill it in for the tasks already there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision sees it: a data migration must not import models.py,
# which describes the newest schema, not the one at this point of the history.
tasks = sa.table(
    "tasks",
    sa.column("title", sa.String),
    sa.column("done", sa.Boolean),
    sa.column("priority", sa.Integer),
)


def upgrade() -> None:
    # NOT NULL with a server default: every backend (SQLite included) adds such a
    # column to a table that holds rows without copying the table.
    op.add_column("tasks", sa.Column("priority", sa.Integer, nullable=False, server_default="1"))
    # The data migration: done tasks matter least, titles starting with "!" most.
    op.execute(
        tasks.update().values(
            priority=sa.case(
                (tasks.c.done == sa.true(), 0),
                (tasks.c.title.startswith("!", autoescape=True), 3),
                else_=1,
            )
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("priority")
