"""Tasks whose run was never recorded: their process stopped between the commit that queued or
claimed them and the DBOS workflow that runs them. The lease round finds and runs them."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from dbos import DBOS
from dbos import _recovery as dbos_recovery

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.engine.runtime import TASKS_WORKFLOW, run_generation, workflow_id
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store, create_engine, upgrade, utcnow
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.engine.test_crash import submit
from tests.support.procs import Worker, until
from tests.support.tools import mail_workflow, outbox, runs

MAIL = ExecutionPlan.model_validate(mail_workflow())
ORPHANED = "is claimed but has no run recorded"
LEASE = timedelta(seconds=30)
SLOW = {
    "name": "slow",
    "steps": [
        {"id": "slow", "tool": "sleep", "inputs": {"seconds": 60, "retry_seconds": 0.2}},
        {"id": "last", "tool": "noop", "inputs": {"value": "${steps.slow.output.value}"}},
    ],
}


@pytest.fixture
def short_lease(settings: Settings) -> Settings:
    """A lease of 1 s (a heartbeat every 0.5 s): the sweeps look at tasks a lease old."""
    settings.engine.lease_seconds = 1.0
    return settings


def ghost(store: Store) -> str:
    """An executor that registered and then stopped (as a killed process is seen once its
    lease runs out)."""
    store.register_executor(
        "ghost", kind="worker", host="elsewhere", pid=1, lease=timedelta(seconds=1)
    )
    store.stop_executor("ghost")
    return "ghost"


async def test_a_task_approved_and_claimed_by_a_process_that_died_is_run(
    short_lease: Settings, orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    ws = orch.settings.workspace
    orch.settings.engine.lease_seconds = 2.0  # (room for the "too recent" check below)
    task = await orch.submit(MAIL)
    parked = await orch.wait(task.task_id, timeout=30)
    assert parked.task.status is TaskStatus.AWAITING_APPROVAL
    # The dead process's approval: committed, the task claimed by it, no workflow recorded.
    generation, claimed = orch.store.approve_and_claim(
        task.task_id, comment="ok", decided_by="ana", executor_id=ghost(orch.store)
    )
    assert generation == 1
    assert claimed is not None
    assert claimed[0].status is TaskStatus.RUNNING
    assert await DBOS.list_workflows_async(workflow_ids=[workflow_id(task.task_id, 1)]) == []
    assert orch.host is not None
    await orch.host.maintain()  # (too recent: a live process's record may be on its way)
    assert ORPHANED not in caplog.text
    await asyncio.sleep(2.1)
    await orch.host.maintain()  # (or the lease loop, whichever comes first)
    done = await orch.wait(task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert f"task {task.task_id} {ORPHANED}" in caplog.text
    assert outbox(ws) == [f"{task.task_id}:send v5"]
    assert runs(ws, task.task_id) == ["draft", "send"]  # the draft was not redone


async def test_a_task_created_by_a_process_that_died_before_its_run_is_run(
    short_lease: Settings, orch: Orchestrator
) -> None:
    task = orch.store.create_task(MAIL, auto_approve=True, executor_id=ghost(orch.store))
    await asyncio.sleep(1.1)
    assert orch.host is not None
    await orch.host.maintain()
    done = await orch.wait(task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert outbox(orch.settings.workspace) == [f"{task.task_id}:send v5"]


async def test_a_batch_covering_an_earlier_generation_does_not_hide_the_claimed_one(
    short_lease: Settings, orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    """Two tasks started together run in one batched workflow, which stays pending while one
    of them runs on. The other parks, is approved and claimed by a process that dies: the
    batch names that task at generation 0, its claimed run is generation 1."""
    slow = ExecutionPlan.model_validate(
        {"name": "slow", "steps": [{"id": "wait", "tool": "sleep", "inputs": {"seconds": 60}}]}
    )
    mail, long = await asyncio.gather(orch.submit(MAIL), orch.submit(slow))
    [batch] = await DBOS.list_workflows_async(name=TASKS_WORKFLOW)
    assert batch.input is not None
    assert sorted(t for t, _ in batch.input["args"][0]) == sorted([mail.task_id, long.task_id])
    assert (await orch.wait(mail.task_id, timeout=30)).task.status is TaskStatus.AWAITING_APPROVAL
    orch.store.approve_and_claim(
        mail.task_id, comment=None, decided_by="ana", executor_id=ghost(orch.store)
    )
    await asyncio.sleep(1.1)
    assert orch.host is not None
    await orch.host.maintain()
    done = await orch.wait(mail.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert f"task {mail.task_id} {ORPHANED}" in caplog.text
    assert outbox(orch.settings.workspace) == [f"{mail.task_id}:send v5"]
    [still] = await DBOS.list_workflows_async(name=TASKS_WORKFLOW)
    assert still.status == "PENDING"  # (the batch was pending all along)
    await orch.cancel(long.task_id)


async def test_a_process_restarted_under_its_executor_id_runs_what_it_claimed_unrecorded(
    short_lease: Settings, registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Its executor is alive again, so its own sweep looks at its claims too."""
    engine = create_engine(short_lease.app_database_url)
    upgrade(engine)
    store = Store(engine)
    store.register_executor("fixed", kind="worker", host="here", pid=1, lease=timedelta(seconds=1))
    store.stop_executor("fixed")  # (killed; its restart comes after its lease)
    task = store.create_task(MAIL, auto_approve=True, executor_id="fixed")
    engine.dispose()
    orch = Orchestrator(short_lease, registry=registry)
    try:
        await orch.start_engine(kind="worker", executor_id="fixed")
        done = await orch.wait(task.task_id, timeout=30)  # (a lease round, after a lease)
    finally:
        await orch.close()
    assert done.task.status is TaskStatus.SUCCEEDED
    assert f"task {task.task_id} {ORPHANED}" in caplog.text


