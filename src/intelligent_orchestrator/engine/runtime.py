"""DBOS in this process: launch, the task workflow, executor leases and recovery of dead executors."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from ..concurrency import Slots
from ..domain.models import (
    Approval,
    ApprovalStatus,
    ExecutionPlan,
    PipelinePhase,
    StepRun,
    Task,
    TaskStatus,
)
from ..errors import NotFoundError
from ..llm import ModelGateway
from ..settings import Settings
from ..storage import (
    Decided,
    Decision,
    NotHolderError,
    RunRef,
    StepBatch,
    Store,
    TaskUpdate,
    dbos_sqlite_engine,
    new_task,
)
from ..tools.registry import ToolRegistry
from .batching import Coalescer
from .ends import TaskEnds
from .journal import StepJournal, TakenOverError, taken_over
from .pipeline import Pipeline, plan_task
from .scheduler import DagRun, StepLimits, watch_runs

logger = logging.getLogger(__name__)

APP_NAME = "intelligent-orchestrator"
# Pinned, so that tasks parked or interrupted under one build are resumed by the next
# (DBOS would otherwise derive a version from the code and strand them). Bump only with a
# migration of in-flight workflows.
ENGINE_VERSION = "engine-2"  # engine-2: a request's task is planned inside its run
TASK_QUEUE = "tasks"
TASK_WORKFLOW = "task.run"
TASKS_WORKFLOW = "tasks.run"
SWEEP_PAGE = 100
"""Tasks checked per lease round and sweep for a run that nobody will carry out."""

EnterPhase = Callable[[PipelinePhase], Awaitable[None]]
# Plans a request's task (phases 1-2), calling EnterPhase as it enters discover and plan.
PlanTask = Callable[[Task, EnterPhase], Awaitable[ExecutionPlan]]


@dataclass(slots=True, kw_only=True)
class Claim:
    """A task this process has just taken for itself, to run here at once (no claim needed)."""

    task: Task
    runs: list[StepRun] = field(default_factory=list)
    create: Mapping[str, Any] | None = None
    """The new task's row, not yet stored: the run stores it with its first steps (one
    commit), so the task's steps start while the row is being written."""
    stored: asyncio.Future[None] | None = None
    """Resolves once ``create`` is durable (or fails with why it could not be stored)."""
    approved: list[Approval] = field(default_factory=list)
    """Approvals granted in the transaction that claimed the task: their gates pass without
    asking the database again."""


@dataclass(slots=True, kw_only=True)
class Runtime:
    settings: Settings
    store: Store
    registry: ToolRegistry
    executor_id: str
    limits: StepLimits
    http_transport: Any = None
    gateway: ModelGateway | None = None
    planner: PlanTask | None = None
    journal: StepJournal | None = None
    ends: TaskEnds = field(default_factory=TaskEnds)
    """Told when a run here ends (its waiters need not poll)."""
    claimed: dict[str, Claim] = field(default_factory=dict)
    """Tasks this process has just taken for itself (created, or approved, running on its
    executor, to run here at once): that run needs no claim. A recovery or a run elsewhere
    claims as usual."""
    local_runs: dict[str, asyncio.Task[TaskStatus]] = field(default_factory=dict)
    """Runs of claimed tasks started here alongside their DBOS workflow (which awaits them)."""
    cancel_check: Coalescer[str, bool] = field(init=False)
    """Whether a task was cancelled, one query for the tasks that start together."""

    def __post_init__(self) -> None:
        self.cancel_check = Coalescer(self._cancelled, name="cancel-check")

    async def _cancelled(self, task_ids: list[str]) -> list[bool]:
        cancelled = set(await asyncio.to_thread(self.store.cancelled_among, task_ids))
        return [t in cancelled for t in task_ids]

    def dag(
        self, task_id: str, plan: ExecutionPlan, *, auto_approve: bool, **kwargs: Any
    ) -> DagRun:
        """A run of ``plan``'s steps for ``task_id`` in this process."""
        return DagRun(
            task_id=task_id,
            plan=plan,
            store=self.store,
            registry=self.registry,
            settings=self.settings,
            limits=self.limits,
            executor_id=self.executor_id,
            auto_approve=auto_approve,
            http_transport=self.http_transport,
            gateway=self.gateway,
            journal=self.journal,
            **kwargs,
        )


