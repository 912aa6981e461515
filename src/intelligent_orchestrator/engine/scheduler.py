"""Runs one task's DAG: steps start as soon as their inputs exist, within concurrency limits.

Each step's outcome is checkpointed in ``step_runs`` keyed by (task, step id), so a task that
resumes after a crash or an approval skips finished steps whatever order they finished in.
(DBOS numbers its own step checkpoints by call order, which a DAG scheduled by completion does
not have; see README "Durability".)

Writes are group-committed by the process's :class:`StepJournal`, in order, without holding
up pure steps: a step with no side effect starts as soon as its inputs exist (after a crash it
and whatever followed it before the commit simply run again). A side effect, or an approval
request, waits until every transition of its task before it is durable, so nothing acts on an
output the database does not have; and the task's end is written in the same commit as its
last steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from ..concurrency import Slots
from ..domain.models import (
    Approval,
    ApprovalStatus,
    ExecutionPlan,
    StepRun,
    StepStatus,
    TaskStatus,
    WorkflowStep,
)
from ..domain.refs import ReferenceError_, resolve
from ..errors import BudgetExceededError, ToolError, ToolTimeoutError
from ..llm import BoundLlm, CallScope, ModelGateway, TaskBudget
from ..planning.validate import execution_order, step_dependencies
from ..settings import Settings
from ..storage import (
    NOT_OWNER,
    ArtifactRecord,
    EffectStart,
    NotHolderError,
    StepBatch,
    StepUpdate,
    Store,
    TaskUpdate,
    utcnow,
)
from ..tools.registry import ToolRegistry
from ..tools.spec import Artifact, Tool, ToolContext
from .deadlines import Deadlines
from .journal import StepJournal, TakenOverError, taken_over

logger = logging.getLogger(__name__)

_TERMINAL_BAD = {StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.REJECTED, StepStatus.CANCELLED}


@dataclass(slots=True, kw_only=True)
class StepLimits:
    """State shared by every task this process runs: the global step limit and the live runs."""

    global_steps: Slots
    """(One limit for the tasks on both of the process's event loops: its own and DBOS's.)"""
    active: dict[str, DagRun] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Outcome:
    """How one step ended (or parked), to be written with the next group commit."""

    step_id: str
    status: StepStatus
    output: Any = None
    error: str | None = None
    inputs: Any = None
    attempt: int = 0
    started: datetime | None = None
    duration_ms: float | None = None
    cost: float = 0.0
    artifacts: list[Artifact] = field(default_factory=list)
    effect: str | None = None  # the side effect (idempotency key) this step did, if any
    stop_task: str | None = None  # the task must stop (its budget is spent)


@dataclass(slots=True, kw_only=True)
class DagRun:
    task_id: str
    plan: ExecutionPlan
    store: Store
    registry: ToolRegistry
    settings: Settings
    limits: StepLimits
    executor_id: str
    auto_approve: bool = False
    http_transport: Any = None
    gateway: ModelGateway | None = None
    journal: StepJournal | None = None
    sleep: Callable[[float], Any] = asyncio.sleep
    feedback: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per step: what a reviewer asked to fix (a refinement round); given to its model calls."""
    preapproved: bool = False
    """A person approved the result these steps act on: no per-step gate."""
    overlay: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per step: output fields replaced before later steps read them (the approved text)."""
    round: int = 0
    """The refinement round: a side effect re-run in a later round is a new effect."""
    approved: Mapping[str | None, Approval] = field(default_factory=dict)
    """Per step: an approval granted as this run was claimed (its gate passes at once)."""
    state: dict[str, StepStatus] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False
    stopped: str | None = None  # why the task stopped early (budget)
    budget: TaskBudget | None = None
    create: Mapping[str, Any] | None = None
    """A new task's row, not yet stored: written with the run's first transitions."""
    stored: asyncio.Future[None] | None = None
    """Told once ``create`` is durable (or why it could not be written)."""
    _running: dict[asyncio.Task[Outcome], str] = field(default_factory=dict)
    _tools: dict[str, str] = field(default_factory=dict)  # step id -> tool id
    _pending: list[str] | None = None
    _unflushed: list[asyncio.Future[bool]] = field(default_factory=list)
    _effects: list[tuple[str, Any]] = field(default_factory=list)  # done, not yet handed over
    _workspace: Path | None = None  # (settings.workspace builds a new Path per call)
    _deadlines: Deadlines = field(default_factory=Deadlines)  # the steps' timeouts
    _bad: bool = False  # a step failed, was skipped, rejected or cancelled: skip its dependants

    async def run(
        self,
        previous: list[StepRun],
        *,
        finish: Callable[[TaskStatus], TaskUpdate | None] | None = None,
    ) -> TaskStatus:
        """Run the plan's remaining steps; returns the task's status once every step's end is
        durable. ``finish`` maps that status to the task's own update, written in the same
        commit as the last steps (None: leave the task row alone)."""
        if self.journal is None:
            self.journal = StepJournal(self.store)
        self.journal.begin(self.task_id)
        steps = {s.id: s for s in self.plan.steps}
        self._tools = {s.id: s.tool for s in self.plan.steps}
        deps = {sid: step_dependencies(s) for sid, s in steps.items()}
        order = execution_order(self.plan, deps)
        for sid in order:
            self.state[sid] = StepStatus.PENDING
        for r in previous:
            if r.step_id not in self.state:
                continue
            self.attempts[r.step_id] = r.attempt
            if r.status in (StepStatus.RUNNING, StepStatus.AWAITING_APPROVAL, StepStatus.PENDING):
                continue  # interrupted or parked: decide again
            self.state[r.step_id] = r.status
            self._bad = self._bad or r.status in _TERMINAL_BAD
            if r.status is StepStatus.SUCCEEDED:
                self.outputs[r.step_id] = r.output
            elif r.error:
                self.errors[r.step_id] = r.error
        for sid, fields in self.overlay.items():
            if isinstance(self.outputs.get(sid), dict):
                self.outputs[sid] = {**self.outputs[sid], **fields}

        slots = self.plan.max_concurrency or self.settings.engine.task_concurrency
        self.budget = await self._budget()
        self.limits.active[self.task_id] = self
        done: list[Outcome] = []
        ended: asyncio.Queue[asyncio.Task[Outcome]] = asyncio.Queue()
        updates: list[StepUpdate] = []
        artifacts: list[ArtifactRecord] = []
        cost = 0.0
        try:
            while True:
                updates, artifacts, cost = self._apply(done)
                done = []
                updates += self._propagate_skips(order, deps)
                launch: list[tuple[WorkflowStep, dict[str, Any], bool]] = []
                starts: list[WorkflowStep] = []  # launched ungated: their RUNNING rows
                if self.stopped:
                    updates += self._stop_pending(order)
                elif not self.cancelled:
                    for sid in self._ready(order, deps):
                        if len(self._running) + len(launch) >= slots:
                            break
                        step = steps[sid]
                        try:
                            args = resolve(step.inputs, self.outputs)
                        except ReferenceError_ as exc:
                            outcome = Outcome(
                                step_id=sid,
                                status=StepStatus.FAILED,
                                error=f"input reference failed: {exc}",
                            )
                            self._apply([outcome])
                            updates.append(self._update(outcome))
                            continue
                        self.state[sid] = StepStatus.RUNNING
                        gated = self._needs_approval(step, args)
                        launch.append((step, args, gated))
                        if not gated:
                            self.attempts[sid] = self.attempts.get(sid, 0) + 1
                            starts.append(step)
                    updates += self._propagate_skips(order, deps)
                if not launch and not self._running:
                    break  # the last transitions go with the task's end, in one commit
                # Pure steps start before their RUNNING rows are even made: the rows wait one
                # turn of the event loop, in which each launched step runs up to its first
                # await (a 50-wide fan-out's last step starts ~0.1 ms sooner). A step that
                # waits for durability (gated, or with a side effect) is launched after the
                # write, as its wait must cover every transition before it.
                pure = bool(launch) and all(
                    not gated
                    and step.tool in self.registry
                    and not self.registry.get(step.tool).spec.side_effects
                    for step, _, gated in launch
                )
                if not pure:
                    self._write(updates + self._starts(starts, launch), artifacts, cost)
                    self._raise_failed_writes()
                for step, args, gated in launch:
                    t = asyncio.create_task(
                        self._run_step(step, args, gated=gated), name=f"step:{step.id}"
                    )
                    t.add_done_callback(ended.put_nowait)
                    self._running[t] = step.id
                if pure:
                    started = utcnow()
                    try:
                        await asyncio.sleep(0)
                    finally:  # (handed over even if the run is stopped in that turn)
                        self._write(
                            updates + self._starts(starts, launch, started), artifacts, cost
                        )
                    self._raise_failed_writes()
                # Every step that has ended by now (one wake-up, however many steps run).
                finished = [await ended.get()]
                while not ended.empty():
                    finished.append(ended.get_nowait())
                for t in finished:
                    self._running.pop(t)
                    done.append(t.result())  # _run_step turns every failure into an Outcome
        finally:
            self.limits.active.pop(self.task_id, None)
            for t in self._running:
                t.cancel()
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            for f in self._unflushed:  # an aborted run: its failed writes are not news
                f.add_done_callback(_retrieve)
        status = self._final_status(order)
        self._raise_failed_writes()  # a task whose steps are not all recorded must not end
        self._write(updates, artifacts, cost, task=finish(status) if finish is not None else None)
        await self._durable()
        return status

    def _starts(
        self,
        steps: list[WorkflowStep],
        launch: list[tuple[WorkflowStep, dict[str, Any], bool]],
        started: datetime | None = None,
    ) -> list[StepUpdate]:
        """The RUNNING rows of ungated ``steps`` launched now (at ``started``)."""
        started = started or utcnow()
        args = {step.id: a for step, a, _ in launch}
        return [
            StepUpdate(
                step_id=step.id,
                tool=step.tool,
                status=StepStatus.RUNNING,
                attempt=self.attempts[step.id],
                inputs=args[step.id],
                started_at=started,
                executor_id=self.executor_id,
            )
            for step in steps
        ]

    async def _budget(self) -> TaskBudget | None:
        """The task's model budget, counting what earlier runs of the task already spent."""
        llm = self.settings.llm
        if self.gateway is None:
            return None
        budget = TaskBudget(max_cost=llm.task_budget_cost, max_tokens=llm.task_budget_tokens)
        if budget.max_cost is not None or budget.max_tokens is not None:
            spent, _ = await asyncio.to_thread(self.store.llm_usage, self.task_id)
            budget.cost, budget.tokens = spent.cost, spent.tokens
        return budget

    def _stop_pending(self, order: list[str]) -> list[StepUpdate]:
        updates = []
        for sid in order:
            if self.state[sid] is StepStatus.PENDING:
                outcome = Outcome(
                    step_id=sid, status=StepStatus.SKIPPED, error=f"not run: {self.stopped}"
                )
                self._apply([outcome])
                updates.append(self._update(outcome))
        return updates

    def _ready(self, order: list[str], deps: dict[str, set[str]]) -> list[str]:
        """Pending steps whose dependencies all succeeded, in plan order (scans only what may change)."""
        if self._pending is None:
            self._pending = [sid for sid in order if self.state[sid] is StepStatus.PENDING]
        self._pending = [sid for sid in self._pending if self.state[sid] is StepStatus.PENDING]
        return [
            sid
            for sid in self._pending
            if all(self.state[d] is StepStatus.SUCCEEDED for d in deps[sid])
        ]

    def cancel(self) -> None:
        """Stop starting steps and interrupt the running ones (the task was cancelled)."""
        self.cancelled = True
        for t in list(self._running):
            t.cancel()

    # Bookkeeping -------------------------------------------------------------------------
    def _apply(
        self, outcomes: list[Outcome]
    ) -> tuple[list[StepUpdate], list[ArtifactRecord], float]:
        updates: list[StepUpdate] = []
        artifacts: list[ArtifactRecord] = []
        cost = 0.0
        for o in outcomes:
            self.state[o.step_id] = o.status
            if o.status in _TERMINAL_BAD:
                self._bad = True
            if o.status is StepStatus.SUCCEEDED:
                self.outputs[o.step_id] = o.output
            if o.error:
                self.errors[o.step_id] = o.error
            if o.attempt:
                self.attempts[o.step_id] = o.attempt
            if o.stop_task and not self.stopped:
                self.stopped = o.stop_task
            updates.append(self._update(o))
            artifacts += [
                ArtifactRecord(
                    step_id=o.step_id,
                    path=a.path,
                    media_type=a.media_type,
                    size=a.size,
                    sha256=a.sha256,
                )
                for a in o.artifacts
            ]
            cost += o.cost
            if o.effect is not None:
                self._effects.append((o.effect, o.output))
        return updates, artifacts, cost

    def _update(self, o: Outcome) -> StepUpdate:
        return StepUpdate(
            step_id=o.step_id,
            tool=self._tools[o.step_id],
            status=o.status,
            attempt=o.attempt or self.attempts.get(o.step_id, 0),
            inputs=o.inputs,
            output=o.output,
            error=o.error,
            started_at=o.started,
            finished_at=None if o.status is StepStatus.AWAITING_APPROVAL else utcnow(),
            duration_ms=o.duration_ms,
            cost=o.cost,
        )

    def _write(
        self,
        updates: list[StepUpdate],
        artifacts: list[ArtifactRecord] | None = None,
        cost: float = 0.0,
        *,
        task: TaskUpdate | None = None,
    ) -> None:
        """Hand transitions to the journal (in order; durable at its next commit)."""
        effects, self._effects = self._effects, []
        create, self.create = self.create, None
        if not (updates or artifacts or cost or effects or task or create):
            return
        assert self.journal is not None
        batch = StepBatch(
            task_id=self.task_id,
            updates=updates,
            artifacts=artifacts or (),
            add_cost=cost,
            effects_done=effects,
            task=task,
            create=create,
            executor_id=self.executor_id,
        )
        written = self.journal.write(batch)
        if create is not None and self.stored is not None:
            written.add_done_callback(partial(_relay, to=self.stored))
        self._unflushed.append(written)

    async def _durable(self) -> None:
        """Wait until every transition handed over so far is durable, and the run itself is
        (a run started before its workflow's record is held until that record is)."""
        assert self.journal is not None
        await self.journal.released(self.task_id)
        if self._unflushed:
            self.journal.hurry()
            await asyncio.wait(list(self._unflushed))
        self._raise_failed_writes()

    def _raise_failed_writes(self) -> None:
        """Forget written transitions; a failed write ends the run (its state is unknown)."""
        keep: list[asyncio.Future[bool]] = []
        for f in self._unflushed:
            if not f.done():
                keep.append(f)
            elif (exc := f.exception()) is not None:
                if isinstance(exc, TakenOverError):
                    raise TakenOverError(str(exc)) from exc
                raise RuntimeError(f"could not record the task's steps: {exc}") from exc
        self._unflushed = keep

    def _propagate_skips(self, order: list[str], deps: dict[str, set[str]]) -> list[StepUpdate]:
        updates: list[StepUpdate] = []
        if not self._bad:
            return updates
        changed = True
        while changed:
            changed = False
            for sid in order:
                if self.state[sid] is not StepStatus.PENDING:
                    continue
                bad = sorted(d for d in deps[sid] if self.state[d] in _TERMINAL_BAD)
                if bad:
                    outcome = Outcome(
                        step_id=sid,
                        status=StepStatus.SKIPPED,
                        error=f"not run: dependency {bad[0]!r} {self.state[bad[0]].value}",
                    )
                    self._apply([outcome])
                    updates.append(self._update(outcome))
                    changed = True
        return updates

    def _final_status(self, order: list[str]) -> TaskStatus:
        states = [self.state[s] for s in order]
        if self.cancelled:
            return TaskStatus.CANCELLED
        if StepStatus.FAILED in states or self.stopped:
            return TaskStatus.FAILED
        if StepStatus.AWAITING_APPROVAL in states:
            return TaskStatus.AWAITING_APPROVAL
        if StepStatus.REJECTED in states:
            return TaskStatus.REJECTED
        return TaskStatus.SUCCEEDED

    def first_failure(self) -> tuple[str, str] | None:
        for s in self.plan.steps:
            if self.state.get(s.id) is StepStatus.FAILED:
                return s.id, self.errors.get(s.id, "failed")
        return None

    def _needs_approval(self, step: WorkflowStep, args: dict[str, Any]) -> bool:
        if self.preapproved:
            return False
        if step.requires_approval is not None:
            return step.requires_approval
        return self.registry.get(step.tool).needs_approval(args)

    # One step ----------------------------------------------------------------------------
    async def _run_step(self, step: WorkflowStep, args: dict[str, Any], *, gated: bool) -> Outcome:
        """Run one step (``gated``: it waits for a person's approval first)."""
        try:
            if gated or self.registry.get(step.tool).spec.side_effects:
                await self._durable()  # act only on outputs the database has
            if gated:
                parked = await self._gate(step, args)
                if parked is not None:
                    return parked
                self.attempts[step.id] = self.attempts.get(step.id, 0) + 1
                self._write(
                    [
                        StepUpdate(
                            step_id=step.id,
                            tool=step.tool,
                            status=StepStatus.RUNNING,
                            attempt=self.attempts[step.id],
                            inputs=args,
                            started_at=utcnow(),
                            executor_id=self.executor_id,
                        )
                    ]
                )
            slots = self.limits.global_steps
            if not slots.try_acquire():
                await slots.acquire()
            try:
                return await self._call(step, args)
            finally:
                slots.release()
        except TakenOverError:
            raise  # the run stops: see DagRun.run
        except asyncio.CancelledError:
            if not self.cancelled:
                raise
            return Outcome(
                step_id=step.id,
                status=StepStatus.CANCELLED,
                error="cancelled",
                attempt=self.attempts.get(step.id, 0),
            )
        except Exception as exc:  # our own bug must not take the task down silently
            logger.exception(
                "step crashed in the engine", extra={"task_id": self.task_id, "step_id": step.id}
            )
            return Outcome(
                step_id=step.id,
                status=StepStatus.FAILED,
                error=f"engine error: {type(exc).__name__}: {exc}",
            )

    async def _gate(self, step: WorkflowStep, args: dict[str, Any]) -> Outcome | None:
        """Outcome when the step must not run now; None once approved."""
        if step.id in self.approved:
            return None
        try:
            approval = await asyncio.to_thread(
                self.store.request_approval,
                self.task_id,
                step.id,
                expires_in=timedelta(hours=self.settings.engine.approval_expiry_hours),
                auto_by="auto-approve" if self.auto_approve else None,
                only_executor=self.executor_id,
            )
        except NotHolderError as exc:
            raise taken_over(exc) from exc
        match approval.status:
            case ApprovalStatus.APPROVED:
                return None
            case ApprovalStatus.PENDING:
                return Outcome(step_id=step.id, status=StepStatus.AWAITING_APPROVAL, inputs=args)
            case ApprovalStatus.REJECTED | ApprovalStatus.CANCELLED:
                return Outcome(
                    step_id=step.id,
                    status=StepStatus.REJECTED,
                    error=f"rejected: {approval.comment or 'no comment'}",
                )
            case ApprovalStatus.EXPIRED:
                return Outcome(
                    step_id=step.id, status=StepStatus.REJECTED, error="approval expired"
                )

    async def _call(self, step: WorkflowStep, args: dict[str, Any]) -> Outcome:
        tool = self.registry.get(step.tool)
        timeout = step.timeout_seconds or tool.spec.timeout_seconds
        attempt = self.attempts[step.id]
        for n in range(step.retries + 1):
            if n:
                attempt += 1
                self.attempts[step.id] = attempt
                self._write(
                    [
                        StepUpdate(
                            step_id=step.id,
                            tool=step.tool,
                            status=StepStatus.RUNNING,
                            attempt=attempt,
                            inputs=args,
                            started_at=utcnow(),
                            executor_id=self.executor_id,
                        )
                    ]
                )
            started = utcnow()
            t0 = time.perf_counter()
            if self._workspace is None:
                self._workspace = self.settings.workspace
            ctx = ToolContext(
                task_id=self.task_id,
                step_id=step.id,
                workspace=self._workspace,
                idempotency_key=f"{self.task_id}:{step.id}"
                + (f":r{self.round}" if self.round else ""),
                http_timeout_seconds=self.settings.tools.http_timeout_seconds,
                http_max_bytes=self.settings.tools.http_max_bytes,
                http_transport=self.http_transport,
                attempt=attempt,
                config=self.settings.tools,
                home=self.settings.home,
            )
            scope = CallScope(task_id=self.task_id, step_id=step.id, budget=self.budget)
            if self.gateway is not None:
                ctx.llm = BoundLlm(self.gateway, scope, self.feedback.get(step.id, ()))
            try:
                output = await self._deadlines.within(
                    timeout,
                    self._invoke(tool, args, ctx)
                    if tool.spec.side_effects
                    else tool.invoke(args, ctx),  # (a pure tool: one coroutine less per step)
                )
            except TimeoutError:
                err: ToolError = ToolTimeoutError(
                    f"timed out after {timeout:g} s", tool_id=tool.tool_id
                )
            except BudgetExceededError as exc:
                return Outcome(
                    step_id=step.id,
                    status=StepStatus.FAILED,
                    error=str(exc),
                    attempt=attempt,
                    started=started,
                    duration_ms=(time.perf_counter() - t0) * 1000,
                    cost=scope.cost,
                    stop_task=f"budget exceeded: {exc}",
                )
            except ToolError as exc:
                err = exc
            except TakenOverError:
                raise
            except Exception as exc:  # a tool's own bug: fail the step, keep the process
                logger.exception(
                    "tool crashed",
                    extra={"task_id": self.task_id, "step_id": step.id, "tool": tool.tool_id},
                )
                err = ToolError(f"{type(exc).__name__}: {exc}", tool_id=tool.tool_id)
            else:
                return Outcome(
                    step_id=step.id,
                    status=StepStatus.SUCCEEDED,
                    output=output,
                    attempt=attempt,
                    started=started,
                    duration_ms=(time.perf_counter() - t0) * 1000,
                    cost=scope.cost if scope.calls else tool.spec.estimated_cost,
                    artifacts=ctx.artifacts,
                    effect=ctx.idempotency_key if tool.spec.side_effects else None,
                    stop_task=f"budget exceeded: {over}"
                    if self.budget is not None and (over := self.budget.over())
                    else None,
                )
            if err.transient and n < step.retries:
                delay = (
                    self.settings.engine.retry_backoff_seconds
                    * self.settings.engine.retry_backoff_rate**n
                )
                logger.info(
                    "retrying step",
                    extra={"task_id": self.task_id, "step_id": step.id, "attempt": attempt},
                )
                await self.sleep(delay)
                continue
            return Outcome(
                step_id=step.id,
                status=StepStatus.FAILED,
                error=str(err),
                attempt=attempt,
                started=started,
                duration_ms=(time.perf_counter() - t0) * 1000,
                cost=scope.cost,
            )
        raise AssertionError("unreachable: the loop always returns")

    async def _invoke(self, tool: Tool, args: dict[str, Any], ctx: ToolContext) -> Any:
        # A tool with side effects, exactly once: a finished effect is never redone; an
        # interrupted one is retried with the same idempotency key, which the tool passes on
        # to the system it calls. (A pure tool is awaited directly: see _call.)
        key = ctx.idempotency_key
        assert self.journal is not None  # set by run()
        effect = await self.journal.effect_started(
            EffectStart(
                key=key,
                task_id=ctx.task_id,
                step_id=ctx.step_id,
                tool=tool.tool_id,
                executor_id=self.executor_id,
            )
        )
        if effect.status == NOT_OWNER:
            refused = TakenOverError(
                f"task {ctx.task_id} is held by another executor now (this one, "
                f"{self.executor_id}, was taken for dead): its step {ctx.step_id!r} does not act "
                "here"
            )
            logger.warning("%s", refused)
            raise refused
        if effect.status == "done":
            return effect.receipt
        # "done" is written with the step's outcome, in the journal's next commit
        return await tool.invoke(args, ctx)