async def test_a_stale_workflow_of_an_earlier_generation_does_not_run_the_task(
    orch: Orchestrator,
) -> None:
    """A task's own workflow claims the generation its id names, and no other."""
    assert run_generation("t1", "t1") == 0
    assert run_generation("t1:g3", "t1") == 3
    assert run_generation("t1:g3+2", "t1") is None
    assert run_generation("t2:g3", "t1") is None
    task = orch.store.create_task(MAIL, auto_approve=True)
    orch.store.update_task(task.task_id, status=TaskStatus.AWAITING_APPROVAL)
    orch.store.request_approval(task.task_id, None, expires_in=timedelta(hours=1))
    generation, _ = orch.store.approve_and_claim(task.task_id, comment=None, decided_by="ana")
    assert generation == 1
    assert orch.host is not None
    await orch.host.start_task(task.task_id, 0)  # a generation-0 run, recovered late
    handle = await DBOS.retrieve_workflow_async(workflow_id(task.task_id, 0))
    assert await handle.get_result() == TaskStatus.QUEUED.value
    assert (await orch.get_task(task.task_id)).status is TaskStatus.QUEUED
    assert runs(orch.settings.workspace, task.task_id) == []


async def test_a_queued_task_whose_run_was_never_enqueued_is_queued_after_a_lease(
    short_lease: Settings, serve_orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    host = serve_orch.host
    assert host is not None
    # Queued by clients that died before enqueueing their runs.
    task = serve_orch.store.create_task(MAIL, auto_approve=True)
    await asyncio.sleep(1.1)
    fresh = serve_orch.store.create_task(MAIL, auto_approve=True)  # its client may enqueue it yet
    with caplog.at_level(logging.WARNING):
        await host.maintain()
        assert f"task {task.task_id} was queued without its run" in caplog.text
        assert f"task {fresh.task_id} was queued" not in caplog.text
    for t in (task, fresh):  # (the later one, by a lease round once it is a lease old)
        done = await serve_orch.wait(t.task_id, timeout=30)
        assert done.task.status is TaskStatus.SUCCEEDED
        assert runs(serve_orch.settings.workspace, t.task_id) == ["draft", "send"]
    assert f"task {fresh.task_id} was queued without its run" in caplog.text


async def test_a_queued_task_whose_run_waits_in_the_queue_is_left_alone(
    short_lease: Settings, orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    # (This engine does not serve the queue: the run waits there, as behind a backlog.)
    task = await orch.submit(MAIL, auto_approve=True, run_here=False)
    await asyncio.sleep(1.1)
    assert orch.host is not None
    await orch.host.maintain()
    assert "was queued without its run" not in caplog.text
    assert (await orch.get_task(task.task_id)).status is TaskStatus.QUEUED
    [queued] = await DBOS.list_workflows_async(workflow_ids=[workflow_id(task.task_id, 0)])
    assert queued.status == "ENQUEUED"


def test_the_sweeps_page_through_old_tasks(settings: Settings) -> None:
    """Each round reads a page of the oldest tasks and goes on from there the next round, so
    tasks that stay (a backlog) do not hide the ones behind them."""
    engine = create_engine(settings.app_database_url)
    upgrade(engine)
    store = Store(engine)
    try:
        ids = [store.create_task(MAIL, task_id=f"q{i}").task_id for i in range(5)]
        later = store.create_task(MAIL, task_id="zz", executor_id=ghost(store))
        cutoff = utcnow() + timedelta(seconds=1)
        first = store.queued_before(cutoff, limit=2)
        second = store.queued_before(cutoff, after=first[-1], limit=2)
        third = store.queued_before(cutoff, after=second[-1], limit=2)
        assert [r.task_id for r in first + second + third] == ids
        assert [(r.task_id, r.generation) for r in store.orphaned_runs(cutoff)] == [("zz", 0)]
        assert store.orphaned_runs(cutoff, me="ghost") == store.orphaned_runs(cutoff)
        just_after = later.updated_at + timedelta(milliseconds=1)
        time.sleep(0.01)
        assert [r.task_id for r in store.orphaned_runs(just_after)] == [later.task_id]
        store.register_executor("ghost", kind="worker", host="x", pid=2, lease=timedelta(seconds=1))
        assert store.orphaned_runs(just_after) == []  # its executor lives (since just_after)
        mine = store.orphaned_runs(just_after, me="ghost")  # (its own sweep still sees it)
        assert [(r.task_id, r.generation) for r in mine] == [("zz", 0)]
    finally:
        engine.dispose()


async def stop_lease_rounds(orch: Orchestrator) -> None:
    """Stop the host's lease loop: the test runs the lease rounds itself."""
    assert orch.host is not None
    lease_loop = orch.host._lease_task
    assert lease_loop is not None
    lease_loop.cancel()
    await asyncio.gather(lease_loop, return_exceptions=True)
    await asyncio.sleep(0.2)  # (a lease round's thread may still be finishing)


async def test_an_executor_whose_recovery_failed_stays_claimable(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert orch.host is not None
    await stop_lease_rounds(orch)
    ghost(orch.store)

    def broken(executor_ids: list[str]) -> list[object]:
        raise RuntimeError("system database unreachable")

    monkeypatch.setattr(DBOS, "_recover_pending_workflows", broken)
    assert await orch.host.maintain() == ["ghost"]
    assert "recovering executor ghost failed; it stays claimable" in caplog.text
    monkeypatch.undo()
    assert await orch.host.maintain() == ["ghost"]  # claimed again, recovered this time
    assert await orch.host.maintain() == []


@pytest.mark.slow
async def test_a_run_whose_recovery_dbos_skipped_is_recovered_by_a_later_round(
    orch: Orchestrator,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DBOS logs and skips a workflow whose recovery raised: the dead executor's run would stay
    pending for good. The round sees it still pending and leaves the executor claimable."""
    host = orch.host
    assert host is not None
    await stop_lease_rounds(orch)
    ws = orch.settings.workspace
    worker = Worker(env, "doomed", tmp_path)
    try:
        task_id = submit(env, tmp_path, SLOW)
        # (Its start is durable a commit delay later: killed before that, the step's next
        # run is its first attempt again, which sleeps for a minute.)
        await until(
            lambda: (
                (ws / f"started-{task_id}-slow").exists()
                and any(r.step_id == "slow" for r in orch.store.step_runs(task_id))
            ),
            timeout=60,
            what="the slow step's start to be recorded in the worker",
        )
        worker.kill9()
    finally:
        worker.stop()

    def hiccup(*args: object) -> object:
        raise RuntimeError("the system database hiccuped")

    monkeypatch.setattr(dbos_recovery, "_recover_workflow", hiccup)
    claimed: list[str] = []

    async def lease_round() -> None:
        claimed.extend(await host.maintain())

    deadline = time.monotonic() + 30
    while "doomed" not in claimed and time.monotonic() < deadline:  # (its lease runs out)
        await lease_round()
        await asyncio.sleep(0.2)
    assert claimed == ["doomed"]
    assert "recovering 1 task run(s) of executor doomed failed" in caplog.text
    assert orch.store.get_task(task_id).status is TaskStatus.RUNNING
    monkeypatch.undo()
    assert await host.maintain() == ["doomed"]  # claimed again, recovered (queued) this time
    rescuer = Worker(env, "rescuer", tmp_path)  # (this process does not take from the queue)
    try:
        await until(
            lambda: orch.store.get_task(task_id).status.finished,
            timeout=60,
            what="the recovered run",
        )
    finally:
        rescuer.stop()
    assert orch.store.get_task(task_id).status is TaskStatus.SUCCEEDED
    done = runs(ws, task_id)
    assert (done.count("slow"), done.count("last")) == (2, 1)  # interrupted, so run again
    assert "doomed" not in await host.maintain()  # (the rescuer, stopped, may be claimed)


async def test_a_claim_whose_run_was_started_elsewhere_does_not_run_here(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that stalled for a lease between claiming a task and recording its run finds
    the run's workflow id taken (another process's sweep started it): its own run stops
    before any side effect."""
    task = await orch.submit(MAIL)
    assert (await orch.wait(task.task_id, timeout=30)).task.status is TaskStatus.AWAITING_APPROVAL
    assert orch.host is not None
    await orch.host.start_task(task.task_id, 1)  # the workflow a sweep would have started
    taken = await DBOS.retrieve_workflow_async(workflow_id(task.task_id, 1))
    await taken.get_result()  # (it found generation 0 parked: nothing to run yet)
    with pytest.raises(Exception, match="already"):
        await orch.approve(task.task_id, run_here=True)
    await asyncio.sleep(0.5)
    assert outbox(orch.settings.workspace) == []
    assert runs(orch.settings.workspace, task.task_id) == ["draft"]


async def test_an_executor_taken_over_while_alive_registers_again(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent for a lease (a stalled loop), it was taken for dead: it says so and is alive
    again, so that the runs it records from now on are recovered if it dies."""
    host = orch.host
    assert host is not None
    with orch.store.engine.begin() as conn:  # as Store.claim_dead_executors by another process
        conn.execute(
            sa.text("UPDATE executors SET status = 'recovered' WHERE executor_id = :id"),
            {"id": host.executor_id},
        )
    assert host.executor_id not in {e.executor_id for e in orch.store.live_executors(lease=LEASE)}
    await host.maintain()
    assert f"executor {host.executor_id} missed its lease and was taken over" in caplog.text
    assert host.executor_id in {e.executor_id for e in orch.store.live_executors(lease=LEASE)}
