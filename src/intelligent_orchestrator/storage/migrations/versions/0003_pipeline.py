"""pipeline: task phase and quality columns; assessments, variants, step history, execution records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:40:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _task_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["task_id"], ["tasks.task_id"], ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as t:
        t.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        t.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(
            sa.Column("needs_human", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        t.add_column(sa.Column("quality_score", sa.Float(), nullable=True))
    op.create_table(
        "assessments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("overall", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _task_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "round", name="uq_assessments_task_round"),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("edited_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _task_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "key", "round", "revision", name="uq_variants_revision"),
    )
    op.create_index("ix_variants_task", "variants", ["task_id"])
    op.create_table(
        "step_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _task_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_step_history_task", "step_history", ["task_id"])
    op.create_table(
        "execution_records",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _task_fk(),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_execution_records_updated", "execution_records", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_execution_records_updated", table_name="execution_records")
    op.drop_table("execution_records")
    op.drop_index("ix_step_history_task", table_name="step_history")
    op.drop_table("step_history")
    op.drop_index("ix_variants_task", table_name="variants")
    op.drop_table("variants")
    op.drop_table("assessments")
    with op.batch_alter_table("tasks") as t:
        t.drop_column("quality_score")
        t.drop_column("needs_human")
        t.drop_column("round")
        t.drop_column("phase")
