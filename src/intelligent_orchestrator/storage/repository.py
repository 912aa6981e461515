"""The one gateway to the orchestrator's tables; returns domain objects."""

from __future__ import annotations

import enum
import json
import logging
import math
import select
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, cast, overload

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

from ..domain.models import (
    Approval,
    ApprovalStatus,
    ChannelVariant,
    ExecutionPlan,
    ExecutionRecord,
    LlmCall,
    LlmUsage,
    PipelinePhase,
    QualityAssessment,
    StepRun,
    StepStatus,
    Task,
    TaskStatus,
)
from ..errors import ConflictError, NotFoundError
from .db import reader_for, write_turn
from .tables import (
    ApprovalRow,
    ArtifactRow,
    AssessmentRow,
    ExecutionRecordRow,
    ExecutorRow,
    FeedbackRow,
    LlmCallRow,
    SideEffectRow,
    StepHistoryRow,
    StepRunRow,
    TaskRow,
    VariantRow,
)

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def _aware(dt: datetime) -> datetime: ...
@overload
def _aware(dt: None) -> None: ...
def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(UTC) if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUpdate:
    """One step transition, written together with others in one transaction."""

    step_id: str
    tool: str
    status: StepStatus
    attempt: int = 0
    inputs: Any = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    cost: float = 0.0
    executor_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactRecord:
    step_id: str
    path: str
    media_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskUpdate:
    """A change to a task's row, applied only while the task is still running."""

    status: TaskStatus
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepBatch:
    """One task's writes for a group commit: the new task's row (first of all), step
    transitions, artifacts, added cost and (last of all) the task's final status."""

    task_id: str
    updates: Sequence[StepUpdate] = ()
    artifacts: Sequence[ArtifactRecord] = ()
    add_cost: float = 0.0
    effects_done: Sequence[tuple[str, Any]] = ()
    """Side effects (idempotency key, receipt) that happened: written with the steps."""
    task: TaskUpdate | None = None
    create: Mapping[str, Any] | None = None
    """A new task's row (:func:`new_task_values`), inserted before anything else is written."""
    executor_id: str | None = None
    """The executor whose run wrote the batch: none of it is written once the task is held by
    another executor (this one was silent for a lease and was taken for dead)."""


class Written(enum.Enum):
    """What :meth:`Store.write_batch` did with one batch."""

    APPLIED = "applied"
    """Written, and its task update applied."""
    WRITTEN = "written"
    """Written; it had no task update, or the task was no longer running (e.g. cancelled)."""
    NOT_OWNER = "not owner"
    """Nothing written: another executor holds the task now."""


def new_task_values(
    plan: ExecutionPlan,
    *,
    task_id: str | None = None,
    request: str | None = None,
    user_id: str | None = None,
    auto_approve: bool = False,
    phase: PipelinePhase | None = None,
    executor_id: str | None = None,
) -> dict[str, Any]:
    """The row of a new task (queued; with ``executor_id``, running on that executor). Its
    ``plan`` is the model itself, dumped to JSON when the row is inserted (``_task_row``)."""
    now = utcnow()
    return {
        "task_id": task_id or uuid.uuid4().hex,
        "name": plan.name,
        "status": (TaskStatus.RUNNING if executor_id else TaskStatus.QUEUED).value,
        "executor_id": executor_id,
        "started_at": now if executor_id else None,
        "request": request,
        "user_id": user_id,
        "plan": plan,
        "auto_approve": auto_approve,
        "phase": phase.value if phase is not None else None,
        "created_at": now,
        "updated_at": now,
        "total_cost": 0.0,
        "run_generation": 0,
        "round": 0,
        "needs_human": False,
    }


def _task_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """A row made by :func:`new_task_values` as inserted: the plan as JSON. (Dumped here, in
    the commit's thread, not when the task is submitted: for a 52-step plan that is 0.15 ms of
    the event loop before the task's first steps could start.)"""
    return {**values, "plan": values["plan"].model_dump(mode="json")}


def new_task(values: Mapping[str, Any], plan: ExecutionPlan) -> Task:
    """The Task of a row made by :func:`new_task_values` for ``plan`` (not yet stored)."""
    return Task(
        task_id=values["task_id"],
        status=TaskStatus(values["status"]),
        name=values["name"],
        request=values["request"],
        user_id=values["user_id"],
        plan=plan,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        started_at=values["started_at"],
        auto_approve=values["auto_approve"],
        phase=PipelinePhase(values["phase"]) if values["phase"] else None,
    )


