"""The facade used by the CLI, the API and Python callers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .domain.models import (
    Approval,
    ApprovalStatus,
    ArtifactRef,
    ChannelVariant,
    Deliverable,
    ExecutionPlan,
    ExecutionRecord,
    ExecutionResult,
    LlmCall,
    PipelinePhase,
    Review,
    Task,
    TaskStatus,
    ToolSpecification,
)
from .domain.workflow import parse_workflow
from .engine import EngineHost, QueueClient, migrate_system_database
from .engine.pipeline import review_gate, write_record
from .engine.runtime import Claim, EnterPhase
from .errors import ClarificationNeeded, ConflictError, InvalidEditError, PlanningError
from .formatting import apply_edit, variant_problems
from .llm import CallScope, ModelGateway
from .planning import validate_plan
from .planning.planner import Planner, Recollection, word_overlap
from .quality import PlanSplit, descendants, plan_parts
from .settings import Settings
from .storage import (
    Decision,
    Store,
    create_engine,
    current_revision,
    head_revision,
    new_task_values,
    upgrade,
    utcnow,
)
from .tools.builtin import builtin_tools
from .tools.builtin.knowledge import Bm25, Passage
from .tools.registry import ToolRegistry
from .tools.spec import Implementation, Tool

if TYPE_CHECKING:
    from .tools.mcp import DiscoveryReport

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ExecutionResult], Awaitable[None] | None]


def default_registry(settings: Settings) -> ToolRegistry:
    """Built-in tools, then entry-point plugins, then modules named in settings."""
    registry = ToolRegistry(builtin_tools())
    if settings.tools.load_entry_points:
        registry.load_entry_points()
    for ref in settings.tools.tool_modules:
        registry.load_module(ref, base_dir=Path.cwd())
    return registry


def upgrade_database(settings: Settings) -> str:
    """Create or upgrade the orchestrator's tables and DBOS's; returns the revision."""
    settings.ensure_dirs()
    engine = create_engine(settings.app_database_url)
    try:
        rev = upgrade(engine)
    finally:
        engine.dispose()
    migrate_system_database(settings)
    return rev


class Orchestrator:
    """Submit workflows, watch them, decide approvals. One per process (DBOS is global)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: ToolRegistry | None = None,
        http_transport: Any = None,
        models: Mapping[str, Any] | None = None,
        auto_upgrade: bool = True,
    ) -> None:
        """``models``: ready Pydantic AI models by configured name (tests pass scripted ones)."""
        self.settings = settings
        settings.ensure_dirs()
        self.registry = registry if registry is not None else default_registry(settings)
        self._db = create_engine(settings.app_database_url)
        if auto_upgrade and current_revision(self._db) != head_revision():
            upgrade(self._db)
            migrate_system_database(settings)
        self.store = Store(self._db)
        self.http_transport = http_transport
        self.gateway = ModelGateway(settings, models=models, sink=self._record_llm_call)
        self.host: EngineHost | None = None
        self._planner: Planner | None = None
        self._client: QueueClient | None = None
        self._mcp: DiscoveryReport | None = None

    async def _record_llm_call(self, call: LlmCall) -> None:
        await asyncio.to_thread(self.store.record_llm_calls, [call])

    # Lifecycle ---------------------------------------------------------------------------
    async def start_engine(
        self, *, kind: str = "local", listen: bool = False, executor_id: str | None = None
    ) -> EngineHost:
        """Make this process an executor. ``listen``: also take tasks from the shared queue."""
        if self.host is not None:
            return self.host
        await self.load_mcp_tools()
        host = EngineHost(
            self.settings,
            self.store,
            self.registry,
            kind=kind,
            listen=listen,
            executor_id=executor_id,
            http_transport=self.http_transport,
            gateway=self.gateway,
            planner=self._plan_task,
        )
        await host.start()
        self.host = host
        return host

    async def load_mcp_tools(self) -> DiscoveryReport | None:
        """Discover the tools of the MCP servers in ``tools.mcp.config_file`` and register them.

        A server that fails is reported (logged and in the returned report), never fatal.
        """
        cfg = self.settings.tools.mcp
        if cfg.config_file is None or self._mcp is not None:
            return self._mcp
        # imported here: the MCP SDK takes ~0.8 s to import, and most commands never need it
        from .tools.mcp import discover, register_mcp_tools

        report = await discover(cfg.config_file, cfg)
        for server, error in report.errors.items():
            logger.warning("MCP server %s unavailable: %s", server, error)
        register_mcp_tools(self.registry, report)
        self._mcp = report
        return report

    async def close(self) -> None:
        if self._mcp is not None:
            await self._mcp.aclose()
            self._mcp = None
        if self.host is not None:
            await self.host.stop()
            self.host = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self.store.dispose()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Tools -------------------------------------------------------------------------------
    def register_tool(self, spec: ToolSpecification, implementation: Implementation) -> Tool:
        return self.registry.register_tool(spec, implementation)

    def list_tools(self) -> list[ToolSpecification]:
        return self.registry.specs()

    @property
    def mcp_catalogue_file(self) -> Path:
        return self.settings.home / "mcp-tools.json"

    def _read_catalogue(self, config_file: Path) -> tuple[str, dict[str, Any] | None]:
        fingerprint = hashlib.sha256(config_file.read_bytes()).hexdigest()
        return fingerprint, _read_json(self.mcp_catalogue_file)

    def _write_catalogue(self, catalogue: dict[str, Any]) -> None:
        tmp = self.mcp_catalogue_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(catalogue))
        tmp.replace(self.mcp_catalogue_file)

    async def tool_catalogue(self, *, refresh: bool = False) -> dict[str, Any]:
        """Every tool's specification, with the MCP servers' tools and how discovery went.

        MCP tools come from the last discovery (``HOME/mcp-tools.json``, written at every
        discovery) while ``tools.mcp.config_file`` is unchanged; ``refresh`` (or a changed or
        missing catalogue) discovers again, starting the servers.
        """
        cfg = self.settings.tools.mcp
        own = [s for s in self.list_tools() if not s.source.startswith("mcp:")]
        if cfg.config_file is None:
            return {"tools": own, "mcp": None}
        fingerprint, cached = await asyncio.to_thread(self._read_catalogue, cfg.config_file)
        if refresh or cached is None or cached.get("config_sha256") != fingerprint:
            report = await self.load_mcp_tools()  # this process's discovery, or a new one
            assert report is not None
            cached = {
                "config_sha256": fingerprint,
                "discovered_at": time.time(),
                "duration_seconds": round(report.duration_seconds, 3),
                "servers": {
                    name: {
                        "error": r.error,
                        "seconds": round(r.duration_seconds, 3),
                        "tools": r.tool_ids,
                    }
                    for name, r in report.servers.items()
                },
                "specs": [t.spec.model_dump(mode="json") for t in report.tools],
            }
            await asyncio.to_thread(self._write_catalogue, cached)
            cached["cached"] = False
        else:
            cached["cached"] = True
        mcp_specs = [ToolSpecification.model_validate(d) for d in cached.pop("specs", [])]
        return {"tools": sorted(own + mcp_specs, key=lambda s: s.tool_id), "mcp": cached}

    # Workflows ---------------------------------------------------------------------------
    def load_workflow(
        self, text: str, *, source: str = "<workflow>", fmt: str | None = None
    ) -> ExecutionPlan:
        """Parse and validate a workflow document; raises WorkflowValidationError listing every problem."""
        plan = parse_workflow(text, source=source, fmt=fmt)
        validate_plan(plan, self.registry)
        return plan

    async def submit(
        self,
        plan: ExecutionPlan,
        *,
        request: str | None = None,
        user_id: str | None = None,
        auto_approve: bool = False,
        run_here: bool | None = None,
        task_id: str | None = None,
    ) -> Task:
        """Validate, store and start a task. ``run_here``: execute in this process (default:
        when this process is an executor that does not listen to the shared queue)."""
        validate_plan(plan, self.registry)
        host = await self._local_host(run_here)
        if host is not None and task_id is None:
            values = new_task_values(
                plan,
                request=request,
                user_id=user_id,
                auto_approve=auto_approve,
                executor_id=host.executor_id,
            )
            return await host.submit_new(values, plan)
        task = await asyncio.to_thread(
            self.store.create_task,
            plan,
            request=request,
            user_id=user_id,
            auto_approve=auto_approve,
            task_id=task_id,
            executor_id=host.executor_id if host is not None else None,
        )
        if host is not None:
            await host.start_task(task.task_id, claim=Claim(task=task))
        else:
            await self._dispatch(task.task_id, 0, run_here=False)
        return task

    # Planning ----------------------------------------------------------------------------
    @property
    def planner(self) -> Planner:
        if self._planner is None or self._planner.registry is not self.registry:
            self._planner = Planner(
                self.registry,
                self.gateway,
                workspace=self.settings.workspace,
                memory=self._similar_requests,
            )
        return self._planner

    async def plan(
        self,
        request: str,
        *,
        model: str | None = None,
        task_id: str | None = None,
        on_phase: EnterPhase | None = None,
    ) -> ExecutionPlan:
        """Plan a plain-language request; a plan with ``clarification`` set has no steps.

        ``task_id``: the task being planned, so that planning's model calls count for it;
        ``on_phase`` is awaited as discovery and planning begin.
        """
        t0 = time.perf_counter()
        if on_phase is not None:
            await on_phase(PipelinePhase.DISCOVER)
        await self.load_mcp_tools()  # MCP tools are candidates too (phase 2: discovery)
        t1 = time.perf_counter()
        if on_phase is not None:
            await on_phase(PipelinePhase.PLAN)
        scope = CallScope(task_id=task_id, step_id="plan")
        plan = await self.planner.plan(request, model=model, scope=scope)
        plan.metadata["phase_ms"] = {
            "discover": round((t1 - t0) * 1000, 1),
            "plan": round((time.perf_counter() - t1) * 1000, 1),
        }
        return plan

    async def _plan_task(self, task: Task, on_phase: EnterPhase) -> ExecutionPlan:
        """Plan a request's task inside its durable run (the engine's planner hook)."""
        pending = task.plan.metadata
        plan = await self.plan(
            task.request or task.plan.description or "",
            model=pending.get("planner_model"),
            task_id=task.task_id,
            on_phase=on_phase,
        )
        for key in ("business_metrics", "planner_model"):  # kept for the record and a rerun
            if pending.get(key):
                plan.metadata[key] = pending[key]
        return plan

    async def process_request(
        self,
        request: str,
        user_id: str | None = None,
        business_metrics: dict[str, float] | None = None,
        *,
        model: str | None = None,
        auto_approve: bool = False,
        run_here: bool | None = None,
        plan_timeout: float | None = 120.0,
    ) -> tuple[Task, ExecutionPlan]:
        """Start a task for ``request``; its durable run plans it, then runs the plan.

        Waits up to ``plan_timeout`` seconds (None: do not wait) for the plan and returns the
        task with it; when the wait ends first, the plan returned is still ``pending``.
        Raises :class:`ClarificationNeeded` with the question when the request needs
        clarification, and :class:`PlanningError` when planning failed.
        """
        if not request.strip():
            raise PlanningError("the request is empty")
        placeholder = ExecutionPlan.for_request(
            request, planner_model=model, business_metrics=business_metrics or None
        )
        task = await asyncio.to_thread(
            self.store.create_task,
            placeholder,
            request=request,
            user_id=user_id,
            auto_approve=auto_approve,
            task_id=new_task_id(),
            phase=PipelinePhase.PLAN,
        )
        await self._dispatch(task.task_id, 0, run_here=run_here)
        if plan_timeout is None:
            return task, task.plan
        task = await self.wait_for_plan(task.task_id, timeout=plan_timeout)
        return task, task.plan

    async def wait_for_plan(self, task_id: str, *, timeout: float = 120.0) -> Task:
        """The task once its run has planned it (or the wait timed out: plan still pending).

        Raises :class:`ClarificationNeeded` or :class:`PlanningError` when planning ended
        the task instead.
        """
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get_task(task_id)
            if task.status is TaskStatus.NEEDS_CLARIFICATION:
                raise ClarificationNeeded(
                    task.error or "the request needs clarification",
                    plan=task.plan,
                    task_id=task_id,
                )
            if task.plan.pending and task.status is TaskStatus.CANCELLED:
                raise ConflictError(
                    f"task {task_id!r} was cancelled before it was planned", task_id=task_id
                )
            if task.plan.pending and task.status.finished:
                raise PlanningError(
                    f"task {task_id}: {task.error or f'planning ended {task.status.value}'}"
                )
            if not task.plan.pending or time.monotonic() >= deadline:
                return task
            await asyncio.sleep(0.1)

    def _similar_requests(self, request: str) -> list[Recollection]:
        """Past successful requests most like this one (BM25, then word overlap as the score)."""
        past = self.store.recent_requests(limit=500)
        if not past:
            return []
        items = [Passage(str(i), 1, r) for i, (_, r, _) in enumerate(past)]
        out = []
        for p, _ in Bm25(items).search(request, top_k=3):
            task_id, past_request, plan = past[int(p.document)]
            out.append(
                Recollection(
                    task_id=task_id,
                    request=past_request,
                    tools=[st.get("tool", "?") for st in plan.get("steps", [])],
                    similarity=word_overlap(request, past_request),
                    plan=plan,
                )
            )
        return sorted(out, key=lambda r: -r.similarity)

    async def rerun(self, task_id: str, *, run_here: bool | None = None) -> Task:
        """Run a task's plan again as a new task (a finished task is never restarted in place)."""
        old = await self.get_task(task_id)
        if old.request and (old.plan.pending or old.plan.clarification is not None):
            # never planned (or asked a question): plan the request again
            task, _ = await self.process_request(
                old.request,
                old.user_id,
                old.plan.metadata.get("business_metrics"),
                model=old.plan.metadata.get("planner_model"),
                run_here=run_here,
                plan_timeout=None,
            )
            return task
        return await self.submit(
            old.plan, request=old.request, user_id=old.user_id, run_here=run_here
        )

    async def _local_host(self, run_here: bool | None) -> EngineHost | None:
        """The engine to run a task on in this process, or None to hand it to the queue."""
        host = self.host
        if run_here is None:
            run_here = host is not None and not host.listen
        if not run_here:
            return None
        return host if host is not None else await self.start_engine()

    async def _dispatch(self, task_id: str, generation: int, *, run_here: bool | None) -> None:
        host = await self._local_host(run_here)
        if host is not None:
            await host.start_task(task_id, generation)
        elif (host := self.host) is not None:
            await host.enqueue_task(task_id, generation)
        else:
            if self._client is None:
                self._client = await asyncio.to_thread(QueueClient, self.settings)
            await self._client.enqueue(task_id, generation)

    # Reading -----------------------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task:
        return await asyncio.to_thread(self.store.get_task, task_id)

    async def status(self, task_id: str) -> ExecutionResult:
        def read() -> ExecutionResult:
            task = self.store.get_task(task_id)
            total, per_step = self.store.llm_usage(task_id)
            steps = self.store.step_runs(task_id)
            for step in steps:
                step.llm = per_step.get(step.step_id)
            return ExecutionResult(
                task=task,
                llm=total,
                steps=steps,
                approvals=self.store.approvals(task_id),
                artifacts=[ArtifactRef(**asdict(a)) for a in self.store.artifacts(task_id)]
                if task.status.finished
                else [],
            )

        return await asyncio.to_thread(read)

    async def history(
        self, *, limit: int = 20, status: TaskStatus | None = None, offset: int = 0
    ) -> tuple[list[Task], int]:
        return await asyncio.to_thread(
            self.store.list_tasks, limit=limit, status=status, offset=offset
        )

    async def pending_approvals(self, task_id: str) -> list[Approval]:
        result = await self.status(task_id)
        return [a for a in result.approvals if a.status is ApprovalStatus.PENDING]

    async def live_workers(self) -> int:
        lease = timedelta(seconds=self.settings.engine.lease_seconds)
        rows = await asyncio.to_thread(
            self.store.live_executors, lease=lease, kinds=["worker", "serve"]
        )
        return len(rows)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        poll_seconds: float = 0.2,
        on_progress: ProgressCallback | None = None,
    ) -> ExecutionResult:
        """Wait until the task finishes or parks for approval, and return its result.

        As :meth:`settled`; with ``on_progress``, the steps are also read and reported every
        ``poll_seconds``.
        """
        if on_progress is None:
            await self.settled(task_id, timeout=timeout, poll_seconds=poll_seconds)
            return await self.status(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ended = self._watch_end(task_id)
            try:
                result = await self.status(task_id)
                maybe = on_progress(result)
                if maybe is not None:
                    await maybe
                if result.task.status.settled:
                    return result
                if deadline is not None and time.monotonic() > deadline:
                    return result
                await self._pause(ended, poll_seconds)
            finally:
                self._forget_end(task_id, ended)

    async def settled(
        self, task_id: str, *, timeout: float | None = None, poll_seconds: float = 0.2
    ) -> TaskStatus:
        """The task's status once it has finished or is parked for approval (or, after
        ``timeout`` seconds, as it is then). Reads one row; a task whose run is in this
        process is seen the moment that run's end is durable, any other is read again every
        ``poll_seconds``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        read = False
        while True:
            ended = self._watch_end(task_id)  # before the read: an end in between is seen
            try:
                # (A run started here that is still listed has not told its last end: no
                # need to read, e.g. right after submit.)
                if read or self.host is None or not self.host.runs_here(task_id):
                    status = await asyncio.to_thread(self.store.task_status, task_id)
                    if status.settled:
                        return status
                pause = poll_seconds
                if deadline is not None:
                    pause = min(pause, deadline - time.monotonic())
                    if pause <= 0:
                        return await asyncio.to_thread(self.store.task_status, task_id)
                told = await self._pause(ended, pause)
                if told is not None and told.settled:
                    return told
                read = True  # told without a status, or a poll: read it
            finally:
                self._forget_end(task_id, ended)

    def _watch_end(self, task_id: str) -> asyncio.Future[TaskStatus | None] | None:
        return self.host.ends.watch(task_id) if self.host is not None else None

    def _forget_end(self, task_id: str, ended: asyncio.Future[TaskStatus | None] | None) -> None:
        if ended is not None and self.host is not None:
            self.host.ends.forget(task_id, ended)

    @staticmethod
    async def _pause(
        ended: asyncio.Future[TaskStatus | None] | None, seconds: float
    ) -> TaskStatus | None:
        """Sleep ``seconds`` or until ``ended`` is told; the status it was told, if any."""
        if ended is None:
            await asyncio.sleep(seconds)
            return None
        await asyncio.wait({ended}, timeout=seconds)
        return ended.result() if ended.done() else None

    # Decisions ---------------------------------------------------------------------------
    async def approve(
        self,
        task_id: str,
        *,
        comment: str | None = None,
        decided_by: str | None = None,
        step_id: str | None = None,
        run_here: bool | None = None,
        edits: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Task:
        """Approve the pending approval(s) and resume the task.

        ``edits``: per variant key (``linkedin``, ``blog:german``), the fields a person changed
        (text, title, subject, ...): the edited text is what the actions publish; the diff is
        stored. An edit breaking the channel's limits is refused (:class:`InvalidEditError`).
        """
        round_, revisions = (
            await self._checked_edits(task_id, edits, editor=decided_by) if edits else (None, [])
        )
        host = await self._local_host(run_here)
        engine = host if host is not None else self.host
        if engine is not None and not revisions:
            # (Approvals arriving together are decided in one transaction and resumed as one.)
            _, _, claimed = await engine.approve(
                Decision(task_id=task_id, comment=comment, decided_by=decided_by, step_id=step_id),
                here=host is not None,
            )
            return claimed[0] if claimed is not None else await self.get_task(task_id)
        generation, claimed = await asyncio.to_thread(
            self.store.approve_and_claim,
            task_id,
            comment=comment,
            decided_by=decided_by,
            step_id=step_id,
            revisions=revisions,
            round_=round_,
            executor_id=host.executor_id if host is not None else None,
        )
        if generation is None:  # other gates still wait
            return await self.get_task(task_id)
        if host is not None:
            assert claimed is not None
            await host.start_task(
                task_id, generation, claim=Claim(task=claimed[0], runs=claimed[1])
            )
            return claimed[0]
        await self._dispatch(task_id, generation, run_here=False)
        return await self.get_task(task_id)

    async def reject(self, task_id: str, *, comment: str, decided_by: str | None = None) -> Task:
        """Reject the task: nothing gated runs; the feedback is stored."""
        task = await self.get_task(task_id)
        if task.status is not TaskStatus.AWAITING_APPROVAL:
            raise ConflictError(
                f"task {task_id!r} is {task.status.value}, not awaiting approval", task_id=task_id
            )
        await asyncio.to_thread(
            self.store.reject_task, task_id, comment=comment, decided_by=decided_by
        )
        if task.phase is not None:
            await asyncio.to_thread(
                write_record, self.store, task_id, outcome="rejected", approval="rejected"
            )
        return await self.get_task(task_id)

    async def revise(
        self,
        task_id: str,
        *,
        feedback: str,
        decided_by: str | None = None,
        channels: list[str] | None = None,
        run_here: bool | None = None,
    ) -> Task:
        """Send a result back with feedback: the deliverables (of ``channels``, default all)
        and their dependants run again with the feedback, then the task returns to review."""
        task = await self.get_task(task_id)
        if not feedback.strip():
            raise InvalidEditError("revise needs feedback: say what to change")
        if (
            task.phase is not PipelinePhase.APPROVAL
            or task.status is not TaskStatus.AWAITING_APPROVAL
        ):
            raise ConflictError(
                f"task {task_id!r} is {task.status.value}"
                + (f" in phase {task.phase.value}" if task.phase else "")
                + ", not awaiting review of a result",
                task_id=task_id,
            )
        split, deliverables = self._deliverables(task.plan)
        chosen = [
            d for d in deliverables if not channels or d.key in channels or d.channel in channels
        ]
        unknown = sorted(
            set(channels or []) - {d.key for d in deliverables} - {d.channel for d in deliverables}
        )
        if unknown or not chosen:
            raise InvalidEditError(
                f"no deliverable for {', '.join(unknown) or 'these channels'}; "
                f"the result has {', '.join(d.key for d in deliverables) or 'none'}"
            )
        rerun = descendants(split.content, [d.step_id for d in chosen])
        generation = await asyncio.to_thread(
            self.store.revise_and_requeue,
            task_id,
            gate=review_gate(task.round),
            comment=feedback.strip(),
            decided_by=decided_by,
            step_ids=sorted(rerun),
        )
        await self._dispatch(task_id, generation, run_here=run_here)
        return await self.get_task(task_id)

    def _deliverables(self, plan: ExecutionPlan) -> tuple[PlanSplit, list[Deliverable]]:
        return plan_parts(plan, self.registry)

    async def _checked_edits(
        self, task_id: str, edits: Mapping[str, Mapping[str, Any]], *, editor: str | None
    ) -> tuple[int, list[ChannelVariant]]:
        """The edited variants (each checked against its channel's limits) and their round."""
        task = await self.get_task(task_id)
        if (
            task.phase is not PipelinePhase.APPROVAL
            or task.status is not TaskStatus.AWAITING_APPROVAL
        ):
            raise ConflictError(
                f"task {task_id!r} has no result awaiting review to edit", task_id=task_id
            )
        variants = {v.key: v for v in await asyncio.to_thread(self.store.variants, task_id)}
        unknown = sorted(set(edits) - set(variants))
        if unknown:
            raise InvalidEditError(
                f"no variant {', '.join(unknown)}; the result has {', '.join(variants) or 'none'}"
            )
        edited = []
        for key, change in edits.items():
            try:
                new = apply_edit(variants[key], dict(change), editor=editor)
            except ValueError as exc:
                raise InvalidEditError(f"{key}: {exc}") from None
            problems = variant_problems(new)
            if problems:
                raise InvalidEditError(f"the edited {key} breaks its limits: {'; '.join(problems)}")
            edited.append(new)
        return task.round, edited

    async def review(self, task_id: str) -> Review:
        """The result awaiting (or past) review: variants, assessment, attempts, actions."""

        def read() -> Review:
            task = self.store.get_task(task_id)
            split, _ = self._deliverables(task.plan)
            history = self.store.assessments(task_id)
            approvals = self.store.approvals(task_id)
            pending = next(
                (
                    a.step_id
                    for a in approvals
                    if a.status is ApprovalStatus.PENDING and a.step_id is not None
                ),
                None,
            )
            calls = self.store.llm_calls(task_id)
            variants = self.store.variants(task_id)
            return Review(
                task=task,
                round=task.round,
                needs_human=task.needs_human,
                gate=pending,
                variants=variants,
                assessment=history[-1][1] if history else None,
                attempts=[
                    {
                        "round": a.round,
                        "trigger": trigger,
                        "score": a.overall_score,
                        "passed": a.passed,
                        "judge_error": a.judge_error,
                    }
                    for trigger, a in history
                ],
                actions=split.actions,
                approvals=approvals,
                metadata={
                    "task_id": task_id,
                    "plan": [f"{s.id}:{s.tool}" for s in task.plan.steps],
                    "models": sorted({c.model for c in calls}),
                    "cost": round(task.total_cost, 6),
                    "quality_score": task.quality_score,
                    "sources": sorted(
                        {src.get("document", "") for v in variants for src in v.sources} - {""}
                    ),
                    "phase": task.phase.value if task.phase else None,
                },
            )

        return await asyncio.to_thread(read)

    async def execution_record(self, task_id: str) -> ExecutionRecord | None:
        return await asyncio.to_thread(self.store.execution_record, task_id)

    async def cancel(self, task_id: str) -> Task:
        task = await self.get_task(task_id)
        if task.status.finished:
            raise ConflictError(f"task {task_id!r} already {task.status.value}", task_id=task_id)
        ok = await asyncio.to_thread(
            self.store.update_task,
            task_id,
            status=TaskStatus.CANCELLED,
            only_if=[TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.AWAITING_APPROVAL],
            finished_at=utcnow(),
            error="cancelled",
        )
        if not ok:
            raise ConflictError(
                f"task {task_id!r} finished before it could be cancelled", task_id=task_id
            )
        await asyncio.to_thread(self.store.cancel_approvals, task_id)
        return await self.get_task(task_id)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def new_task_id() -> str:
    return uuid.uuid4().hex
