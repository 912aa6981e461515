"""step_runs: drop the task_id index the (task_id, step_id) key covers; leave room for HOT updates

Every step row is written when its step starts and rewritten when it ends. The separate
task_id index made each rewrite update three indexes; the unique (task_id, step_id) index
already serves lookups by task_id. On Postgres the table keeps half of each page free, so the
end of a step can be written beside its start (a heap-only update, no index touched).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:10:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_step_runs_task_id", table_name="step_runs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE step_runs SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE step_runs RESET (fillfactor)")
    op.create_index("ix_step_runs_task_id", "step_runs", ["task_id"])