_runtime: Runtime | None = None


def current_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the engine is not started in this process")
    return _runtime


def workflow_id(task_id: str, generation: int) -> str:
    return task_id if generation == 0 else f"{task_id}:g{generation}"


@DBOS.workflow(name=TASK_WORKFLOW)
async def run_task_workflow(task_id: str) -> str:
    """One durable run of a task (first run, or a continuation after an approval).

    The DAG's steps are checkpointed by the scheduler in ``step_runs`` (keyed by step id);
    this workflow makes the run itself durable: DBOS recovers it if the process dies.
    """
    generation = run_generation(DBOS.workflow_id or "", task_id)
    return (await _run(current_runtime(), task_id, generation)).value


def run_generation(wf_id: str, task_id: str) -> int | None:
    """The run generation a task's own workflow id names (:func:`workflow_id`): its run
    claims that generation only, so a stale workflow of an earlier one ends without running."""
    if wf_id == task_id:
        return 0
    head, _, generation = wf_id.rpartition(":g")
    return int(generation) if head == task_id and generation.isdigit() else None


async def _run(rt: Runtime, task_id: str, generation: int | None = None) -> TaskStatus:
    """The workflow's body: the run this process started for the task already (it started
    with the workflow's record, not after it), or a run of its own (a recovery)."""
    local = rt.local_runs.get(task_id)
    if local is not None:
        return await asyncio.shield(local)
    return await execute_task(rt, task_id, generation=generation)


@DBOS.workflow(name=TASKS_WORKFLOW)
async def run_tasks_workflow(runs: list[tuple[str, int]]) -> list[str]:
    """One durable run of several tasks that this process took for itself at the same moment
    (created or approved together, each ``(task id, run generation)``): one DBOS workflow
    record and outcome for all of them.

    Each task is run as by ``run_task_workflow``, concurrently, and one task's crash does not
    stop the others. A recovered run re-runs each task from its durable steps, unless the task
    has finished or moved on to a later generation meanwhile (parked and approved again: that
    run is its own workflow). A run stopped with the process (cancelled) leaves the workflow
    pending, so that it is recovered.
    """
    rt = current_runtime()
    ended = await asyncio.gather(
        *(_run(rt, task_id, generation) for task_id, generation in runs),
        return_exceptions=True,
    )
    statuses: list[str] = []
    for (task_id, _), end in zip(runs, ended, strict=True):
        if isinstance(end, BaseException) and not isinstance(end, Exception):
            raise end
        if isinstance(end, BaseException):
            logger.error("the run of task %s crashed: %r", task_id, end, exc_info=end)
            statuses.append("crashed")
        else:
            statuses.append(end.value)
    return statuses


async def execute_task(
    rt: Runtime, task_id: str, *, generation: int | None = None, listed: bool = False
) -> TaskStatus:
    """Run the task: as claimed here (``rt.claimed``), or claimed now (of ``generation``, if
    given: a later generation's run owns the task). ``listed``: a run in ``rt.local_runs``,
    whose end is told once it is no longer listed."""
    claim = rt.claimed.pop(task_id, None)
    if not listed:
        rt.ends.begin(task_id)
    try:
        return await _execute(rt, task_id, claim, generation)
    finally:
        if not listed:
            rt.ends.over(task_id)
        if claim is not None and claim.stored is not None and not claim.stored.done():
            # an early end must not leave the submitter waiting
            claim.stored.set_exception(RuntimeError("the task's run ended before it was stored"))