class NotHolderError(RuntimeError):
    """A write fenced on a task's holder was refused: another executor holds the task now
    (the writer was taken for dead and its run recovered elsewhere). Nothing was written."""

    def __init__(self, task_id: str, executor_id: str) -> None:
        super().__init__(
            f"task {task_id} is held by another executor now, not by {executor_id}: "
            "nothing was written"
        )
        self.task_id = task_id
        self.executor_id = executor_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A person's decision on a task's pending approval(s) (only ``step_id``'s, if given)."""

    task_id: str
    comment: str | None = None
    decided_by: str | None = None
    step_id: str | None = None
    revisions: tuple[ChannelVariant, ...] = ()
    """Edits of round ``round``'s variants, stored with the approval."""
    round: int | None = None


Decided = tuple[list[Approval], int | None, "tuple[Task, list[StepRun]] | None"]
"""The approvals decided, the task's new run generation (None while other gates wait, or
when the decision finished the task) and, when claimed, the task with its step runs."""


def _one(results: list[Decided | ConflictError | NotFoundError]) -> Decided:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectStart:
    """A side effect about to happen: its idempotency key and where it comes from."""

    key: str
    task_id: str
    step_id: str
    tool: str
    executor_id: str | None = None
    """The executor about to act: not recorded (status :data:`NOT_OWNER`) once another
    executor holds the task."""


NOT_OWNER = "not owner"
"""An effect's status when the executor about to act no longer holds its task."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectRecord:
    key: str
    status: str
    receipt: Any


class RunRef(NamedTuple):
    """A task's run as the lease round sweeps for runs nobody will carry out."""

    task_id: str
    generation: int
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorInfo:
    executor_id: str
    kind: str
    host: str
    pid: int
    status: str
    started_at: datetime
    heartbeat_at: datetime


class Store:
    """Repository over the orchestrator's tables (sync; call through ``asyncio.to_thread``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Reads go through an engine that takes no write lock on SQLite.
        self.reader = reader_for(engine)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        self._upsert_steps = _StepUpsert(engine.dialect)  # built once: the engine's hot path
        self._insert_task = sa.insert(TaskRow)
        self._task_ends: dict[tuple[str, ...], sa.Update] = {}
        self._driver_statements: dict[tuple[Any, ...], _DriverStatement] = {}
        # Driver connections the journal's commits keep between them (see _write_on).
        self._kept: list[PoolProxiedConnection] = []
        self._kept_lock = threading.Lock()
        self._closed = False
        # Tasks whose last step rows this store's commits left in step_ends (Postgres): the
        # next commit moves them into step_runs (see write_batch).
        self._unmoved: set[str] = set()
        self._end_alone_sql: dict[tuple[str, ...], str] = {}

    def session(self) -> Session:
        """A session for writes (open it with ``s.begin()``)."""
        return self._sessions()

    def read(self) -> Session:
        """A session for reads only."""
        return self._read_sessions()

    def dispose(self) -> None:
        with self._kept_lock:
            self._closed = True
            kept, self._kept = self._kept, []
        for raw in kept:
            raw.close()
        if self.reader is not self.engine:
            self.reader.dispose()
        self.engine.dispose()

    # Tasks -------------------------------------------------------------------------------
    def create_task(
        self,
        plan: ExecutionPlan,
        *,
        task_id: str | None = None,
        request: str | None = None,
        user_id: str | None = None,
        auto_approve: bool = False,
        phase: PipelinePhase | None = None,
        executor_id: str | None = None,
    ) -> Task:
        """Store a new task, queued; with ``executor_id``, already running on that executor
        (the process that creates it runs it at once, so it needs no claim)."""
        values = new_task_values(
            plan,
            task_id=task_id,
            request=request,
            user_id=user_id,
            auto_approve=auto_approve,
            phase=phase,
            executor_id=executor_id,
        )
        row = _task_row(values)
        with self.engine.begin() as conn:  # Core: a task is created per run (the hot path)
            conn.execute(self._insert_task, row)
        return _task(TaskRow(**row))

    def get_task(self, task_id: str) -> Task:
        with self.read() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFoundError("task", task_id)
            return _task(row)

    def task_status(self, task_id: str) -> TaskStatus:
        """A task's status alone (one column: what a waiter polls)."""
        with self.reader.connect() as conn:
            status = conn.execute(
                sa.select(TaskRow.status).where(TaskRow.task_id == task_id)
            ).scalar_one_or_none()
        if status is None:
            raise NotFoundError("task", task_id)
        return TaskStatus(status)

    def claim_task(
        self, task_id: str, *, executor_id: str, generation: int | None = None
    ) -> tuple[Task, list[StepRun]] | None:
        """Mark a task running on this executor and load it with its step runs.

        None when the task is finished (or cancelled) and must not run, or, with
        ``generation``, when it has moved on to another run generation.
        """
        now = utcnow()
        runnable = [
            TaskStatus.QUEUED.value,
            TaskStatus.RUNNING.value,
            TaskStatus.AWAITING_APPROVAL.value,
        ]
        with self.session() as s, s.begin():
            changed = cast(
                CursorResult[Any],
                s.execute(
                    sa.update(TaskRow)
                    .where(TaskRow.task_id == task_id, TaskRow.status.in_(runnable))
                    .where(
                        sa.true() if generation is None else TaskRow.run_generation == generation
                    )
                    .values(
                        status=TaskStatus.RUNNING.value,
                        executor_id=executor_id,
                        updated_at=now,
                        started_at=sa.func.coalesce(TaskRow.started_at, now),
                    )
                ),
            ).rowcount
            if not changed:
                if s.get(TaskRow, task_id) is None:
                    raise NotFoundError("task", task_id)
                return None
            row = s.get(TaskRow, task_id)
            assert row is not None
            runs = s.scalars(
                sa.select(StepRunRow).where(StepRunRow.task_id == task_id).order_by(StepRunRow.id)
            ).all()
            return _task(row), [_step(r) for r in runs]

    def cancelled_among(self, task_ids: Sequence[str]) -> list[str]:
        """Which of these tasks have been cancelled (one query for every task a process runs)."""
        if not task_ids:
            return []
        with self.reader.connect() as conn:
            rows = conn.execute(
                sa.select(TaskRow.task_id).where(
                    TaskRow.task_id.in_(list(task_ids)),
                    TaskRow.status == TaskStatus.CANCELLED.value,
                )
            )
            return [r[0] for r in rows]

    def stopped_among(
        self, task_ids: Sequence[str], *, executor_id: str
    ) -> tuple[list[str], list[str]]:
        """Of these tasks, run by ``executor_id``: those cancelled, and those another executor
        holds now (it took this one for dead). One query for every task a process runs."""
        if not task_ids:
            return [], []
        with self.reader.connect() as conn:
            rows = conn.execute(
                sa.select(TaskRow.task_id, TaskRow.status).where(
                    TaskRow.task_id.in_(list(task_ids)),
                    sa.or_(
                        TaskRow.status == TaskStatus.CANCELLED.value,
                        TaskRow.executor_id.is_distinct_from(executor_id),
                    ),
                )
            ).all()
        cancelled = [t for t, status in rows if status == TaskStatus.CANCELLED.value]
        moved = [t for t, status in rows if status != TaskStatus.CANCELLED.value]
        return cancelled, moved

    def task_generation(self, task_id: str) -> int:
        with self.read() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFoundError("task", task_id)
            return row.run_generation

    def list_tasks(
        self, *, limit: int = 20, status: TaskStatus | None = None, offset: int = 0
    ) -> tuple[list[Task], int]:
        with self.read() as s:
            q = sa.select(TaskRow)
            count_q = sa.select(sa.func.count()).select_from(TaskRow)
            if status is not None:
                q = q.where(TaskRow.status == status.value)
                count_q = count_q.where(TaskRow.status == status.value)
            rows = s.scalars(
                q.order_by(TaskRow.created_at.desc(), TaskRow.task_id).offset(offset).limit(limit)
            ).all()
            total = s.scalar(count_q) or 0
            return [_task(r) for r in rows], total

    def recent_requests(self, *, limit: int = 500) -> list[tuple[str, str, dict[str, Any]]]:
        """(task id, request, plan) of recent successful tasks: the planner's memory."""
        with self.read() as s:
            rows = s.execute(
                sa.select(TaskRow.task_id, TaskRow.request, TaskRow.plan)
                .where(TaskRow.status == TaskStatus.SUCCEEDED.value, TaskRow.request.is_not(None))
                .order_by(TaskRow.created_at.desc())
                .limit(limit)
            ).all()
        return [(tid, req, plan or {}) for tid, req, plan in rows if req]

    def update_task(
        self,
        task_id: str,
        *,
        status: TaskStatus | None = None,
        only_if: Iterable[TaskStatus] | None = None,
        only_executor: str | None = None,
        **fields: Any,
    ) -> bool:
        """Update a task; with ``only_if``, only when its status is one of those, with
        ``only_executor`` only while that executor holds it (returns whether it did)."""
        values: dict[str, Any] = {"updated_at": utcnow(), **fields}
        if status is not None:
            values["status"] = status.value
        stmt = sa.update(TaskRow).where(TaskRow.task_id == task_id).values(**values)
        if only_if is not None:
            stmt = stmt.where(TaskRow.status.in_([s.value for s in only_if]))
        if only_executor is not None:
            stmt = stmt.where(TaskRow.executor_id == only_executor)
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def bump_generation(self, task_id: str, *, status: TaskStatus) -> int:
        with self.session() as s, s.begin():
            row = s.get(TaskRow, task_id, with_for_update=True)
            if row is None:
                raise NotFoundError("task", task_id)
            row.run_generation += 1
            row.status = status.value
            row.updated_at = utcnow()
            return row.run_generation

    # Step runs ---------------------------------------------------------------------------
    def step_runs(self, task_id: str) -> list[StepRun]:
        self.move_step_ends([task_id])  # (then this read sees them where they belong)
        with self.read() as s:
            rows = s.scalars(
                sa.select(StepRunRow).where(StepRunRow.task_id == task_id).order_by(StepRunRow.id)
            ).all()
            return [_step(r) for r in rows]

    # Model calls -------------------------------------------------------------------------
    def record_llm_calls(self, calls: Sequence[LlmCall]) -> None:
        if not calls:
            return
        with self.session() as s, s.begin():
            s.execute(sa.insert(LlmCallRow), [c.model_dump() for c in calls])

    def llm_usage(self, task_id: str) -> tuple[LlmUsage, dict[str | None, LlmUsage]]:
        """The task's model usage in total and per step."""
        c = LlmCallRow
        with self.read() as s:
            rows = s.execute(
                sa.select(
                    c.step_id,
                    sa.func.count(),
                    sa.func.count(c.error),
                    sa.func.coalesce(sa.func.sum(c.input_tokens), 0),
                    sa.func.coalesce(sa.func.sum(c.output_tokens), 0),
                    sa.func.coalesce(sa.func.sum(c.cost), 0.0),
                )
                .where(c.task_id == task_id)
                .group_by(c.step_id)
            ).all()
        per_step = {
            step: LlmUsage(
                calls=n, failed_calls=failed, input_tokens=i, output_tokens=o, cost=float(cost)
            )
            for step, n, failed, i, o, cost in rows
        }
        total = LlmUsage(
            calls=sum(u.calls for u in per_step.values()),
            failed_calls=sum(u.failed_calls for u in per_step.values()),
            input_tokens=sum(u.input_tokens for u in per_step.values()),
            output_tokens=sum(u.output_tokens for u in per_step.values()),
            cost=sum(u.cost for u in per_step.values()),
        )
        return total, per_step

    def llm_calls(self, task_id: str) -> list[LlmCall]:
        with self.read() as s:
            rows = s.scalars(
                sa.select(LlmCallRow).where(LlmCallRow.task_id == task_id).order_by(LlmCallRow.id)
            ).all()
        return [
            LlmCall(
                model=r.model,
                purpose=r.purpose,
                task_id=r.task_id,
                step_id=r.step_id,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                latency_ms=r.latency_ms,
                cost=r.cost,
                error=r.error,
                created_at=_aware(r.created_at),
            )
            for r in rows
        ]

    def write_steps(
        self,
        task_id: str,
        updates: Sequence[StepUpdate],
        *,
        artifacts: Sequence[ArtifactRecord] = (),
        add_cost: float = 0.0,
    ) -> None:
        """Upsert step rows (and artifacts, and the task's cost) in one transaction.

        A field left None in an update keeps its stored value for inputs, started_at and
        executor_id.
        """
        self.write_batch(
            [StepBatch(task_id=task_id, updates=updates, artifacts=artifacts, add_cost=add_cost)]
        )

    def write_batch(self, batches: Sequence[StepBatch]) -> list[Written]:
        """Write several tasks' batches in one transaction (the engine's group commit).

        Step rows go in one upsert, in batch order (a later update of a step wins). A batch
        with an ``executor_id`` is written only while that executor holds its task (checked,
        on Postgres with the task rows locked, in the same transaction: a claim by another
        executor waits for this commit, or this commit sees it).

        On Postgres, in a commit of one task that finishes it (succeeded, failed, rejected),
        the task's step rows go instead as one row of JSON text into ``step_ends`` (a commit of
        several tasks is a busy engine's: there the move's work on top cost 5 % of the
        throughput of 1,000 five-step workflows), which the server writes in a
        fraction of the time of the rows' upsert (0.35 against 0.9 ms for a 50-wide fan-out's
        52 rows on a slow VM; the task's end is reported when this commit is durable).
        Nothing writes a finished task's steps again, and every read of its steps
        (``step_runs``) first moves them into ``step_runs``; so does this store's next
        commit, and an engine's start (``prepare``) moves whatever a stopped process left.
        """
        creates = [_task_row(b.create) for b in batches if b.create is not None]
        if (
            not any(
                b.updates or b.artifacts or b.effects_done or b.add_cost or b.task for b in batches
            )
            and not creates
        ):
            return [Written.WRITTEN] * len(batches)
        raw = self._kept_connection()
        if raw is not None:
            try:
                return self._write_on(raw, batches, creates, kept=True)
            except _StaleConnection as stale:
                logger.info("a kept connection had gone (%s); writing on a new one", stale)
        return self._write_on(self.engine.raw_connection(), batches, creates, kept=False)

    def _write_on(
        self,
        raw: PoolProxiedConnection,
        batches: Sequence[StepBatch],
        creates: list[dict[str, Any]],
        *,
        kept: bool,
    ) -> list[Written]:
        """``_write`` in a transaction of ``raw``, which is kept for the next commit once
        this one is written (on SQLite within this process's write gate, from BEGIN
        IMMEDIATE: the driver is in autocommit mode).

        On the driver's connection: SQLAlchemy's connection, transaction and statement
        handling cost about 0.5 ms of a 2.7 ms commit of a fan-out's 52 step ends and its
        task's end after an idle spell on Postgres, and the pool's checkout with its
        pre-ping 0.27 ms more; on SQLite its ``begin`` events and checkout took 0.34 ms
        before the first statement (see bench/README). A kept connection that died
        meanwhile (a restarted server, an idle timeout) had nothing written on it: the
        caller writes again on a connection from the pool, which is pinged.
        """
        sqlite = not self._upsert_steps.postgres
        cursor: Any = None
        committing = written = False
        alone_at: datetime | None = None
        try:
            with write_turn(self.engine), self._sqlalchemy_errors(raw):
                try:
                    cursor = raw.cursor()
                    if sqlite:
                        cursor.execute("BEGIN IMMEDIATE")
                    ended: list[str] = []
                    alone = None if sqlite or creates else self._ending_alone(batches)
                    if alone is not None:
                        if kept and _peer_spoke(raw):
                            raw.invalidate()
                            raise _StaleConnection("the server closed it while it was idle")
                        committing = True  # (the statement commits by itself)
                        alone_at = utcnow()
                        results = self._end_alone(cursor, batches, alone, ended, alone_at)
                    else:
                        results = self._write(cursor, batches, creates, ended)
                        committing = True
                        raw.commit()
                    written = True
                    if ended:
                        with self._kept_lock:
                            self._unmoved.update(ended)
                    return results
                finally:
                    if not written and sqlite:
                        _roll_back(raw)  # (before the next writer gets the gate)
        except DBAPIError as exc:
            if kept and exc.connection_invalidated and not committing:
                raise _StaleConnection(str(exc.orig)) from exc  # (lost before COMMIT: undone)
            if kept and exc.connection_invalidated and alone_at is not None:
                # Lost while the lone statement ran: a connection dropped without a word while
                # it idled (a NAT's or a balancer's timeout) looks the same as one lost while
                # the statement committed. The task's row tells: its end is there (at this
                # very time), or the statement is written again on a new connection (had it
                # kept the rows without the end, they are kept twice, the same rows).
                last = batches[-1]
                if not self._ended_at(last.task_id, alone_at):
                    raise _StaleConnection(str(exc.orig)) from exc
                with self._kept_lock:
                    self._unmoved.add(last.task_id)
                return [Written.WRITTEN] * (len(batches) - 1) + [Written.APPLIED]
            raise
        finally:
            if cursor is not None:
                cursor.close()
            if not (written and self._keep(raw)):
                raw.close()  # (back to the pool, which rolls back what was not committed)

    def _ending_alone(self, batches: Sequence[StepBatch]) -> str | None:
        """The JSON text of the step rows to keep aside if ``batches`` are one task's last
        writes, committed by ``_end_alone`` (Postgres): one executor's, ending in the task's
        finished end, with step rows step_runs will take, and nothing else (no effects,
        artifacts or cost), while no earlier task's rows wait for this store to move them.
        Else None."""
        last = batches[-1]
        if (
            last.task is None
            or not last.task.status.finished
            or last.executor_id is None
            or self._unmoved
            or any(
                b.task_id != last.task_id
                or b.executor_id != last.executor_id
                or (b.task is not None and b is not last)
                or b.effects_done
                or b.artifacts
                or b.add_cost
                for b in batches
            )
        ):
            return None
        rows = _last_per_step([_step_values(b.task_id, u) for b in batches for u in b.updates])
        return self._upsert_steps.keepable(rows) if rows else None

    def _ended_at(self, task_id: str, at: datetime) -> bool:
        """Whether ``task_id``'s row was last written at ``at`` (by ``_end_alone``)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(TaskRow.task_id).where(
                        TaskRow.task_id == task_id, TaskRow.updated_at == at
                    )
                ).first()
                is not None
            )

    def _end_alone(
        self,
        cursor: Any,
        batches: Sequence[StepBatch],
        rows: str,
        ended: list[str],
        at: datetime,
    ) -> list[Written]:
        """One task's last writes (``_ending_alone``) as one statement in autocommit mode: the
        task's row share-locked, its step rows kept aside and its end written only while its
        executor holds it. The four statements and COMMIT of ``_write`` took 0.26 ms more,
        after the idle spell before a task's end (bench/README, "Findings, fourteenth
        session")."""
        last = batches[-1]
        assert last.task is not None
        fields = tuple(sorted(last.task.fields))
        end = self._task_end_statement(fields)
        sql = self._end_alone_sql.get(fields)
        if sql is None:
            sql = self._end_alone_sql[fields] = _END_ALONE.format(update=end.sql)
        params = end.params({**_task_end_params(last), "t_now": at})
        assert isinstance(params, dict)
        params.update(x_ex=last.executor_id, x_rows=rows)
        conn = cursor.connection
        conn.autocommit = True
        try:
            cursor.execute(sql, params, prepare=_prepare(cursor))
            holder, applied = cursor.fetchone()
        finally:
            if not conn.closed:  # (a lost one would raise here, hiding why it was lost)
                conn.autocommit = False
        if holder != last.executor_id:
            return [Written.NOT_OWNER] * len(batches)
        ended.append(last.task_id)
        return [Written.WRITTEN] * (len(batches) - 1) + [
            Written.APPLIED if applied else Written.WRITTEN
        ]

    def _write(
        self,
        cursor: Any,
        batches: Sequence[StepBatch],
        creates: list[dict[str, Any]],
        ended: list[str],
    ) -> list[Written]:
        """``write_batch``'s statements, on a driver cursor in an open transaction: compiled
        once each (``_DriverStatement``), and on Postgres prepared at their first use.
        ``ended`` gets the tasks whose step rows went to ``step_ends``."""
        postgres = self._upsert_steps.postgres
        if creates:
            insert = self._create_statement(tuple(creates[0]))
            cursor.executemany(insert.sql, [insert.params(c) for c in creates])
        owned = _holders_ok(cursor, postgres, [(b.task_id, b.executor_id) for b in batches])
        live = [b for b, ok in zip(batches, owned, strict=True) if ok]
        if postgres and self._unmoved:
            self._move_unmoved_in(cursor)
        if effects := [e for b in live for e in b.effects_done]:
            done_ = self._statement(("effects done",), _effects_done)
            now = utcnow()
            cursor.executemany(
                done_.sql,
                [done_.params({"e_key": k, "e_receipt": r, "e_at": now}) for k, r in effects],
            )
        if rows := [_step_values(b.task_id, u) for b in live for u in b.updates]:
            rows = _last_per_step(rows)
            if postgres and len({b.task_id for b in live}) == 1:
                finished = {
                    b.task_id for b in live if b.task is not None and b.task.status.finished
                }
                if finished:
                    by_task: dict[str, list[dict[str, Any]]] = {}
                    for r in rows:
                        if r["task_id"] in finished:
                            by_task.setdefault(r["task_id"], []).append(r)
                    kept = set(self._upsert_steps.log(cursor, by_task))
                    rows = [r for r in rows if r["task_id"] not in kept]
                    ended += kept
            if rows:
                self._upsert_steps.run(cursor, rows)
        if artifacts := [(b.task_id, a) for b in live for a in b.artifacts]:
            add = self._statement(
                ("artifact",), lambda: (sa.insert(ArtifactRow).inline(), _ARTIFACT_KEYS)
            )
            now = utcnow()
            cursor.executemany(
                add.sql, [add.params(_artifact_values(task_id, a, now)) for task_id, a in artifacts]
            )
        results: list[Written] = []
        for b, ok in zip(batches, owned, strict=True):
            if not ok:
                results.append(Written.NOT_OWNER)
                continue
            if b.add_cost:
                cost = self._statement(("add cost",), _add_cost)
                cursor.execute(cost.sql, cost.params({"c_id": b.task_id, "c_add": b.add_cost}))
            done = False
            if b.task is not None:
                end = self._task_end_statement(tuple(sorted(b.task.fields)))
                params = end.params(_task_end_params(b))
                if postgres:
                    cursor.execute(end.sql, params, prepare=_prepare(cursor))
                else:
                    cursor.execute(end.sql, params)
                done = cursor.rowcount > 0
            results.append(Written.APPLIED if done else Written.WRITTEN)
        return results

    def _kept_connection(self) -> PoolProxiedConnection | None:
        with self._kept_lock:
            return self._kept.pop() if self._kept else None

    def _keep(self, raw: PoolProxiedConnection) -> bool:
        """Keep ``raw`` for the next commit, if the pool can spare it (False: return it)."""
        pool = self.engine.pool
        if getattr(pool, "size", lambda: 0)() < _KEEP_FROM_POOL_SIZE:
            return False
        with self._kept_lock:
            if self._closed or len(self._kept) >= _KEPT_CONNECTIONS:
                return False
            self._kept.append(raw)
            return True

    def prepare(self) -> None:
        """Build the journal's statements for new tasks and the usual task ends now (an
        engine calls this at start): compiling one cost 0.43 ms of the first task's final
        commit."""
        keys = tuple(new_task_values(ExecutionPlan.model_construct(name="", steps=[])))
        self._create_statement(keys)
        for fields in _USUAL_TASK_ENDS:
            self._task_end_statement(fields)
        self.move_left_step_ends()

    def move_step_ends(self, task_ids: Sequence[str]) -> None:
        """Move the step rows waiting in ``step_ends`` for ``task_ids`` into ``step_runs``
        (Postgres; elsewhere there are none). A read of a task's steps does this first; it
        writes nothing when nothing waits. Two movers of the same rows take turns: the second
        finds them gone. One statement in autocommit mode: a read pays one round trip for
        it, not three."""
        if not self._upsert_steps.postgres or not task_ids:
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(self._upsert_steps.move_sql, (list(task_ids),))

    def move_left_step_ends(self) -> list[str]:
        """Move every task's step rows waiting in ``step_ends`` (what a process that stopped
        left; an engine's start calls this), task by task: a task whose rows cannot be moved
        is logged and left, the others are moved. Returns the tasks left."""
        if not self._upsert_steps.postgres:
            return []
        with self.reader.connect() as conn:
            waiting = conn.exec_driver_sql("SELECT DISTINCT task_id FROM step_ends").scalars()
            waiting = list(waiting)
        left = []
        for task_id in waiting:
            try:
                self.move_step_ends([task_id])
            except DBAPIError as exc:
                logger.error("could not move the last step rows of task %s: %s", task_id, exc.orig)
                left.append(task_id)
        return left

    def _take_unmoved(self) -> set[str]:
        with self._kept_lock:
            moving, self._unmoved = self._unmoved, set()
        return moving

    def move_unmoved(self) -> None:
        """Move what this store's commits left in ``step_ends`` and no commit has moved since
        (an engine calls this in its lease round and when it stops)."""
        moving = self._take_unmoved()
        try:
            self.move_step_ends(sorted(moving))
        except DBAPIError as exc:
            logger.warning(
                "could not move the last step rows of %d tasks now: %s", len(moving), exc.orig
            )

    def _move_unmoved_in(self, cursor: Any) -> None:
        """``move_unmoved`` in a journal commit's transaction, under a savepoint: if the move
        fails (a lock timeout, say), the commit goes on without it, and the rows wait in
        ``step_ends`` for a read of their task's steps or an engine's start."""
        moving = self._take_unmoved()
        conn = cursor.connection
        try:
            with conn.transaction():
                cursor.execute(
                    self._upsert_steps.move_sql, [sorted(moving)], prepare=_prepare(cursor)
                )
        except conn.DatabaseError as exc:  # (rolled back to the savepoint)
            if conn.closed:
                raise
            logger.warning(
                "could not move the last step rows of %d tasks now: %s", len(moving), exc
            )

    def _create_statement(self, keys: tuple[str, ...]) -> _DriverStatement:
        return self._statement(("create", keys), lambda: (sa.insert(TaskRow), keys))

    def _task_end_statement(self, fields: tuple[str, ...]) -> _DriverStatement:
        return self._statement(("task end", fields), lambda: (self._task_end(fields), None))

    def _statement(
        self,
        key: tuple[Any, ...],
        build: Callable[[], tuple[sa.Insert | sa.Update, Sequence[str] | None]],
    ) -> _DriverStatement:
        """The driver statement ``build`` makes (a Core statement, and for an insert its
        columns), compiled once for this store's database."""
        stmt = self._driver_statements.get(key)
        if stmt is None:
            core, columns = build()
            stmt = self._driver_statements[key] = _DriverStatement(
                core, self.engine.dialect, columns
            )
        return stmt

    @contextmanager
    def _sqlalchemy_errors(self, raw: PoolProxiedConnection) -> Iterator[None]:
        """Errors of statements run on ``raw``'s driver cursor as SQLAlchemy raises its own:
        the matching ``DBAPIError``, a lost connection invalidated and marked so (callers
        must not write again what may have been committed: ``commit_outcome_unknown``)."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        try:
            yield
        except dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw.dbapi_connection, None)
            if lost:
                raw.invalidate(exc)
            raise DBAPIError.instance(
                None, None, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
            ) from exc

    def _owned(self, conn: sa.Connection, runs: Sequence[tuple[str, str | None]]) -> list[bool]:
        """Per (task, executor): whether the executor holds the task (``_holders_ok``).

        Run on the driver's cursor: in a journal commit, SQLAlchemy's handling of the query
        cost 25 times the query itself on SQLite (0.2 ms against 0.007).
        """
        with _driver_cursor(conn) as cursor:
            return _holders_ok(cursor, conn.dialect.name == "postgresql", runs)

    def _task_end(self, fields: tuple[str, ...]) -> sa.Update:
        """The update of a running task's row setting ``fields`` (built once per field set)."""
        stmt = self._task_ends.get(fields)
        if stmt is None:
            table = cast(sa.Table, TaskRow.__table__)
            stmt = (
                sa.update(table)
                .where(table.c.task_id == sa.bindparam("t_id"))
                .where(table.c.status == TaskStatus.RUNNING.value)
                .values(
                    status=sa.bindparam("t_status"),
                    updated_at=sa.bindparam("t_now", type_=table.c.updated_at.type),
                    **{k: sa.bindparam(f"t_{k}", type_=table.c[k].type) for k in fields},
                )
            )
            self._task_ends[fields] = stmt
        return stmt

    def artifacts(self, task_id: str) -> list[ArtifactRecord]:
        with self.read() as s:
            rows = s.scalars(
                sa.select(ArtifactRow)
                .where(ArtifactRow.task_id == task_id)
                .order_by(ArtifactRow.id)
            ).all()
            return [
                ArtifactRecord(
                    step_id=r.step_id,
                    path=r.path,
                    media_type=r.media_type,
                    size=r.size,
                    sha256=r.sha256,
                )
                for r in rows
            ]

    # Approvals ---------------------------------------------------------------------------
    def request_approval(
        self,
        task_id: str,
        step_id: str | None,
        *,
        expires_in: timedelta,
        auto_by: str | None = None,
        only_executor: str | None = None,
    ) -> Approval:
        """The approval for (task, step): the newest one, or a new pending (or auto-approved)
        one (with ``only_executor``, created only while that executor holds the task)."""
        with self.read() as s:  # a resumed task finds its decided approval: no write lock
            row = s.scalars(_newest_approval(task_id, step_id)).first()
            if row is not None:
                return _approval(row)
        with self.session() as s, s.begin():
            _held(s, task_id, only_executor)  # locked: one creator at a time per task
            row = s.scalars(_newest_approval(task_id, step_id)).first()
            if row is not None:
                return _approval(row)
            now = utcnow()
            row = ApprovalRow(
                approval_id=uuid.uuid4().hex,
                task_id=task_id,
                step_id=step_id,
                status=(ApprovalStatus.APPROVED if auto_by else ApprovalStatus.PENDING).value,
                requested_at=now,
                expires_at=now + expires_in,
                decided_at=now if auto_by else None,
                decided_by=auto_by,
            )
            s.add(row)
            return _approval(row)

    def approvals(self, task_id: str) -> list[Approval]:
        with self.read() as s:
            rows = s.scalars(
                sa.select(ApprovalRow)
                .where(ApprovalRow.task_id == task_id)
                .order_by(ApprovalRow.requested_at)
            ).all()
            return [_approval(r) for r in rows]

    def decide(
        self,
        task_id: str,
        *,
        approved: bool,
        comment: str | None,
        decided_by: str | None,
        step_id: str | None = None,
    ) -> list[Approval]:
        """Decide every pending approval of the task (or only ``step_id``'s)."""
        decision = Decision(
            task_id=task_id, comment=comment, decided_by=decided_by, step_id=step_id
        )
        return _one(self._decide([decision], approved=approved))[0]

    def reject_task(self, task_id: str, *, comment: str, decided_by: str | None) -> None:
        """Reject every pending gate, mark the gated steps and the task rejected and store the
        feedback — in one transaction."""
        decision = Decision(task_id=task_id, comment=comment, decided_by=decided_by)
        _one(self._decide([decision], approved=False, settle=True))

    def approve_and_claim(
        self,
        task_id: str,
        *,
        comment: str | None,
        decided_by: str | None,
        step_id: str | None = None,
        revisions: Sequence[ChannelVariant] = (),
        round_: int | None = None,
        executor_id: str | None = None,
    ) -> tuple[int | None, tuple[Task, list[StepRun]] | None]:
        """Approve, and once no gate is left pending queue the task again — in one transaction.

        ``revisions``: a person's edits of round ``round_``'s variants, stored in the same
        transaction (an approval never goes without its edits, nor edits without it). With
        ``executor_id``, a task that may go on is claimed by that executor in the same
        transaction instead (running, with its step runs loaded), for a process that resumes
        it at once. Returns the new run generation (None while other gates still wait) and the
        claimed task.
        """
        decision = Decision(
            task_id=task_id,
            comment=comment,
            decided_by=decided_by,
            step_id=step_id,
            revisions=tuple(revisions),
            round=round_,
        )
        _, generation, claimed = _one(
            self._decide([decision], approved=True, settle=True, claim_for=executor_id)
        )
        return generation, claimed

    def approve_many(
        self, decisions: Sequence[Decision], *, executor_id: str | None = None
    ) -> list[Decided | ConflictError | NotFoundError]:
        """``approve_and_claim`` for several decisions in one transaction (approvals that
        arrive together): one result per decision, in order; a decision that cannot apply
        (unknown task, not awaiting approval, expired) gets its error in its place and
        changes nothing, and the others apply. Decisions are applied in order, so a second
        one for the same task sees the first's effect."""
        return self._decide(decisions, approved=True, settle=True, claim_for=executor_id)

    def _decide(
        self,
        decisions: Sequence[Decision],
        *,
        approved: bool,
        settle: bool = False,
        claim_for: str | None = None,
    ) -> list[Decided | ConflictError | NotFoundError]:
        """``settle``: the task must await approval, and the decision moves it on in the same
        transaction (approved with no gate left: queued again, or with ``claim_for`` running
        on that executor; rejected: finished)."""
        now = utcnow()
        task_ids = sorted({d.task_id for d in decisions})
        # Expire first, in its own transaction: a refusal below must not roll the expiry back.
        self.expire_approvals(now=now, task_ids=task_ids)
        with self.session() as s, s.begin():
            # (Locked in one order, so two batches cannot deadlock.)
            tasks = {
                row.task_id: row
                for row in s.scalars(
                    sa.select(TaskRow)
                    .where(TaskRow.task_id.in_(task_ids))
                    .order_by(TaskRow.task_id)
                    .with_for_update()
                )
            }
            gates: dict[str, list[ApprovalRow]] = {t: [] for t in task_ids}
            for row in s.scalars(
                sa.select(ApprovalRow)
                .where(
                    ApprovalRow.task_id.in_(task_ids),
                    ApprovalRow.status.in_(
                        [ApprovalStatus.PENDING.value, ApprovalStatus.EXPIRED.value]
                    ),
                )
                .order_by(ApprovalRow.task_id, ApprovalRow.requested_at, ApprovalRow.approval_id)
                .with_for_update()
            ):
                gates[row.task_id].append(row)
            results: list[Decided | ConflictError | NotFoundError] = []
            for d in decisions:
                try:
                    results.append(
                        self._apply_decision(
                            s,
                            tasks.get(d.task_id),
                            gates[d.task_id],
                            d,
                            approved=approved,
                            settle=settle,
                            claim_for=claim_for,
                            now=now,
                        )
                    )
                except (ConflictError, NotFoundError) as exc:
                    results.append(exc)
            claimed = [
                i for i, r in enumerate(results) if isinstance(r, tuple) and r[1] is not None
            ]
            if claim_for is None or not claimed:
                return results
            s.flush()
            runs: dict[str, list[StepRun]] = {}
            for row in s.scalars(
                sa.select(StepRunRow)
                .where(StepRunRow.task_id.in_({decisions[i].task_id for i in claimed}))
                .order_by(StepRunRow.id)
            ):
                runs.setdefault(row.task_id, []).append(_step(row))
            for i in claimed:
                decided, generation, _ = cast(Decided, results[i])
                task = tasks[decisions[i].task_id]
                results[i] = (decided, generation, (_task(task), runs.get(task.task_id, [])))
            return results

    def _apply_decision(
        self,
        s: Session,
        task: TaskRow | None,
        gates: list[ApprovalRow],
        d: Decision,
        *,
        approved: bool,
        settle: bool,
        claim_for: str | None,
        now: datetime,
    ) -> Decided:
        """One decision, inside ``_decide``'s transaction: every check before any change, so a
        refused decision leaves nothing behind."""
        task_id = d.task_id
        if task is None:
            raise NotFoundError("task", task_id)
        if settle and task.status != TaskStatus.AWAITING_APPROVAL.value:
            raise ConflictError(
                f"task {task_id!r} is {task.status}, not awaiting approval", task_id=task_id
            )
        if d.revisions and (task.phase != PipelinePhase.APPROVAL.value or task.round != d.round):
            raise ConflictError(
                f"the result of task {task_id!r} changed since it was read "
                f"(now round {task.round}, phase {task.phase}): reload it and edit again",
                task_id=task_id,
            )
        pending = [g for g in gates if g.status == ApprovalStatus.PENDING.value]
        rows = [g for g in pending if d.step_id is None or g.step_id == d.step_id]
        if not rows:
            expired = next((g for g in gates if g.status == ApprovalStatus.EXPIRED.value), None)
            if expired is not None:
                raise ConflictError(
                    f"the approval of task {task_id!r} expired at {_aware(expired.expires_at)}",
                    task_id=task_id,
                )
            raise ConflictError(
                f"task {task_id!r} has no pending approval (status {task.status})",
                task_id=task_id,
            )
        due = [r for r in rows if r.expires_at is not None and _aware(r.expires_at) <= now]
        decided = [r for r in rows if r not in due]
        if not decided:
            raise ConflictError(f"the approval of task {task_id!r} has expired", task_id=task_id)
        if d.revisions:
            self._add_revisions(s, task_id, d.round, d.revisions, now=now)
        for r in due:
            r.status = ApprovalStatus.EXPIRED.value
        for r in decided:
            r.status = (ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED).value
            r.decided_at = now
            r.decided_by = d.decided_by
            r.comment = d.comment
        if d.comment:
            s.add(
                FeedbackRow(
                    task_id=task_id,
                    approval_id=decided[0].approval_id,
                    kind="approval" if approved else "rejection",
                    text=d.comment,
                    author=d.decided_by,
                    created_at=now,
                )
            )
        generation: int | None = None
        if settle and not approved:
            error = f"rejected: {d.comment}" if d.comment else "rejected"
            s.execute(
                sa.update(StepRunRow)
                .where(
                    StepRunRow.task_id == task_id,
                    StepRunRow.status == StepStatus.AWAITING_APPROVAL.value,
                )
                .values(status=StepStatus.REJECTED.value, error=error, finished_at=now)
            )
            task.status = TaskStatus.REJECTED.value
            task.finished_at = now
            task.error = error
            task.updated_at = now
        if settle and approved and not any(g.status == ApprovalStatus.PENDING.value for g in gates):
            task.run_generation += 1
            task.status = TaskStatus.QUEUED.value
            task.updated_at = now
            generation = task.run_generation
            if claim_for is not None:
                task.status = TaskStatus.RUNNING.value
                task.executor_id = claim_for
                task.started_at = task.started_at or now
        return [_approval(r) for r in decided], generation, None

    def cancel_approvals(self, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(ApprovalRow)
                .where(
                    ApprovalRow.task_id == task_id,
                    ApprovalRow.status == ApprovalStatus.PENDING.value,
                )
                .values(status=ApprovalStatus.CANCELLED.value, decided_at=utcnow())
            )

    def expire_approvals(
        self, *, now: datetime | None = None, task_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Expire pending approvals past their deadline (of these tasks, or all); returns the
        task ids."""
        now = now or utcnow()
        q = sa.select(ApprovalRow).where(
            ApprovalRow.status == ApprovalStatus.PENDING.value, ApprovalRow.expires_at <= now
        )
        if task_ids is not None:
            q = q.where(ApprovalRow.task_id.in_(list(task_ids)))
        with self.reader.connect() as conn:  # mostly nothing is due: no write transaction then
            if conn.execute(q.with_only_columns(ApprovalRow.approval_id).limit(1)).first() is None:
                return []
        with self.session() as s, s.begin():
            # Tasks first, in id order, as a decision locks them (then their approvals): the
            # other order deadlocked with a decision on Postgres. A task being decided right
            # now is skipped: the decision expires its due approvals itself.
            due = s.scalars(q.with_only_columns(ApprovalRow.task_id).distinct()).all()
            locked = s.scalars(
                sa.select(TaskRow.task_id)
                .where(TaskRow.task_id.in_(due))
                .order_by(TaskRow.task_id)
                .with_for_update(skip_locked=True)
            ).all()
            if not locked:
                return []
            rows = list(
                s.scalars(
                    q.where(ApprovalRow.task_id.in_(locked))
                    .order_by(ApprovalRow.task_id, ApprovalRow.approval_id)
                    .with_for_update()
                )
            )
            for r in rows:
                r.status = ApprovalStatus.EXPIRED.value
                r.decided_at = now
            task_ids = sorted({r.task_id for r in rows})
            if task_ids:
                s.execute(
                    sa.update(TaskRow)
                    .where(
                        TaskRow.task_id.in_(task_ids),
                        TaskRow.status == TaskStatus.AWAITING_APPROVAL.value,
                    )
                    .values(
                        status=TaskStatus.EXPIRED.value,
                        finished_at=now,
                        updated_at=now,
                        error="approval expired",
                    )
                )
            return task_ids

    def feedback(self, task_id: str) -> list[dict[str, Any]]:
        with self.read() as s:
            rows = s.scalars(
                sa.select(FeedbackRow)
                .where(FeedbackRow.task_id == task_id)
                .order_by(FeedbackRow.id)
            ).all()
            return [
                {
                    "kind": r.kind,
                    "text": r.text,
                    "author": r.author,
                    "created_at": _aware(r.created_at),
                }
                for r in rows
            ]

    # Pipeline: assessments, variants, refinement, records ---------------------------------
    def save_assessment(
        self,
        task_id: str,
        assessment: QualityAssessment,
        *,
        trigger: str,
        only_executor: str | None = None,
    ) -> QualityAssessment:
        """Store the assessment of ``assessment.round``; a stored one for that round wins
        (a resumed run never assesses the same result twice)."""
        with self.session() as s, s.begin():
            _held(s, task_id, only_executor)
            row = s.scalars(
                sa.select(AssessmentRow).where(
                    AssessmentRow.task_id == task_id, AssessmentRow.round == assessment.round
                )
            ).first()
            if row is not None:
                return QualityAssessment.model_validate(row.body)
            s.add(
                AssessmentRow(
                    task_id=task_id,
                    round=assessment.round,
                    trigger=trigger,
                    overall=assessment.overall_score,
                    passed=assessment.passed,
                    body=assessment.model_dump(mode="json"),
                    created_at=utcnow(),
                )
            )
            s.execute(
                sa.update(TaskRow)
                .where(TaskRow.task_id == task_id)
                .values(quality_score=assessment.overall_score, updated_at=utcnow())
            )
        return assessment

    def assessments(self, task_id: str) -> list[tuple[str, QualityAssessment]]:
        """(trigger, assessment) of every round, oldest first."""
        with self.read() as s:
            rows = s.scalars(
                sa.select(AssessmentRow)
                .where(AssessmentRow.task_id == task_id)
                .order_by(AssessmentRow.round)
            ).all()
            return [(r.trigger, QualityAssessment.model_validate(r.body)) for r in rows]

    def save_variants(
        self,
        task_id: str,
        round_: int,
        variants: Sequence[ChannelVariant],
        artifacts: Sequence[ArtifactRecord] = (),
        *,
        only_executor: str | None = None,
    ) -> None:
        """The formatted variants of a round and their files (replacing an earlier formatting:
        the files of the same names were overwritten)."""
        now = utcnow()
        step_ids = {a.step_id for a in artifacts}
        with self.session() as s, s.begin():
            if only_executor is not None:
                _held(s, task_id, only_executor)
            s.execute(
                sa.delete(VariantRow).where(
                    VariantRow.task_id == task_id, VariantRow.round == round_
                )
            )
            if step_ids:
                s.execute(
                    sa.delete(ArtifactRow).where(
                        ArtifactRow.task_id == task_id, ArtifactRow.step_id.in_(step_ids)
                    )
                )
            s.add_all(_variant_row(task_id, round_, v, now) for v in variants)
            s.add_all(_artifact_row(task_id, a, now) for a in artifacts)

    def add_variant_revision(self, task_id: str, round_: int, variant: ChannelVariant) -> None:
        """Store a person's edit; a concurrent edit of the same revision is a conflict."""
        with self.session() as s, s.begin():
            self._add_revisions(s, task_id, round_, [variant], now=utcnow())

    @staticmethod
    def _add_revisions(
        s: Session,
        task_id: str,
        round_: int | None,
        variants: Sequence[ChannelVariant],
        *,
        now: datetime,
    ) -> None:
        for variant in variants:
            try:
                with s.begin_nested():
                    s.add(_variant_row(task_id, round_, variant, now))
            except IntegrityError:
                raise ConflictError(
                    f"another edit of {variant.key} (revision {variant.revision}) was stored "
                    "at the same time: reload the result and edit again",
                    task_id=task_id,
                ) from None

    def replace_artifacts(
        self,
        task_id: str,
        artifacts: Sequence[ArtifactRecord],
        *,
        only_executor: str | None = None,
    ) -> None:
        """Files written again (same paths, new contents): their rows get the new size and hash."""
        now = utcnow()
        with self.session() as s, s.begin():
            if only_executor is not None:
                _held(s, task_id, only_executor)
            for a in artifacts:
                s.execute(
                    sa.delete(ArtifactRow).where(
                        ArtifactRow.task_id == task_id,
                        ArtifactRow.step_id == a.step_id,
                        ArtifactRow.path == a.path,
                    )
                )
                s.add(_artifact_row(task_id, a, now))

    def variants(
        self, task_id: str, round_: int | None = None, *, all_revisions: bool = False
    ) -> list[ChannelVariant]:
        """The variants of a round (default: the latest formatted round), newest revision of
        each unless ``all_revisions``."""
        with self.read() as s:
            if round_ is None:
                round_ = s.scalar(
                    sa.select(sa.func.max(VariantRow.round)).where(VariantRow.task_id == task_id)
                )
                if round_ is None:
                    return []
            rows = s.scalars(
                sa.select(VariantRow)
                .where(VariantRow.task_id == task_id, VariantRow.round == round_)
                .order_by(VariantRow.id)
            ).all()
        out: dict[tuple[str, int], ChannelVariant] = {}
        for r in rows:
            out[(r.key, r.revision if all_revisions else 0)] = ChannelVariant.model_validate(r.body)
        return list(out.values())

    def reset_for_refinement(
        self,
        task_id: str,
        step_ids: Sequence[str],
        *,
        round_: int,
        phase: PipelinePhase,
        only_executor: str | None = None,
    ) -> None:
        """Keep the current run of each step in ``step_history`` (under the round it belonged
        to), set the steps pending again, and move the task to ``round_`` and ``phase`` — in
        one transaction, so a crash leaves either the old result or the reset."""
        with self.session() as s, s.begin():
            task = _held(s, task_id, only_executor)
            if task.round < round_:  # else already done (a resumed run)
                _reset_steps(s, task, step_ids, round_=round_, phase=phase)

    def revise_and_requeue(
        self,
        task_id: str,
        *,
        gate: str,
        comment: str,
        decided_by: str | None,
        step_ids: Sequence[str],
    ) -> int:
        """A reviewer sends the result back: the gate's approval becomes ``revise`` with the
        feedback, the steps are reset for the next round and the task is queued again — in one
        transaction. Returns the new run generation."""
        now = utcnow()
        self.expire_approvals(now=now, task_ids=[task_id])
        with self.session() as s, s.begin():
            task = s.get(TaskRow, task_id, with_for_update=True)
            if task is None:
                raise NotFoundError("task", task_id)
            row = s.scalars(
                sa.select(ApprovalRow)
                .where(
                    ApprovalRow.task_id == task_id,
                    ApprovalRow.step_id == gate,
                    ApprovalRow.status == ApprovalStatus.PENDING.value,
                )
                .with_for_update()
            ).first()
            if task.status != TaskStatus.AWAITING_APPROVAL.value or row is None:
                raise ConflictError(
                    f"task {task_id!r} is {task.status}, not awaiting review", task_id=task_id
                )
            row.status = ApprovalStatus.REVISE.value
            row.decided_at = now
            row.decided_by = decided_by
            row.comment = comment
            s.add(
                FeedbackRow(
                    task_id=task_id,
                    approval_id=row.approval_id,
                    kind="revision",
                    text=comment,
                    author=decided_by,
                    created_at=now,
                )
            )
            _reset_steps(s, task, step_ids, round_=task.round + 1, phase=PipelinePhase.REFINE)
            task.run_generation += 1
            task.status = TaskStatus.QUEUED.value
            task.updated_at = now
            return task.run_generation

    def restore_round(
        self,
        task_id: str,
        round_: int,
        *,
        assessment: QualityAssessment | None = None,
        only_executor: str | None = None,
    ) -> list[str]:
        """A refinement round (``round_+1``) failed or scored lower: its runs go to
        ``step_history`` under that round and the runs of ``round_`` come back, so the result
        a person reviews is the last one that was whole (or the better one). The task moves on
        to a fresh round ``round_+2`` (a round number is never reused: its review gate may
        already hold a decision), escalated. ``assessment``: round ``round_``'s, stored again
        as the fresh round's (trigger ``restored``), so the result and its assessment match.
        Returns the steps restored."""
        now = utcnow()
        with self.session() as s, s.begin():
            task = _held(s, task_id, only_executor)
            kept = s.scalars(
                sa.select(StepHistoryRow)
                .where(StepHistoryRow.task_id == task_id, StepHistoryRow.round == round_)
                .order_by(StepHistoryRow.id)
            ).all()
            restored = []
            for h in kept:
                run = s.scalars(
                    sa.select(StepRunRow).where(
                        StepRunRow.task_id == task_id, StepRunRow.step_id == h.step_id
                    )
                ).first()
                if run is None:
                    continue
                s.add(
                    StepHistoryRow(
                        task_id=task_id,
                        step_id=h.step_id,
                        round=round_ + 1,
                        body=_step(run).model_dump(mode="json"),
                        created_at=now,
                    )
                )
                old = StepRun.model_validate(h.body)
                run.status = old.status.value
                run.output = old.output
                run.error = old.error
                run.started_at = old.started_at
                run.finished_at = old.finished_at
                run.duration_ms = old.duration_ms
                s.delete(h)
                restored.append(h.step_id)
            task.round = round_ + 2
            task.needs_human = True
            task.phase = PipelinePhase.FORMAT.value
            task.updated_at = now
            if assessment is not None:
                again = assessment.model_copy(update={"round": task.round})
                s.add(
                    AssessmentRow(
                        task_id=task_id,
                        round=again.round,
                        trigger="restored",
                        overall=again.overall_score,
                        passed=again.passed,
                        body=again.model_dump(mode="json"),
                        created_at=now,
                    )
                )
                task.quality_score = again.overall_score
            return restored

    def step_history(self, task_id: str) -> list[tuple[int, StepRun]]:
        """Earlier runs of refined steps: (round, run), oldest first."""
        with self.read() as s:
            rows = s.scalars(
                sa.select(StepHistoryRow)
                .where(StepHistoryRow.task_id == task_id)
                .order_by(StepHistoryRow.id)
            ).all()
            return [(r.round, StepRun.model_validate(r.body)) for r in rows]

    def save_record(self, record: ExecutionRecord, *, only_executor: str | None = None) -> None:
        now = utcnow()
        quality = record.quality[-1].get("score") if record.quality else None
        with self.session() as s, s.begin():
            if only_executor is not None:
                _held(s, record.task_id, only_executor)
            row = s.get(ExecutionRecordRow, record.task_id, with_for_update=True)
            if row is None:
                s.add(
                    ExecutionRecordRow(
                        task_id=record.task_id,
                        outcome=record.outcome,
                        quality=quality,
                        body=record.model_dump(mode="json"),
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                row.outcome = record.outcome
                row.quality = quality
                row.body = record.model_dump(mode="json")
                row.updated_at = now

    def execution_record(self, task_id: str) -> ExecutionRecord | None:
        with self.read() as s:
            row = s.get(ExecutionRecordRow, task_id)
            return None if row is None else ExecutionRecord.model_validate(row.body)

    def execution_records(self, *, limit: int = 1000) -> list[ExecutionRecord]:
        with self.read() as s:
            rows = s.scalars(
                sa.select(ExecutionRecordRow)
                .order_by(ExecutionRecordRow.updated_at.desc())
                .limit(limit)
            ).all()
            return [ExecutionRecord.model_validate(r.body) for r in rows]

    # Side-effect ledger ------------------------------------------------------------------
    def effect(self, key: str) -> EffectRecord | None:
        with self.read() as s:
            row = s.get(SideEffectRow, key)
            return (
                None
                if row is None
                else EffectRecord(key=key, status=row.status, receipt=row.receipt)
            )

    def effect_started(self, key: str, *, task_id: str, step_id: str, tool: str) -> EffectRecord:
        """Record that the effect ``key`` is about to happen (kept if already recorded); its
        state after that, in the same transaction: ``done`` means it happened already."""
        return self.effects_started(
            [EffectStart(key=key, task_id=task_id, step_id=step_id, tool=tool)]
        )[0]

    def effects_started(self, starts: Sequence[EffectStart]) -> list[EffectRecord]:
        """``effect_started`` for several effects in one transaction, one record each. An
        effect whose ``executor_id`` no longer holds its task is not recorded: its record says
        :data:`NOT_OWNER`, and the caller must not act."""
        now = utcnow()
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(SideEffectRow).on_conflict_do_nothing(index_elements=["idempotency_key"])
        with self.engine.begin() as conn:
            owned = self._owned(conn, [(e.task_id, e.executor_id) for e in starts])
            live = [e for e, ok in zip(starts, owned, strict=True) if ok]
            found: dict[str, tuple[str, Any]] = {}
            if live:
                conn.execute(
                    stmt,
                    [
                        {
                            "idempotency_key": e.key,
                            "task_id": e.task_id,
                            "step_id": e.step_id,
                            "tool": e.tool,
                            "status": "started",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for e in live
                    ],
                )
                found = {
                    key: (status, receipt)
                    for key, status, receipt in conn.execute(
                        sa.select(
                            SideEffectRow.idempotency_key,
                            SideEffectRow.status,
                            SideEffectRow.receipt,
                        ).where(SideEffectRow.idempotency_key.in_({e.key for e in live}))
                    )
                }
        return [
            EffectRecord(key=e.key, status=found[e.key][0], receipt=found[e.key][1])
            if ok
            else EffectRecord(key=e.key, status=NOT_OWNER, receipt=None)
            for e, ok in zip(starts, owned, strict=True)
        ]

    def effect_done(self, key: str, receipt: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(_effects_done()[0], {"e_key": key, "e_receipt": receipt, "e_at": utcnow()})

    def effects(self, task_id: str) -> list[EffectRecord]:
        with self.read() as s:
            rows = s.scalars(sa.select(SideEffectRow).where(SideEffectRow.task_id == task_id)).all()
            return [
                EffectRecord(key=r.idempotency_key, status=r.status, receipt=r.receipt)
                for r in rows
            ]

    # Executors ---------------------------------------------------------------------------
    def register_executor(
        self, executor_id: str, *, kind: str, host: str, pid: int, lease: timedelta
    ) -> None:
        try:
            self._register_executor(executor_id, kind=kind, host=host, pid=pid, lease=lease)
        except IntegrityError:
            # Another process inserted the same new id at the same moment: the check now sees it.
            self._register_executor(executor_id, kind=kind, host=host, pid=pid, lease=lease)

    def _register_executor(
        self, executor_id: str, *, kind: str, host: str, pid: int, lease: timedelta
    ) -> None:
        now = utcnow()
        with self.session() as s, s.begin():
            row = s.get(ExecutorRow, executor_id, with_for_update=True)
            if (
                row is not None
                and row.status == "alive"
                and row.pid != pid
                and _aware(row.heartbeat_at) > now - lease
            ):
                raise ConflictError(
                    f"executor id {executor_id!r} is in use by pid {row.pid} on {row.host!r} (heartbeat {_aware(row.heartbeat_at)})"
                )
            if row is None:
                s.add(
                    ExecutorRow(
                        executor_id=executor_id,
                        kind=kind,
                        host=host,
                        pid=pid,
                        status="alive",
                        started_at=now,
                        heartbeat_at=now,
                    )
                )
            else:
                row.kind, row.host, row.pid, row.status = kind, host, pid, "alive"
                row.started_at = row.heartbeat_at = now
                row.recovered_by = row.recovered_at = None

    def heartbeat(self, executor_id: str) -> bool:
        """Renew an executor's lease; False when it is no longer alive (taken over)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    sa.update(ExecutorRow)
                    .where(ExecutorRow.executor_id == executor_id, ExecutorRow.status == "alive")
                    .values(heartbeat_at=utcnow())
                ).rowcount
                > 0
            )

    def stop_executor(self, executor_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(ExecutorRow)
                .where(ExecutorRow.executor_id == executor_id)
                .values(status="stopped", heartbeat_at=utcnow())
            )

    def claim_dead_executors(self, *, me: str, lease: timedelta) -> list[str]:
        """Atomically take over executors whose lease ran out (or that stopped); returns their ids."""
        now = utcnow()
        cutoff = now - lease
        # Stopped cleanly, or silent past its lease: its pending task runs may be taken over.
        dead = sa.or_(
            sa.and_(ExecutorRow.status == "alive", ExecutorRow.heartbeat_at < cutoff),
            ExecutorRow.status == "stopped",
        )
        claimed: list[str] = []
        with self.engine.begin() as conn:
            candidates = (
                conn.execute(
                    sa.select(ExecutorRow.executor_id).where(
                        ExecutorRow.executor_id != me,
                        dead,
                    )
                )
                .scalars()
                .all()
            )
        for ex in candidates:
            with self.engine.begin() as conn:
                done = conn.execute(
                    sa.update(ExecutorRow)
                    .where(
                        ExecutorRow.executor_id == ex,
                        dead,
                    )
                    .values(status="recovered", recovered_by=me, recovered_at=now)
                ).rowcount
            if done:
                claimed.append(ex)
        return claimed

    def release_executor(self, executor_id: str) -> None:
        """Give back a dead executor this process claimed but could not recover: another
        round (of any process) claims it again."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(ExecutorRow)
                .where(ExecutorRow.executor_id == executor_id, ExecutorRow.status == "recovered")
                .values(status="stopped", recovered_by=None, recovered_at=None)
            )

    def orphaned_runs(
        self,
        cutoff: datetime,
        *,
        me: str | None = None,
        after: RunRef | None = None,
        limit: int = 100,
    ) -> list[RunRef]:
        """Tasks running, untouched since before ``cutoff``, on an executor that is not alive
        with a heartbeat since ``cutoff`` (or on none), or on ``me``: oldest first, from after
        ``after``."""
        alive = sa.exists().where(
            ExecutorRow.executor_id == TaskRow.executor_id,
            ExecutorRow.status == "alive",
            ExecutorRow.heartbeat_at >= cutoff,
        )
        whose = ~alive if me is None else sa.or_(~alive, TaskRow.executor_id == me)
        return self._page(
            sa.and_(TaskRow.status == TaskStatus.RUNNING.value, whose), cutoff, after, limit
        )

    def queued_before(
        self, cutoff: datetime, *, after: RunRef | None = None, limit: int = 100
    ) -> list[RunRef]:
        """Tasks queued and untouched since before ``cutoff``: oldest first, from after
        ``after``."""
        return self._page(TaskRow.status == TaskStatus.QUEUED.value, cutoff, after, limit)

    def _page(
        self,
        where: sa.ColumnElement[bool],
        cutoff: datetime,
        after: RunRef | None,
        limit: int,
    ) -> list[RunRef]:
        q = sa.select(TaskRow.task_id, TaskRow.run_generation, TaskRow.updated_at).where(
            where, TaskRow.updated_at < cutoff
        )
        if after is not None:
            q = q.where(
                sa.tuple_(TaskRow.updated_at, TaskRow.task_id) > (after.updated_at, after.task_id)
            )
        with self.reader.connect() as conn:
            rows = conn.execute(q.order_by(TaskRow.updated_at, TaskRow.task_id).limit(limit))
            return [RunRef(r[0], r[1], _aware(r[2])) for r in rows]

    def live_executors(
        self, *, lease: timedelta, kinds: Iterable[str] | None = None
    ) -> list[ExecutorInfo]:
        cutoff = utcnow() - lease
        with self.read() as s:
            q = sa.select(ExecutorRow).where(
                ExecutorRow.status == "alive", ExecutorRow.heartbeat_at >= cutoff
            )
            if kinds is not None:
                q = q.where(ExecutorRow.kind.in_(list(kinds)))
            return [
                ExecutorInfo(
                    executor_id=r.executor_id,
                    kind=r.kind,
                    host=r.host,
                    pid=r.pid,
                    status=r.status,
                    started_at=_aware(r.started_at),
                    heartbeat_at=_aware(r.heartbeat_at),
                )
                for r in s.scalars(q)
            ]


_STEP_COLUMNS = (
    "task_id",
    "step_id",
    "tool",
    "status",
    "attempt",
    "inputs",
    "output",
    "error",
    "started_at",
    "finished_at",
    "duration_ms",
    "cost",
    "executor_id",
)


class _StepUpsert:
    """The step-row upsert, compiled once and run on the driver's cursor.

    The engine's hot path: SQLAlchemy's per-row parameter handling cost about three times the
    database's own work for a 50-row group commit (and held the GIL from the event loop). On
    SQLite the values still go through each column type's own bind processor, so they are
    stored exactly as a Core insert would store them; on Postgres they travel as one JSON
    document, read into typed columns by the server. A field left None keeps its stored value
    for inputs, started_at and executor_id.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        table = cast(sa.Table, StepRunRow.__table__)
        insert = (pg_insert if dialect.name == "postgresql" else sqlite_insert)(table)
        ex = insert.excluded
        stmt = insert.on_conflict_do_update(
            index_elements=["task_id", "step_id"],
            set_={
                c: (sa.func.coalesce(ex[c], table.c[c]) if c in _KEEP else ex[c])
                for c in _STEP_COLUMNS[2:]
            },
        ).inline()
        sql = stmt.compile(dialect=dialect, column_keys=list(_STEP_COLUMNS)).string
        types = [table.c[c].type for c in _STEP_COLUMNS]
        procs = [t.dialect_impl(dialect).bind_processor(dialect) for t in types]
        if dialect.name == "sqlite":
            procs = [_sqlite_fast(t, p) for t, p in zip(types, procs, strict=True)]
        self.columns = list(zip(_STEP_COLUMNS, procs, strict=True))
        """Each column with its bind processor (SQLite's executemany)."""
        head, _, rest = sql.partition(" VALUES ")
        tail = rest[rest.index(") ON CONFLICT") + 1 :]
        self.postgres = dialect.name == "postgresql"
        if self.postgres:
            # One statement with one parameter, whatever the number of rows: the rows as one
            # JSON document, read back into columns by the server (json_to_recordset). The
            # query text stays the same (psycopg parses a long multi-row VALUES text on every
            # call, and executemany costs server work per row), and the client's work is one
            # call of the C JSON encoder (binary arrays, one per column, were dumped element
            # by element in Python).
            record = ", ".join(f"{c} {_PG_TYPES[c]}" for c in _STEP_COLUMNS)
            cols = ", ".join(_STEP_COLUMNS)
            # (WHERE true: without it Postgres may read ON CONFLICT's ON as a join's)
            self.sql = (
                f"{head} SELECT {cols} FROM json_to_recordset(%s::json) AS v({record})"
                f" WHERE true{tail}"
            )
            # A finished task's rows, kept as JSON text in step_ends (one row per task), and
            # their move into step_runs: the latest kept row of a step wins, and steps new to
            # step_runs are added in the order they were kept.
            # (The server takes the text as it is: parsing it as JSON here, or splitting one
            # document per commit, cost 0.05-0.2 ms more for a fan-out's 16 kB.)
            self.log_sql = "INSERT INTO step_ends (task_id, rows) VALUES (%s, %s)"
            names = ", ".join((*_STEP_COLUMNS, "n"))
            self.move_sql = (
                "WITH moved AS (DELETE FROM step_ends WHERE task_id = ANY(%s) RETURNING id, rows), "
                "v AS (SELECT DISTINCT ON (r.task_id, r.step_id) moved.id AS end_id, r.* "
                f"FROM moved, ROWS FROM (json_to_recordset(moved.rows::json) AS ({record})) "
                f"WITH ORDINALITY AS r({names}) "
                "ORDER BY r.task_id, r.step_id, moved.id DESC, r.n DESC) "
                f"{head} SELECT {cols} FROM v ORDER BY end_id, n{tail}"
            )
        else:
            self.sql = sql

    def run(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        """Upsert ``rows`` (one per step: ``_last_per_step``) on a driver's cursor."""
        if self.postgres:
            cursor.execute(self.sql, [_pg_rows(rows)], prepare=_prepare(cursor))
        else:
            cursor.executemany(
                self.sql,
                [
                    tuple([r[c] if proc is None else proc(r[c]) for c, proc in self.columns])
                    for r in rows
                ],
            )

    def log(self, cursor: Any, by_task: dict[str, list[dict[str, Any]]]) -> list[str]:
        """Keep finished tasks' step rows (each task's ``_last_per_step``) in step_ends
        (Postgres), those the move will surely store; returns the tasks kept. (A task with a
        row the upsert would refuse, such as a NUL character in an output, is upserted and its
        commit fails, as before: kept unchecked, the commit would pass and every move fail.)
        A task is finished once: it has one row in step_ends."""
        kept = []
        for task_id, rows in by_task.items():
            if (doc := self.keepable(rows)) is not None:
                kept.append((task_id, doc))
        if len(kept) == 1:
            cursor.execute(self.log_sql, kept[0], prepare=_prepare(cursor))
        elif kept:
            cursor.executemany(self.log_sql, kept)
        return [task_id for task_id, _ in kept]

    @staticmethod
    def keepable(rows: list[dict[str, Any]]) -> str | None:
        """The JSON text to keep ``rows`` aside as, if step_runs will take them when they
        are moved; else None (they are upserted, and a commit of what step_runs refuses
        fails at once)."""
        doc = _pg_rows(rows, strict=True)
        if doc is None or "\\u0000" in doc or not all(map(_storable, rows)):
            return None
        return doc


def _sqlite_fast(type_: Any, proc: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """``proc``, SQLAlchemy's bind processor of a step column on SQLite, or a faster one
    that stores the same: a fan-out's final commit turns 104 times and 104 JSON values into
    text, on the critical path of the task's end (0.12 ms less of a 1.9 ms commit after an
    idle spell, in-process A/B: bench/README, "Findings, twelfth session")."""
    if proc is None:
        return None
    if isinstance(type_, sa.DateTime):
        return partial(_sqlite_time, proc)
    if isinstance(type_, sa.JSON):
        return partial(_sqlite_json, proc)
    return proc


def _sqlite_time(proc: Callable[[Any], Any], value: Any) -> Any:
    """SQLAlchemy's SQLite text of a datetime ("YYYY-MM-DD HH:MM:SS.ffffff", any offset
    dropped), from ``isoformat``."""
    if type(value) is datetime:
        return value.isoformat(" ", "microseconds")[:26]
    return proc(value)


def _sqlite_json(proc: Callable[[Any], Any], value: Any) -> Any:
    """The JSON text of ``value`` (None: SQL NULL) by orjson, which the standard library
    reads back the same; whatever orjson cannot write as the standard library would (an
    integer wider than 64 bits, a datetime, an object) goes through SQLAlchemy's own
    processor. (No NaN or Infinity reaches here, which orjson would write as null: plans
    refuse them, and tools' outputs pass through pydantic's JSON mode.)"""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=_ORJSON_AS_STDLIB).decode()
    except orjson.JSONEncodeError:
        return proc(value)


_ORJSON_AS_STDLIB = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


class _DriverStatement:
    """A Core statement compiled once for the driver: its text, and its parameters as
    SQLAlchemy would send them (each through its type's bind processor, with the values of
    the statement's own literals; in the driver's order where its parameters are
    positional, as SQLite's are)."""

    def __init__(
        self, stmt: sa.Insert | sa.Update, dialect: sa.Dialect, columns: Sequence[str] | None
    ) -> None:
        compiled = stmt.compile(
            dialect=dialect, column_keys=list(columns) if columns is not None else None
        )
        self.sql = compiled.string
        names = cast(dict[sa.BindParameter[Any], str], compiled.bind_names)  # (as in the text)
        self._fixed = {
            name: b.value for b, name in names.items() if b.value is not None and not b.required
        }
        self._processors = {
            name: proc
            for b, name in names.items()
            if (proc := b.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        self._order = list(compiled.positiontup or ()) if compiled.positional else None

    def params(self, values: Mapping[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        params = {**self._fixed, **values}
        for key, proc in self._processors.items():
            if key in params:
                params[key] = proc(params[key])
        return params if self._order is None else tuple(params[k] for k in self._order)


@contextmanager
def _driver_cursor(conn: sa.Connection) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection (closed after)."""
    cursor = conn.connection.dbapi_connection.cursor()  # pyright: ignore[reportOptionalMemberAccess]  # an open connection has one
    try:
        yield cursor
    finally:
        cursor.close()


def _holders_ok(cursor: Any, postgres: bool, runs: Sequence[tuple[str, str | None]]) -> list[bool]:
    """Per (task, executor): whether the executor holds the task (True without one). On
    Postgres the rows of the tasks checked stay share-locked until the transaction ends,
    taken in task id order (as every writer of several task rows takes them)."""
    ids = sorted({task_id for task_id, executor in runs if executor is not None})
    if not ids:
        return [True] * len(runs)
    holders: dict[str, str | None] = {}
    if postgres:
        cursor.execute(_PG_HOLDERS, [ids], prepare=_prepare(cursor))
        holders.update(cursor.fetchall())
    else:
        for i in range(0, len(ids), _SQLITE_IN_CHUNK):
            chunk = ids[i : i + _SQLITE_IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            cursor.execute(_SQLITE_HOLDERS.format(marks=marks), chunk)
            holders.update(cursor.fetchall())
    return [executor is None or holders.get(task_id) == executor for task_id, executor in runs]


def _prepare(cursor: Any) -> bool | None:
    """psycopg's ``prepare`` for the journal's statements: a server-side prepared statement
    from their first use on a connection (not the fifth: a pool's connections rarely reach it
    soon), unless the connection prepares nothing (``prepare_threshold=None``, e.g. behind a
    transaction-pooling PgBouncer). Parsing and planning the three cost about 0.4 ms of the
    server's 1.5 ms for a fan-out's final commit (``log_min_duration_statement``)."""
    return None if cursor.connection.prepare_threshold is None else True


def _roll_back(raw: PoolProxiedConnection) -> None:
    """Roll back what ``raw`` (SQLite) left open; a connection that cannot is dropped (the
    error on the way out is the one to report)."""
    driver: Any = raw.dbapi_connection
    if driver is None or not driver.in_transaction:
        return
    try:
        driver.rollback()
    except Exception:
        raw.invalidate()


def _task_end_params(b: StepBatch) -> dict[str, Any]:
    """The parameters of ``Store._task_end`` for ``b``'s task update."""
    assert b.task is not None
    return {
        "t_id": b.task_id,
        "t_status": b.task.status.value,
        "t_now": utcnow(),
        **{f"t_{k}": v for k, v in b.task.fields.items()},
    }


_USUAL_TASK_ENDS = (
    (),  # parked for approval
    ("finished_at",),  # succeeded
    ("error", "finished_at"),  # rejected, or stopped
    ("error", "failed_step", "finished_at"),  # a step failed
)
"""The field sets of the task ends the engine writes (sorted, as ``_task_end_statement`` takes
them; see ``runtime._execute``'s ``finish``)."""

_KEPT_CONNECTIONS = 2
"""Connections kept for the journal's commits: one per event loop that commits at a time
(the application's and DBOS's)."""
_KEEP_FROM_POOL_SIZE = 4
"""A smaller pool keeps none (it could not spare them)."""


def _peer_spoke(raw: PoolProxiedConnection) -> bool:
    """Whether the server has sent something on this idle connection: the message and the
    close of a restart, an idle timeout or a terminated backend. (A statement that commits by
    itself must not find that out by failing: its outcome would be unknown.)"""
    driver: Any = raw.dbapi_connection
    if driver is None or driver.closed:
        return True
    readable, _, _ = select.select([driver.fileno()], [], [], 0)
    return bool(readable)


_END_ALONE = (
    "WITH h AS MATERIALIZED (SELECT executor_id FROM tasks WHERE task_id = %(t_id)s::VARCHAR "
    "FOR SHARE), "
    "k AS (INSERT INTO step_ends (task_id, rows) SELECT %(t_id)s::VARCHAR, %(x_rows)s::TEXT "
    "FROM h WHERE h.executor_id = %(x_ex)s::VARCHAR), "
    "u AS ({update} AND tasks.executor_id = %(x_ex)s::VARCHAR AND EXISTS (SELECT FROM h) "
    "RETURNING 1) "
    "SELECT (SELECT executor_id FROM h), EXISTS (SELECT FROM u)"
)
"""``Store._end_alone``'s statement around a task end's UPDATE: ``h`` is read (and the row
share-locked) before ``u`` writes it, as ``u``'s condition reads ``h``."""


class _StaleConnection(Exception):
    """A kept connection was found lost before its transaction's COMMIT (nothing written)."""


_PG_HOLDERS = (
    "SELECT task_id, executor_id FROM tasks WHERE task_id = ANY(%s) ORDER BY task_id FOR SHARE"
)
_SQLITE_HOLDERS = "SELECT task_id, executor_id FROM tasks WHERE task_id IN ({marks})"
_SQLITE_IN_CHUNK = 500

_PG_TYPES = {
    "task_id": "varchar",
    "step_id": "varchar",
    "tool": "varchar",
    "status": "varchar",
    "attempt": "integer",
    "inputs": "jsonb",
    "output": "jsonb",
    "error": "text",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "duration_ms": "float8",
    "cost": "float8",
    "executor_id": "varchar",
}
_PG_TIMES = ("started_at", "finished_at")
_PG_FLOATS = ("duration_ms", "cost")


def _storable(row: dict[str, Any]) -> bool:
    """Whether step_runs takes ``row``'s names and attempt as they are (within their
    columns' limits)."""
    return -_INT32 <= row["attempt"] < _INT32 and all(
        row[c] is None or len(row[c]) <= n for c, n in _STEP_NAME_LIMITS.items()
    )


def _name_limits() -> dict[str, int]:
    table = cast(sa.Table, StepRunRow.__table__)
    limits = {}
    for c in _STEP_COLUMNS:
        type_ = table.c[c].type
        if isinstance(type_, sa.String) and type_.length is not None:
            limits[c] = type_.length
    return limits


_INT32 = 2**31
_STEP_NAME_LIMITS = _name_limits()


@overload
def _pg_rows(rows: list[dict[str, Any]]) -> str: ...
@overload
def _pg_rows(rows: list[dict[str, Any]], *, strict: bool) -> str | None: ...
def _pg_rows(rows: list[dict[str, Any]], *, strict: bool = False) -> str | None:
    """Step rows as the JSON document the Postgres upsert reads (times in ISO 8601 with their
    offset; a JSON null is SQL NULL); ``strict``: None where only the standard library can
    write them.

    orjson writes a fan-out's 52 rows in 16 µs, the standard library in 190 (plus 90 for
    turning the times into text first): on the critical path of the task's end. A float that
    JSON has no literal for goes as its name, which float8 reads. (Inside inputs and outputs
    there is none: tools' results pass through pydantic's JSON mode, which makes them null.)
    """
    doc = rows
    if any(r[c] is not None and not math.isfinite(r[c]) for r in rows for c in _PG_FLOATS):
        doc = [{**r, **{c: _float_text(r[c]) for c in _PG_FLOATS}} for r in rows]
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # (e.g. an integer wider than 64 bits)
        if strict:  # (the standard library's text may hold what Postgres refuses)
            return None
        return json.dumps(
            [
                {**r, **{c: None if r[c] is None else r[c].isoformat() for c in _PG_TIMES}}
                for r in doc
            ]
        )


def _float_text(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


def commit_outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed transaction may have been committed all the same (its connection was
    lost on the way, e.g. during COMMIT): writing it again could apply it twice."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _held(s: Session, task_id: str, executor_id: str | None) -> TaskRow:
    """The task's row, locked until the transaction ends; with ``executor_id``, only while
    that executor holds the task (else NotHolderError: the caller writes nothing)."""
    task = s.get(TaskRow, task_id, with_for_update=True)
    if task is None:
        raise NotFoundError("task", task_id)
    if executor_id is not None and task.executor_id != executor_id:
        raise NotHolderError(task_id, executor_id)
    return task


def _effects_done() -> tuple[sa.Update, None]:
    table = cast(sa.Table, SideEffectRow.__table__)
    return (
        sa.update(table)
        .where(table.c.idempotency_key == sa.bindparam("e_key"))
        .values(
            status="done",
            receipt=sa.bindparam("e_receipt", type_=table.c.receipt.type),
            updated_at=sa.bindparam("e_at", type_=table.c.updated_at.type),
        ),
        None,
    )


def _add_cost() -> tuple[sa.Update, None]:
    table = cast(sa.Table, TaskRow.__table__)
    return (
        sa.update(table)
        .where(table.c.task_id == sa.bindparam("c_id"))
        .values(total_cost=table.c.total_cost + sa.bindparam("c_add", type_=sa.Float)),
        None,
    )


def _last_per_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, step), merged in order: a multi-row upsert may not touch a row twice
    (Postgres refuses it), and a later transition of a step replaces an earlier one, except
    that the fields an upsert keeps (inputs, started_at, executor_id) survive a None."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["task_id"], r["step_id"])
        prev = merged.get(key)
        if prev is not None:
            r = {**r, **{k: prev[k] for k in _KEEP if r[k] is None}}
        merged[key] = r
    return list(merged.values())


_KEEP = ("inputs", "started_at", "executor_id")


def _step_values(task_id: str, u: StepUpdate) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "step_id": u.step_id,
        "tool": u.tool,
        "status": u.status.value,
        "attempt": u.attempt,
        "inputs": u.inputs,
        "output": u.output,
        "error": u.error,
        "started_at": u.started_at,
        "finished_at": u.finished_at,
        "duration_ms": u.duration_ms,
        "cost": u.cost,
        "executor_id": u.executor_id,
    }


def _reset_steps(
    s: Session, task: TaskRow, step_ids: Sequence[str], *, round_: int, phase: PipelinePhase
) -> None:
    now = utcnow()
    rows = s.scalars(
        sa.select(StepRunRow).where(
            StepRunRow.task_id == task.task_id, StepRunRow.step_id.in_(list(step_ids))
        )
    ).all()
    for r in rows:
        s.add(
            StepHistoryRow(
                task_id=task.task_id,
                step_id=r.step_id,
                round=task.round,
                body=_step(r).model_dump(mode="json"),
                created_at=now,
            )
        )
        r.status = StepStatus.PENDING.value
        r.output = None
        r.error = None
        r.finished_at = None
    task.round = round_
    task.phase = phase.value
    task.updated_at = now


def _newest_approval(task_id: str, step_id: str | None) -> sa.Select[ApprovalRow]:
    return (
        sa.select(ApprovalRow)
        .where(ApprovalRow.task_id == task_id, _step_is(step_id))
        .order_by(ApprovalRow.requested_at.desc())
        .limit(1)
    )


def _step_is(step_id: str | None) -> sa.ColumnElement[bool]:
    return ApprovalRow.step_id.is_(None) if step_id is None else ApprovalRow.step_id == step_id


def _task(r: TaskRow) -> Task:
    return Task(
        task_id=r.task_id,
        status=TaskStatus(r.status),
        name=r.name,
        request=r.request,
        user_id=r.user_id,
        plan=ExecutionPlan.model_validate(r.plan),
        created_at=_aware(r.created_at),
        updated_at=_aware(r.updated_at),
        started_at=_aware(r.started_at),
        finished_at=_aware(r.finished_at),
        error=r.error,
        failed_step=r.failed_step,
        total_cost=r.total_cost or 0.0,
        auto_approve=bool(r.auto_approve),
        phase=PipelinePhase(r.phase) if r.phase else None,
        round=r.round or 0,
        needs_human=bool(r.needs_human),
        quality_score=r.quality_score,
    )


def _step(r: StepRunRow) -> StepRun:
    return StepRun(
        task_id=r.task_id,
        step_id=r.step_id,
        tool=r.tool,
        status=StepStatus(r.status),
        attempt=r.attempt,
        inputs=r.inputs,
        output=r.output,
        error=r.error,
        started_at=_aware(r.started_at),
        finished_at=_aware(r.finished_at),
        duration_ms=r.duration_ms,
        cost=r.cost or 0.0,
    )


def _approval(r: ApprovalRow) -> Approval:
    return Approval(
        approval_id=r.approval_id,
        task_id=r.task_id,
        step_id=r.step_id,
        status=ApprovalStatus(r.status),
        requested_at=_aware(r.requested_at),
        expires_at=_aware(r.expires_at),
        decided_at=_aware(r.decided_at),
        decided_by=r.decided_by,
        comment=r.comment,
    )


def _variant_row(task_id: str, round_: int | None, v: ChannelVariant, now: datetime) -> VariantRow:
    return VariantRow(
        task_id=task_id,
        key=v.key,
        round=round_,
        revision=v.revision,
        body=v.model_dump(mode="json"),
        edited_by=v.edited_by,
        created_at=now,
    )


_ARTIFACT_KEYS = ("task_id", "step_id", "path", "media_type", "size", "sha256", "created_at")


def _artifact_values(task_id: str, a: ArtifactRecord, now: datetime) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "step_id": a.step_id,
        "path": a.path,
        "media_type": a.media_type,
        "size": a.size,
        "sha256": a.sha256,
        "created_at": now,
    }


def _artifact_row(task_id: str, a: ArtifactRecord, now: datetime) -> ArtifactRow:
    return ArtifactRow(**_artifact_values(task_id, a, now))
