"""Tasks whose run was never recorded: their process stopped between the commit that queued or
claimed them and the DBOS workflow that runs them. The lease round finds and runs them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from dbos import DBOS

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.engine.runtime import workflow_id
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.support.tools import outbox, runs

MAIL = ExecutionPlan.model_validate(
    {
        "name": "mail",
        "steps": [
            {"id": "draft", "tool": "noop", "inputs": {"value": 5}},
            {
                "id": "send",
                "tool": "deliver",
                "inputs": {"message": "v${steps.draft.output.value}"},
            },
        ],
    }
)


@pytest.fixture
async def worker(settings: Settings, registry: ToolRegistry) -> AsyncIterator[Orchestrator]:
    """An orchestrator whose engine also serves the shared queue."""
    o = Orchestrator(settings, registry=registry)
    await o.start_engine(kind="worker", listen=True)
    try:
        yield o
    finally:
        await o.close()


def ghost(orch: Orchestrator) -> str:
    """An executor that registered and then stopped (as a killed process is seen once its
    lease runs out)."""
    orch.store.register_executor(
        "ghost", kind="worker", host="elsewhere", pid=1, lease=timedelta(seconds=3)
    )
    orch.store.stop_executor("ghost")
    return "ghost"


async def test_a_task_approved_and_claimed_by_a_process_that_died_is_run(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    ws = orch.settings.workspace
    task = await orch.submit(MAIL)
    parked = await orch.wait(task.task_id, timeout=30)
    assert parked.task.status is TaskStatus.AWAITING_APPROVAL
    # The dead process's approval: committed, the task claimed by it, no workflow recorded.
    generation, claimed = orch.store.approve_and_claim(
        task.task_id, comment="ok", decided_by="ana", executor_id=ghost(orch)
    )
    assert generation == 1
    assert claimed is not None
    assert claimed[0].status is TaskStatus.RUNNING
    assert await DBOS.list_workflows_async(workflow_ids=[workflow_id(task.task_id, 1)]) == []
    assert orch.host is not None
    with caplog.at_level(logging.WARNING):
        assert await orch.host.maintain() == ["ghost"]
    assert f"task {task.task_id} was claimed by executor ghost" in caplog.text
    done = await orch.wait(task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert outbox(ws) == [f"{task.task_id}:send v5"]
    assert runs(ws, task.task_id) == ["draft", "send"]  # the draft was not redone
    assert await orch.host.maintain() == []  # taken over once


async def test_a_task_created_by_a_process_that_died_before_its_run_is_run(
    orch: Orchestrator,
) -> None:
    task = orch.store.create_task(MAIL, auto_approve=True, executor_id=ghost(orch))
    assert orch.host is not None
    await orch.host.maintain()
    done = await orch.wait(task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert outbox(orch.settings.workspace) == [f"{task.task_id}:send v5"]


async def test_a_queued_task_whose_run_was_never_enqueued_is_queued_after_a_lease(
    worker: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    host = worker.host
    assert host is not None
    # Queued by clients that died before enqueueing their runs.
    worker.settings.engine.lease_seconds = 1.0
    task = worker.store.create_task(MAIL, auto_approve=True)
    await asyncio.sleep(1.1)
    fresh = worker.store.create_task(MAIL, auto_approve=True)  # its client may enqueue it yet
    with caplog.at_level(logging.WARNING):
        await host.maintain()
        assert f"task {task.task_id} was queued without its run" in caplog.text
        assert f"task {fresh.task_id} was queued" not in caplog.text
    for t in (task, fresh):  # (the later one, by a lease round once it is a lease old)
        done = await worker.wait(t.task_id, timeout=30)
        assert done.task.status is TaskStatus.SUCCEEDED
        assert runs(worker.settings.workspace, t.task_id) == ["draft", "send"]
    assert f"task {fresh.task_id} was queued without its run" in caplog.text


async def test_a_queued_task_whose_run_waits_in_the_queue_is_left_alone(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    # (This engine does not serve the queue: the run waits there, as behind a backlog.)
    task = await orch.submit(MAIL, auto_approve=True, run_here=False)
    await asyncio.sleep(0.3)
    orch.settings.engine.lease_seconds = 0.2
    assert orch.host is not None
    with caplog.at_level(logging.WARNING):
        await orch.host.maintain()
    assert "was queued without its run" not in caplog.text
    assert (await orch.get_task(task.task_id)).status is TaskStatus.QUEUED
    [queued] = await DBOS.list_workflows_async(workflow_ids=[workflow_id(task.task_id, 0)])
    assert queued.status == "ENQUEUED"