async def _execute(
    rt: Runtime, task_id: str, claim: Claim | None, generation: int | None
) -> TaskStatus:
    store = rt.store
    # (A task created here a moment ago is known to no one yet but its submitter.)
    if claim is not None and claim.create is None and await rt.cancel_check.submit(task_id):
        return TaskStatus.CANCELLED  # cancelled between its claim and this start
    if claim is None:
        try:
            claimed = await asyncio.to_thread(
                store.claim_task, task_id, executor_id=rt.executor_id, generation=generation
            )
        except NotFoundError:
            # A run recovered after a crash between its start and the task's first commit:
            # the submit never returned, the task does not exist.
            logger.warning("task %s was never stored; nothing to run", task_id)
            return TaskStatus.CANCELLED
        if claimed is None:
            return (await asyncio.to_thread(store.get_task, task_id)).status
        claim = Claim(task=claimed[0], runs=claimed[1])
    task, previous = claim.task, claim.runs
    plan = task.plan
    plain = not plan.pending and not plan.requires_approval
    plain = plain and not (plan.uses_pipeline and rt.settings.quality.enabled)
    if not plain and rt.journal is not None:
        # A run started before its workflow's record writes to the database directly from
        # here on (approvals, phases): not before that record is durable.
        await rt.journal.released(task_id)
    if claim.create is not None and not plain:
        await _store_new(rt, claim)
    if task.plan.pending:
        planned = await plan_task(rt, task)
        if isinstance(planned, TaskStatus):
            return planned
        task = planned
    plan = task.plan
    approved = {a.step_id: a for a in claim.approved if a.status is ApprovalStatus.APPROVED}
    if plan.requires_approval and None not in approved:
        try:
            approval = await asyncio.to_thread(
                store.request_approval,
                task_id,
                None,
                expires_in=timedelta(hours=rt.settings.engine.approval_expiry_hours),
                auto_by="auto-approve" if task.auto_approve else None,
                only_executor=rt.executor_id,
            )
        except NotHolderError as exc:
            taken_over(exc)
            return TaskStatus.RUNNING  # (elsewhere)
        if approval.status.value == "pending":
            await asyncio.to_thread(
                store.update_task,
                task_id,
                status=TaskStatus.AWAITING_APPROVAL,
                only_if=[TaskStatus.RUNNING],
                only_executor=rt.executor_id,
            )
            return TaskStatus.AWAITING_APPROVAL
        if approval.status.value != "approved":
            await asyncio.to_thread(
                store.update_task,
                task_id,
                status=TaskStatus.REJECTED,
                only_if=[TaskStatus.RUNNING],
                only_executor=rt.executor_id,
                finished_at=_now(),
                error=f"task approval {approval.status.value}: {approval.comment or ''}".strip(),
            )
            return TaskStatus.REJECTED
    if plan.uses_pipeline and rt.settings.quality.enabled:
        try:
            return await Pipeline(rt, task).run(previous)
        except TakenOverError:
            return TaskStatus.RUNNING  # (elsewhere; the journal has said so)
    dag = rt.dag(
        task_id,
        plan,
        auto_approve=task.auto_approve,
        create=claim.create,
        stored=claim.stored,
        approved=approved,
    )

    def finish(status: TaskStatus) -> TaskUpdate | None:
        if status is TaskStatus.CANCELLED:
            return None  # the cancel wrote the task's status
        fields: dict[str, Any] = {}
        if status.finished:
            fields["finished_at"] = _now()
        failure = dag.first_failure()
        if status is TaskStatus.FAILED and failure is not None:
            fields["failed_step"] = failure[0]
            fields["error"] = f"step {failure[0]!r} failed: {failure[1]}"
        elif status is TaskStatus.FAILED and dag.stopped:
            fields["error"] = f"task stopped: {dag.stopped}"
        elif status is TaskStatus.REJECTED:
            fields["error"] = "rejected"
        return TaskUpdate(status=status, fields=fields)

    try:
        return await dag.run(previous, finish=finish)
    except TakenOverError:
        return TaskStatus.RUNNING  # (elsewhere; the journal has said so)
    except Exception as exc:
        logger.exception("task crashed", extra={"task_id": task_id})
        await asyncio.to_thread(
            store.update_task,
            task_id,
            status=TaskStatus.FAILED,
            only_if=[TaskStatus.RUNNING],
            only_executor=rt.executor_id,
            finished_at=_now(),
            error=f"internal error: {type(exc).__name__}: {exc}",
        )
        return TaskStatus.FAILED


