"""SQLAlchemy tables of the orchestrator (not DBOS's own system tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# none_as_null: Python None is SQL NULL, so partial upserts can COALESCE absent values.
JSONType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
UTCDateTime = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class TaskRow(Base):
    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    request: Mapped[str | None] = mapped_column(sa.Text)
    user_id: Mapped[str | None] = mapped_column(sa.String(200))
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType)
    auto_approve: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.Text)
    failed_step: Mapped[str | None] = mapped_column(sa.String(64))
    total_cost: Mapped[float] = mapped_column(sa.Float, default=0.0)
    run_generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    executor_id: Mapped[str | None] = mapped_column(sa.String(100))
    phase: Mapped[str | None] = mapped_column(sa.String(16))
    round: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    needs_human: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    quality_score: Mapped[float | None] = mapped_column(sa.Float)


class StepRunRow(Base):
    __tablename__ = "step_runs"
    # (The unique key serves lookups by task_id too: no index of its own, one less to update
    # per step transition. On Postgres the table also keeps room for heap-only updates: see
    # migration 0004.)
    __table_args__ = (sa.UniqueConstraint("task_id", "step_id", name="uq_step_runs_task_step"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(sa.ForeignKey("tasks.task_id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(sa.String(64))
    tool: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(32))
    attempt: Mapped[int] = mapped_column(sa.Integer, default=0)
    inputs: Mapped[Any] = mapped_column(JSONType, nullable=True)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)
    cost: Mapped[float] = mapped_column(sa.Float, default=0.0)
    executor_id: Mapped[str | None] = mapped_column(sa.String(100))


class StepEndsRow(Base):
    """The step rows of a finished task's last commit, on Postgres, until they are moved into
    ``step_runs`` (see ``Store.write_batch``): one row of JSON text, written in the commit that
    ends the task instead of one upsert per step, the task's end reported sooner. Reading a
    task's steps moves them first; so does the journal's next commit."""

    __tablename__ = "step_ends"
    __table_args__ = (sa.Index("ix_step_ends_task", "task_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(sa.ForeignKey("tasks.task_id", ondelete="CASCADE"))
    rows: Mapped[str] = mapped_column(sa.Text)


class ApprovalRow(Base):
    __tablename__ = "approvals"

    approval_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(sa.String(200))
    comment: Mapped[str | None] = mapped_column(sa.Text)


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True
    )
    approval_id: Mapped[str | None] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    text: Mapped[str] = mapped_column(sa.Text)
    author: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[str] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.String(1000))
    media_type: Mapped[str] = mapped_column(sa.String(200))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SideEffectRow(Base):
    """Ledger of side effects, keyed by task and step: what makes them run once."""

    __tablename__ = "side_effects"

    idempotency_key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    task_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    step_id: Mapped[str] = mapped_column(sa.String(64))
    tool: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))  # started | done
    receipt: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExecutorRow(Base):
    """A process running tasks; its heartbeat is its lease."""

    __tablename__ = "executors"

    executor_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    host: Mapped[str] = mapped_column(sa.String(200))
    pid: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)  # alive | stopped | dead
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recovered_by: Mapped[str | None] = mapped_column(sa.String(100))
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LlmCallRow(Base):
    """One model call: which model, for what, what it cost."""

    __tablename__ = "llm_calls"
    __table_args__ = (sa.Index("ix_llm_calls_task_step", "task_id", "step_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str | None] = mapped_column(sa.String(64))
    step_id: Mapped[str | None] = mapped_column(sa.String(64))
    model: Mapped[str] = mapped_column(sa.String(200))
    purpose: Mapped[str] = mapped_column(sa.String(64))
    input_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    cost: Mapped[float] = mapped_column(sa.Float, default=0.0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def _task_fk() -> Mapped[str]:
    return mapped_column(sa.ForeignKey("tasks.task_id", ondelete="CASCADE"))


class AssessmentRow(Base):
    """A task's quality assessment after one round (0: first result, n: n-th refinement)."""

    __tablename__ = "assessments"
    __table_args__ = (sa.UniqueConstraint("task_id", "round", name="uq_assessments_task_round"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = _task_fk()
    round: Mapped[int] = mapped_column(sa.Integer)
    trigger: Mapped[str] = mapped_column(sa.String(16))  # initial | quality | human
    overall: Mapped[float] = mapped_column(sa.Float)
    passed: Mapped[bool] = mapped_column(sa.Boolean)
    body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VariantRow(Base):
    """A channel variant of a round's result; revisions above 0 are human edits."""

    __tablename__ = "variants"
    __table_args__ = (
        sa.UniqueConstraint("task_id", "key", "round", "revision", name="uq_variants_revision"),
        sa.Index("ix_variants_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = _task_fk()
    key: Mapped[str] = mapped_column(sa.String(64))
    round: Mapped[int] = mapped_column(sa.Integer)
    revision: Mapped[int] = mapped_column(sa.Integer)
    body: Mapped[Any] = mapped_column(JSONType)
    edited_by: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StepHistoryRow(Base):
    """A step's run as it was before a refinement re-ran it (every attempt is kept)."""

    __tablename__ = "step_history"
    __table_args__ = (sa.Index("ix_step_history_task", "task_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = _task_fk()
    step_id: Mapped[str] = mapped_column(sa.String(64))
    round: Mapped[int] = mapped_column(sa.Integer)
    body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExecutionRecordRow(Base):
    """What a request's run taught (the learning phase's record), one per task."""

    __tablename__ = "execution_records"
    __table_args__ = (sa.Index("ix_execution_records_updated", "updated_at"),)

    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(sa.String(32))
    quality: Mapped[float | None] = mapped_column(sa.Float)
    body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
