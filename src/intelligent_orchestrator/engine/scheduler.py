"""Runs one task's DAG: steps start as soon as their inputs exist, within concurrency limits.

Each step's outcome is checkpointed in ``step_runs`` keyed by (task, step id), so a task that
resumes after a crash or an approval skips finished steps whatever order they finished in.
(DBOS numbers its own step checkpoints by call order, which a DAG scheduled by completion does
not have; see README "Durability".)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..domain.models import ExecutionPlan, StepRun, StepStatus, TaskStatus, WorkflowStep
from ..domain.refs import ReferenceError_, resolve
from ..errors import ToolError, ToolTimeoutError
from ..planning.validate import execution_order, step_dependencies
from ..settings import Settings
from ..storage import ArtifactRecord, StepUpdate, Store, utcnow
from ..tools.registry import ToolRegistry
from ..tools.spec import Tool, ToolContext

logger = logging.getLogger(__name__)

_TERMINAL_BAD = {StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.REJECTED, StepStatus.CANCELLED}


@dataclass(slots=True, kw_only=True)
class StepLimits:
    """Process-wide limits shared by every task this process runs."""

    global_steps: asyncio.Semaphore


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
    sleep: Callable[[float], Any] = asyncio.sleep
    state: dict[str, StepStatus] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False

    async def run(self, previous: list[StepRun]) -> TaskStatus:
        order = execution_order(self.plan)
        steps = {s.id: s for s in self.plan.steps}
        deps = {sid: step_dependencies(steps[sid]) for sid in order}
        for sid in order:
            self.state[sid] = StepStatus.PENDING
        for r in previous:
            if r.step_id not in self.state:
                continue
            self.attempts[r.step_id] = r.attempt
            if r.status in (StepStatus.RUNNING, StepStatus.AWAITING_APPROVAL, StepStatus.PENDING):
                continue  # interrupted or parked: decide again
            self.state[r.step_id] = r.status
            if r.status is StepStatus.SUCCEEDED:
                self.outputs[r.step_id] = r.output
            elif r.error:
                self.errors[r.step_id] = r.error

        task_limit = asyncio.Semaphore(self.plan.max_concurrency or self.settings.engine.task_concurrency)
        running: dict[asyncio.Task[None], str] = {}
        watcher = asyncio.create_task(self._watch_cancel(running))
        try:
            while True:
                skipped = self._propagate_skips(order, deps)
                if skipped:
                    await asyncio.to_thread(self.store.write_steps, self.task_id, skipped)
                if self.cancelled:
                    break
                for sid in order:
                    if self.state[sid] is StepStatus.PENDING and all(
                        self.state[d] is StepStatus.SUCCEEDED for d in deps[sid]
                    ):
                        self.state[sid] = StepStatus.RUNNING
                        t = asyncio.create_task(self._run_step(steps[sid], task_limit), name=f"step:{sid}")
                        running[t] = sid
                if not running:
                    break
                done, _ = await asyncio.wait(running.keys(), return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    running.pop(t)
                    exc = t.exception() if not t.cancelled() else None
                    if exc is not None:
                        raise exc
        finally:
            watcher.cancel()
            for t in running:
                t.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return self._final_status(order)

    def _propagate_skips(self, order: list[str], deps: dict[str, set[str]]) -> list[StepUpdate]:
        updates: list[StepUpdate] = []
        changed = True
        while changed:
            changed = False
            for sid in order:
                if self.state[sid] is not StepStatus.PENDING:
                    continue
                bad = sorted(d for d in deps[sid] if self.state[d] in _TERMINAL_BAD)
                if bad:
                    self.state[sid] = StepStatus.SKIPPED
                    msg = f"not run: dependency {bad[0]!r} {self.state[bad[0]].value}"
                    self.errors[sid] = msg
                    updates.append(
                        StepUpdate(step_id=sid, tool=self.plan.step(sid).tool, status=StepStatus.SKIPPED, error=msg)
                    )
                    changed = True
        return updates

    def _final_status(self, order: list[str]) -> TaskStatus:
        states = [self.state[s] for s in order]
        if self.cancelled:
            return TaskStatus.CANCELLED
        if StepStatus.FAILED in states:
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

    async def _watch_cancel(self, running: dict[asyncio.Task[None], str]) -> None:
        while True:
            await asyncio.sleep(0.5)
            task = await asyncio.to_thread(self.store.get_task, self.task_id)
            if task.status is TaskStatus.CANCELLED:
                self.cancelled = True
                for t in list(running):
                    t.cancel()
                return

    async def _run_step(self, step: WorkflowStep, task_limit: asyncio.Semaphore) -> None:
        try:
            await self._run_step_inner(step, task_limit)
        except asyncio.CancelledError:
            self.state[step.id] = StepStatus.CANCELLED
            await asyncio.shield(
                asyncio.to_thread(
                    self.store.write_steps,
                    self.task_id,
                    [StepUpdate(step_id=step.id, tool=step.tool, status=StepStatus.CANCELLED, error="cancelled",
                                attempt=self.attempts.get(step.id, 0), finished_at=utcnow())],
                )
            )
            raise

    async def _run_step_inner(self, step: WorkflowStep, task_limit: asyncio.Semaphore) -> None:
        tool = self.registry.get(step.tool)
        try:
            args = resolve(step.inputs, self.outputs)
        except ReferenceError_ as exc:
            await self._finish(step, StepStatus.FAILED, error=f"input reference failed: {exc}")
            return

        needs = step.requires_approval if step.requires_approval is not None else tool.needs_approval(args)
        if needs:
            approval = await asyncio.to_thread(
                self.store.request_approval,
                self.task_id,
                step.id,
                expires_in=timedelta(hours=self.settings.engine.approval_expiry_hours),
                auto_by="auto-approve" if self.auto_approve else None,
            )
            match approval.status.value:
                case "pending":
                    await self._finish(step, StepStatus.AWAITING_APPROVAL, inputs=args)
                    return
                case "rejected" | "cancelled":
                    await self._finish(step, StepStatus.REJECTED, error=f"rejected: {approval.comment or 'no comment'}")
                    return
                case "expired":
                    await self._finish(step, StepStatus.REJECTED, error="approval expired")
                    return
                case _:
                    pass

        timeout = step.timeout_seconds or tool.spec.timeout_seconds
        attempt = self.attempts.get(step.id, 0)
        last_error = "failed"
        async with task_limit, self.limits.global_steps:
            for n in range(step.retries + 1):
                attempt += 1
                self.attempts[step.id] = attempt
                started = utcnow()
                t0 = time.perf_counter()
                await asyncio.to_thread(
                    self.store.write_steps,
                    self.task_id,
                    [StepUpdate(step_id=step.id, tool=step.tool, status=StepStatus.RUNNING, attempt=attempt,
                                inputs=args, started_at=started, executor_id=self.executor_id)],
                )
                ctx = ToolContext(
                    task_id=self.task_id,
                    step_id=step.id,
                    workspace=self.settings.workspace,
                    idempotency_key=f"{self.task_id}:{step.id}",
                    http_timeout_seconds=self.settings.tools.http_timeout_seconds,
                    http_max_bytes=self.settings.tools.http_max_bytes,
                    http_transport=self.http_transport,
                    attempt=attempt,
                )
                try:
                    async with asyncio.timeout(timeout):
                        output = await self._invoke(tool, args, ctx)
                except TimeoutError:
                    err: ToolError = ToolTimeoutError(f"timed out after {timeout:g} s", tool_id=tool.tool_id)
                except ToolError as exc:
                    err = exc
                except Exception as exc:  # a tool's own bug: fail the step, keep the process
                    logger.exception("tool crashed", extra={"task_id": self.task_id, "step_id": step.id, "tool": tool.tool_id})
                    err = ToolError(f"{type(exc).__name__}: {exc}", tool_id=tool.tool_id)
                else:
                    await self._finish(
                        step, StepStatus.SUCCEEDED, output=output, attempt=attempt, started=started,
                        duration_ms=(time.perf_counter() - t0) * 1000, cost=tool.spec.estimated_cost,
                        artifacts=ctx.artifacts,
                    )
                    return
                last_error = str(err)
                if err.transient and n < step.retries:
                    delay = self.settings.engine.retry_backoff_seconds * self.settings.engine.retry_backoff_rate**n
                    logger.info("retrying step", extra={"task_id": self.task_id, "step_id": step.id, "attempt": attempt})
                    await self.sleep(delay)
                    continue
                await self._finish(
                    step, StepStatus.FAILED, error=last_error, attempt=attempt, started=started,
                    duration_ms=(time.perf_counter() - t0) * 1000,
                )
                return

    async def _invoke(self, tool: Tool, args: dict[str, Any], ctx: ToolContext) -> Any:
        if not tool.spec.side_effects:
            return await tool.invoke(args, ctx)
        # Exactly once: a finished effect is never redone; an interrupted one is retried with
        # the same idempotency key, which the tool passes on to the system it calls.
        key = ctx.idempotency_key
        done = await asyncio.to_thread(self.store.effect, key)
        if done is not None and done.status == "done":
            return done.receipt
        await asyncio.to_thread(self.store.effect_started, key, task_id=ctx.task_id, step_id=ctx.step_id, tool=tool.tool_id)
        receipt = await tool.invoke(args, ctx)
        await asyncio.to_thread(self.store.effect_done, key, receipt)
        return receipt

    async def _finish(
        self,
        step: WorkflowStep,
        status: StepStatus,
        *,
        output: Any = None,
        error: str | None = None,
        inputs: Any = None,
        attempt: int | None = None,
        started: Any = None,
        duration_ms: float | None = None,
        cost: float = 0.0,
        artifacts: list[Any] | None = None,
    ) -> None:
        self.state[step.id] = status
        if status is StepStatus.SUCCEEDED:
            self.outputs[step.id] = output
        if error:
            self.errors[step.id] = error
        finished = None if status is StepStatus.AWAITING_APPROVAL else utcnow()
        await asyncio.to_thread(
            self.store.write_steps,
            self.task_id,
            [StepUpdate(step_id=step.id, tool=step.tool, status=status, attempt=attempt or self.attempts.get(step.id, 0),
                        inputs=inputs, output=output, error=error, started_at=started, finished_at=finished,
                        duration_ms=duration_ms, cost=cost)],
            artifacts=[ArtifactRecord(step_id=step.id, path=a.path, media_type=a.media_type, size=a.size, sha256=a.sha256)
                       for a in artifacts or []],
            add_cost=cost,
        )