async def _store_new(rt: Runtime, claim: Claim) -> None:
    """Store a new task's row on its own (a run that does more than its DAG needs it first)."""
    assert claim.create is not None
    assert rt.journal is not None
    written = rt.journal.write(StepBatch(task_id=claim.task.task_id, create=claim.create))
    claim.create = None
    try:
        await written
    except BaseException as exc:
        if claim.stored is not None and not claim.stored.done():
            claim.stored.set_exception(exc)
        raise
    if claim.stored is not None and not claim.stored.done():
        claim.stored.set_result(None)


def _now() -> Any:
    from ..storage import utcnow

    return utcnow()


def _uncovered(runs: list[RunRef], reported: set[str]) -> list[RunRef]:
    """The runs no DBOS workflow carries out: no workflow of the run's own id exists, and no
    pending batch (``tasks.run``) lists the task at that generation. (Every run of a task's
    generation but a batch's has that id.) A run whose own workflow ended while the task
    still waits for it is left to a person (DBOS never starts an id twice): logged once, its
    id added to ``reported``."""
    if not runs:
        return []
    own = {workflow_id(r.task_id, r.generation): r for r in runs}
    known = DBOS.list_workflows(workflow_ids=list(own), load_input=False, load_output=False)
    for w in known:
        if w.status not in ("PENDING", "ENQUEUED", "DELAYED") and w.workflow_id not in reported:
            reported.add(w.workflow_id)
            logger.error(
                "task %s waits for its run, but the run's workflow %s ended %s; it will not "
                "run by itself (cancel the task, or resume the workflow with DBOS)",
                own[w.workflow_id].task_id,
                w.workflow_id,
                w.status,
            )
    found = {w.workflow_id for w in known}
    left = [r for wf_id, r in own.items() if wf_id not in found]
    if not left:
        return []
    batched: set[tuple[str, int]] = set()
    for w in DBOS.list_workflows(
        name=TASKS_WORKFLOW, status=["PENDING", "ENQUEUED"], load_output=False
    ):
        args = w.input.get("args", ()) if isinstance(w.input, dict) else ()
        if args:
            batched.update((task_id, generation) for task_id, generation in args[0])
    return [r for r in left if (r.task_id, r.generation) not in batched]


def default_executor_id(kind: str) -> str:
    host = socket.gethostname().split(".")[0][:24] or "host"
    return f"{kind}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def _launch(launches: list[tuple[str, int]]) -> list[None]:
    """Start the runs of tasks claimed here at the same moment (task id, run generation) as
    ONE DBOS workflow: DBOS writes a record before and an outcome after every workflow, a few
    milliseconds of CPU each, which would otherwise be paid per task in a burst of submits or
    approvals. A lone task keeps its own workflow, named as usual."""
    if len(launches) == 1:
        task_id, generation = launches[0]
        # (A claim's run is new: if its id exists, a sweep started it while this process
        # stalled for a lease, and this run must not go on.)
        with SetWorkflowID(workflow_id(task_id, generation), workflow_id_reuse_policy="reject"):
            await DBOS.start_workflow_async(run_task_workflow, task_id)
    else:
        # Unique: a task's run generation is claimed by one process, once.
        first, generation = launches[0]
        with SetWorkflowID(f"{workflow_id(first, generation)}+{len(launches)}"):
            await DBOS.start_workflow_async(run_tasks_workflow, list(launches))
    return [None] * len(launches)