def _relay(f: asyncio.Future[bool], *, to: asyncio.Future[None]) -> None:
    if to.done():
        return
    if f.cancelled():
        to.cancel()
    elif (exc := f.exception()) is not None:
        to.set_exception(exc)
    else:
        to.set_result(None)


def _retrieve(f: asyncio.Future[bool]) -> None:
    if not f.cancelled():
        f.exception()


async def watch_runs(
    store: Store, limits: StepLimits, *, executor_id: str, every: float = 0.5
) -> None:
    """One poll for every task this process runs: interrupt those a user cancelled, and stop
    those another executor holds now (this process was taken for dead while it was silent;
    their writes are refused from the claim on, and their steps need not run to learn it)."""
    while True:
        await asyncio.sleep(every)
        ids = list(limits.active)
        if not ids:
            continue
        try:
            cancelled, moved = await asyncio.to_thread(
                store.stopped_among, ids, executor_id=executor_id
            )
        except Exception:
            logger.exception("cancellation poll failed")
            continue
        for task_id in moved:
            if (run := limits.active.get(task_id)) is not None:
                logger.warning(
                    "task %s is held by another executor now (this one, %s, was taken for "
                    "dead); stopping its run here",
                    task_id,
                    executor_id,
                )
                run.cancel()
        for task_id in cancelled:
            if (run := limits.active.get(task_id)) is not None:
                run.cancel()