class EngineHost:
    """Launches DBOS in this process as one executor, with a heartbeat lease.

    Every host also recovers the tasks of executors whose lease has run out: DBOS recovers
    only its own executor id at start-up, so a dead worker's tasks would otherwise stay
    pending forever.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: ToolRegistry,
        *,
        kind: str,
        listen: bool,
        executor_id: str | None = None,
        http_transport: Any = None,
        gateway: ModelGateway | None = None,
        planner: PlanTask | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.planner = planner
        self.store = store
        self.registry = registry
        self.kind = kind
        self.listen = listen
        self.executor_id = executor_id or settings.engine.executor_id or default_executor_id(kind)
        self.http_transport = http_transport
        self._lease_task: asyncio.Task[None] | None = None
        self._cancel_task: asyncio.Task[None] | None = None
        self._sys_engine: Any = None
        self.ends = TaskEnds()
        """Waiters for the end of a run in this process (``Orchestrator.settled``)."""
        # (The record is made in a thread while the runs start: it waits until the steps
        # they launch have started, instead of taking the GIL from them. Launching a 50-wide
        # fan-out's steps takes 2-4 ms of the loop on a slow 2-core VM: with a 2 ms bound the
        # record often started first. fanout_phases --against, 40 runs: first -0.5 ms.)
        self._launcher: Coalescer[tuple[str, int], None] = Coalescer(
            _launch, busy_linger=256, busy_seconds=0.010, name="task-launcher"
        )
        self._approver: Coalescer[tuple[Decision, bool], Decided] = Coalescer(
            self._approve_batch, name="approver"
        )
        self._swept: dict[str, RunRef | None] = {"orphans": None, "queued": None}
        """Where each sweep of the lease round goes on (None: from the oldest)."""
        self._ended: set[str] = set()
        """Workflows found ended while their task still waits for them (reported once)."""

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.engine.lease_seconds)

    async def start(self) -> None:
        global _runtime
        await asyncio.to_thread(self._register)
        _runtime = Runtime(
            settings=self.settings,
            store=self.store,
            registry=self.registry,
            executor_id=self.executor_id,
            limits=StepLimits(global_steps=Slots(self.settings.engine.global_concurrency)),
            http_transport=self.http_transport,
            gateway=self.gateway,
            planner=self.planner,
            journal=StepJournal(
                self.store,
                delay=self.settings.engine.commit_delay_ms / 1000,
                on_end=self.ends.ended,
            ),
            ends=self.ends,
        )
        config: DBOSConfig = {
            "name": APP_NAME,
            "system_database_url": self.settings.system_database_url,
            "application_version": ENGINE_VERSION,
            "executor_id": self.executor_id,
            "log_level": "WARNING",
            "enable_otlp": False,
            # DBOS installs its pool as the loop's default executor (asyncio.to_thread), with no
            # bound: 100 running tasks made 150+ threads that mostly waited for the database
            # write lock and the GIL.
            "max_executor_threads": self.settings.engine.io_threads,
        }
        if not self.settings.is_postgres:
            # DBOS's own SQLite set-up is rollback-journal + synchronous=FULL; ours is WAL +
            # NORMAL with IMMEDIATE transactions and a busy timeout (DESIGN: DBOS rules).
            self._sys_engine = dbos_sqlite_engine(self.settings.system_database_url)
            config["system_database_engine"] = self._sys_engine
        DBOS(config=config)
        if not self.listen:
            DBOS.listen_queues([])
        await asyncio.to_thread(DBOS.launch)
        await DBOS.register_queue_async(
            TASK_QUEUE,
            worker_concurrency=self.settings.engine.worker_concurrency,
            polling_interval_sec=self.settings.engine.queue_polling_seconds,
        )
        await self.maintain()
        await asyncio.to_thread(self.registry.prepare)
        await asyncio.to_thread(self.store.prepare)
        # What exists now (modules, DBOS, pools, the registry) lives as long as the engine:
        # the cyclic garbage collector stops scanning it. A full collection of those ~190,000
        # objects stopped the event loop for ~130 ms, about once a second of busy running
        # (20 fan-out runs, 1.3 s); with them frozen, collections scan only what runs create.
        gc.freeze()
        self._lease_task = asyncio.create_task(self._lease_loop(), name="executor-lease")
        self._cancel_task = asyncio.create_task(
            watch_runs(self.store, _runtime.limits, executor_id=self.executor_id),
            name="cancellations",
        )

    def _register(self) -> None:
        self.store.register_executor(
            self.executor_id,
            kind=self.kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            lease=self.lease,
        )

    async def stop(self) -> None:
        try:
            await self._stop()
        finally:
            gc.unfreeze()  # (the engine's objects may be garbage now)

    async def _stop(self) -> None:
        global _runtime
        for t in (self._lease_task, self._cancel_task):
            if t is not None:
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
        # Approvals and launches under way finish first (a claimed task gets its record),
        # then the runs started here stop as in a crash: DBOS resumes them.
        await self._approver.drain()
        await self._launcher.drain()
        if _runtime is not None:
            runs = list(_runtime.local_runs.values())
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        if _runtime is not None and _runtime.journal is not None:
            await _runtime.journal.drain()
        await asyncio.to_thread(self.store.move_unmoved)  # (what its last commits kept aside)
        await asyncio.to_thread(self.store.stop_executor, self.executor_id)
        await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
        if self._sys_engine is not None:
            self._sys_engine.dispose()
        _runtime = None

    async def maintain(self) -> list[str]:
        """One lease round: heartbeat, expire old approvals, recover dead executors' tasks."""
        if not await asyncio.to_thread(self.store.heartbeat, self.executor_id):
            # Silent for a lease (a stalled loop, a paused machine): another process took
            # this executor for dead and recovered its recorded runs, which may now be running
            # twice. Alive again from here, so that what it records next is recovered if it
            # dies.
            logger.error(
                "executor %s missed its lease and was taken over by another process; the runs "
                "it had then may be running there too. Registering it again",
                self.executor_id,
            )
            await asyncio.to_thread(self._register)
        await asyncio.to_thread(self.store.move_unmoved)
        expired = await asyncio.to_thread(self.store.expire_approvals)
        if expired:
            logger.info("approvals expired", extra={"tasks": expired})
        dead = await asyncio.to_thread(
            self.store.claim_dead_executors, me=self.executor_id, lease=self.lease
        )
        for ex in dead:
            try:
                handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [ex])  # pyright: ignore[reportPrivateUsage]  # DBOS's recovery entry point for another executor id
                # DBOS logs and skips a workflow whose recovery raised: one still pending
                # under the dead executor would never run, so the executor stays claimable.
                left = await asyncio.to_thread(_pending_runs, ex)
            except Exception:
                logger.exception("recovering executor %s failed; it stays claimable", ex)
                await asyncio.to_thread(self.store.release_executor, ex)
                continue
            if left:
                logger.error(
                    "recovering %d task run(s) of executor %s failed (%s); it stays claimable",
                    len(left),
                    ex,
                    ", ".join(left[:5]),
                )
                await asyncio.to_thread(self.store.release_executor, ex)
                continue
            if handles:
                logger.warning(
                    "recovering %d task run(s) of executor %s, which stopped or died",
                    len(handles),
                    ex,
                )
        # Runs nobody carries out: the process stopped between the commit that claimed or
        # queued the task and its run's DBOS record. Only tasks untouched for a lease: a live
        # process's record is on its way (README, "Durability").
        await self._sweep(
            "orphans",
            partial(self.store.orphaned_runs, me=self.executor_id),
            self.start_task,
            "task %s is claimed but has no run recorded (the process that claimed it "
            "stopped first); starting its run here",
        )
        await self._sweep(
            "queued",
            self.store.queued_before,
            self.enqueue_task,
            "task %s was queued without its run (the process that queued it stopped first); "
            "queueing the run",
        )
        return dead

    async def _sweep(
        self,
        name: str,
        find: Callable[..., list[RunRef]],
        act: Callable[[str, int], Awaitable[None]],
        message: str,
    ) -> None:
        """One page of a sweep: the tasks ``find`` lists untouched for a lease (from where the
        last round stopped) that no workflow covers get ``act`` (start or enqueue the run)."""
        cutoff = _now() - self.lease
        page = await asyncio.to_thread(find, cutoff, after=self._swept[name], limit=SWEEP_PAGE)
        self._swept[name] = page[-1] if len(page) == SWEEP_PAGE else None
        here = _runtime.local_runs.keys() | _runtime.claimed.keys() if _runtime else set()
        page = [r for r in page if r.task_id not in here]  # (a run of ours on its way)
        for run in await asyncio.to_thread(_uncovered, page, self._ended):
            logger.warning(message, run.task_id)
            await act(run.task_id, run.generation)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.engine.heartbeat_seconds)
            try:
                await self.maintain()
            except Exception:
                logger.exception("lease round failed")

    async def start_task(
        self, task_id: str, generation: int = 0, *, claim: Claim | None = None
    ) -> None:
        """Run the task in this process (not through the queue). ``claim``: the task as this
        executor just took it (created, or approved, running on it). A claim that carries a
        new task's row returns once that row is stored."""
        rt = current_runtime()
        if claim is None:  # not ours alone: DBOS's workflow id keeps a second start out
            with SetWorkflowID(workflow_id(task_id, generation)):
                await DBOS.start_workflow_async(run_task_workflow, task_id)
            return
        # The run starts now, while DBOS records its workflow (a few milliseconds in a
        # thread); none of its writes is committed before that record is, so whatever of the
        # task is durable has a workflow to recover it. Only pure steps get ahead: a side
        # effect, an approval request or a phase change waits for the record (and if the
        # record fails, the run is cancelled).
        assert rt.journal is not None
        rt.ends.begin(task_id)
        rt.claimed[task_id] = claim
        registered = self._launcher.submit((task_id, generation))
        rt.journal.hold(task_id, until=registered)
        run = asyncio.create_task(execute_task(rt, task_id, listed=True), name=f"task:{task_id}")
        rt.local_runs[task_id] = run

        def forget(_: object) -> None:
            if rt.local_runs.get(task_id) is run:
                del rt.local_runs[task_id]
                # (now that it is no longer listed: see Orchestrator.settled; a newer run
                # listed meanwhile tells its own end)
                rt.ends.over(task_id)

        def unrecorded(f: asyncio.Future[None]) -> None:
            if f.cancelled() or f.exception() is not None:
                run.cancel()  # no record, no run: nothing of it may become durable

        run.add_done_callback(forget)
        registered.add_done_callback(unrecorded)
        await asyncio.shield(registered)
        if claim is not None and claim.stored is not None:
            await claim.stored

    def runs_here(self, task_id: str) -> bool:
        """Whether a run of ``task_id`` that this process started is under way (:attr:`ends`
        is told when it is over, after it is no longer listed here)."""
        return _runtime is not None and task_id in _runtime.local_runs

    async def approve(self, decision: Decision, *, here: bool = True) -> Decided:
        """Approve (``Store.approve_and_claim``) and, once no gate waits, resume the task: here
        (claimed by this executor), or through the shared queue. Approvals that arrive
        together share one transaction, and the runs they resume here one DBOS workflow."""
        return await self._approver.submit((decision, here))

    async def _approve_batch(
        self, items: list[tuple[Decision, bool]]
    ) -> list[Decided | BaseException]:
        results: list[Decided | BaseException] = [RuntimeError("not decided")] * len(items)
        for here in (True, False):
            group = [i for i, (_, h) in enumerate(items) if h is here]
            if not group:
                continue
            try:
                decided = await self._decide([items[i][0] for i in group], here=here)
            except Exception as exc:  # (the other group's decisions stand)
                decided = [exc] * len(group)
            for i, r in zip(group, decided, strict=True):
                results[i] = r
        return results

    async def _decide(
        self, decisions: list[Decision], *, here: bool
    ) -> list[Decided | BaseException]:
        claim_for = self.executor_id if here else None
        results: list[Decided | BaseException]
        try:
            results = list(
                await asyncio.to_thread(self.store.approve_many, decisions, executor_id=claim_for)
            )
        except Exception:
            if len(decisions) == 1:
                raise
            # (A deadlock or a bad row must not fail every approval of the batch: decide each
            # on its own. One the failed commit did apply is refused as no longer waiting.)
            logger.warning("deciding %d approvals together failed; one by one", len(decisions))
            results = []
            for d in decisions:
                try:
                    results += await asyncio.to_thread(
                        self.store.approve_many, [d], executor_id=claim_for
                    )
                except Exception as exc:
                    results.append(exc)
        resumed: dict[int, tuple[Decided, int]] = {
            i: (r, r[1]) for i, r in enumerate(results) if isinstance(r, tuple) and r[1] is not None
        }
        started = await asyncio.gather(
            *(
                self.start_task(
                    r[2][0].task_id, gen, claim=Claim(task=r[2][0], runs=r[2][1], approved=r[0])
                )
                if r[2] is not None
                else self.enqueue_task(decisions[i].task_id, gen)
                for i, (r, gen) in resumed.items()
            ),
            return_exceptions=True,
        )
        for i, outcome in zip(resumed, started, strict=True):
            if isinstance(outcome, BaseException):
                results[i] = outcome
        return results

    async def submit_new(self, values: Mapping[str, Any], plan: ExecutionPlan) -> Task:
        """Create a task running here and start it: the row is stored in the same commit as
        its first steps, which start meanwhile. Returns once the row is durable."""
        task = new_task(values, plan)
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.start_task(task.task_id, claim=Claim(task=task, create=values, stored=stored))
        return task

    async def enqueue_task(self, task_id: str, generation: int = 0) -> None:
        queue = await DBOS.retrieve_queue_async(TASK_QUEUE)
        assert queue is not None
        with SetWorkflowID(workflow_id(task_id, generation)):
            await queue.enqueue_async(run_task_workflow, task_id)


class QueueClient:
    """Enqueues task runs from a process that does not execute tasks (CLI, API-only)."""

    def __init__(self, settings: Settings) -> None:
        from dbos import DBOSClient

        self._engine = (
            None
            if settings.is_postgres
            else dbos_sqlite_engine(settings.system_database_url, pool_size=2)
        )
        self._client = DBOSClient(
            system_database_url=settings.system_database_url,
            system_database_engine=self._engine,
            application_name=APP_NAME,
        )

    async def enqueue(self, task_id: str, generation: int = 0) -> None:
        from dbos import EnqueueOptions

        options: EnqueueOptions = {
            "workflow_name": TASK_WORKFLOW,
            "queue_name": TASK_QUEUE,
            "workflow_id": workflow_id(task_id, generation),
            "app_version": ENGINE_VERSION,
        }
        await self._client.enqueue_async(options, task_id)

    def close(self) -> None:
        self._client.destroy()
        if self._engine is not None:
            self._engine.dispose()


def migrate_system_database(settings: Settings) -> None:
    """Create or upgrade DBOS's system tables (idempotent)."""
    DBOS.migrate(settings.system_database_url)


def _pending_runs(executor_id: str) -> list[str]:
    """This application's workflows of this engine version still pending under
    ``executor_id`` (DBOS's recovery picks them by the same three, in a system database other
    applications may share)."""
    return [
        w.workflow_id
        for w in DBOS.list_workflows(
            status="PENDING",
            executor_id=executor_id,
            app_version=ENGINE_VERSION,
            application_name=APP_NAME,
            load_input=False,
            load_output=False,
        )
    ]
