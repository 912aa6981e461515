"""Fencing: a process that was silent for a lease (a stalled loop, a paused machine) is taken
for dead, and another executor claims its tasks. When it wakes up, its runs of those tasks
stop without writing anything (no step end, no task end, no side effect), within a poll of
the claim."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import sqlalchemy as sa

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.engine.runtime import current_runtime
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.storage import EffectRecord, EffectStart
from tests.support.procs import until
from tests.support.tools import outbox, runs

WAIT_THEN_SEND = ExecutionPlan.model_validate(
    {
        "name": "wait-then-send",
        "steps": [
            {"id": "wait", "tool": "sleep", "inputs": {"seconds": 1.0}},
            {
                "id": "send",
                "tool": "deliver",
                "inputs": {"message": "hello"},
                "depends_on": ["wait"],
            },
        ],
    }
)


async def test_a_run_whose_task_was_claimed_elsewhere_stops_without_writing(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ws = orch.settings.workspace
    host = orch.host
    assert host is not None
    task = await orch.submit(WAIT_THEN_SEND, auto_approve=True, run_here=True)
    await until(
        lambda: (ws / f"started-{task.task_id}-wait").exists(),
        timeout=30,
        what="the sleep to start",
    )
    # While the step runs, another executor claims the task (as its recovery of this process's
    # workflows does once this process has been silent for a lease).
    assert orch.store.claim_task(task.task_id, executor_id="other") is not None

    await until(lambda: not host.runs_here(task.task_id), timeout=30, what="the run here to stop")

    assert runs(ws, task.task_id) == ["wait"]  # the send step never ran here
    assert outbox(ws) == []
    assert orch.store.effects(task.task_id) == []
    with orch.store.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, executor_id FROM tasks WHERE task_id = :t"),
            {"t": task.task_id},
        ).one()
    assert tuple(row) == (TaskStatus.RUNNING.value, "other")
    # The sleep's end was not recorded: the step is as the new holder found it.
    assert [(r.step_id, r.status) for r in orch.store.step_runs(task.task_id)] == [
        ("wait", StepStatus.RUNNING)
    ]
    assert f"task {task.task_id} is held by another executor now" in caplog.text
    assert "crashed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_long_step_of_a_run_taken_over_is_stopped_within_a_poll(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    """The process need not wait for the step to end to learn that its task moved: the poll
    that watches for cancellations stops the run (every 0.5 s)."""
    caplog.set_level(logging.WARNING)
    ws = orch.settings.workspace
    host = orch.host
    assert host is not None
    plan = WAIT_THEN_SEND.model_copy(deep=True)
    plan.steps[0].inputs["seconds"] = 60.0
    task = await orch.submit(plan, auto_approve=True, run_here=True)
    await until(
        lambda: (ws / f"started-{task.task_id}-wait").exists(),
        timeout=30,
        what="the sleep to start",
    )
    assert orch.store.claim_task(task.task_id, executor_id="other") is not None
    t0 = time.monotonic()
    await until(lambda: not host.runs_here(task.task_id), timeout=10, what="the run here to stop")
    assert time.monotonic() - t0 < 5
    assert "stopping its run here" in caplog.text
    assert [(r.step_id, r.status) for r in orch.store.step_runs(task.task_id)] == [
        ("wait", StepStatus.RUNNING)
    ]
    assert orch.store.get_task(task.task_id).status is TaskStatus.RUNNING
    assert runs(ws, task.task_id) == ["wait"]


async def test_a_side_effect_is_not_started_once_its_task_is_held_elsewhere(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The takeover lands between the send step's wait for durable inputs and the record it
    makes before acting: the record is refused, and the effect does not happen."""
    caplog.set_level(logging.WARNING)
    ws = orch.settings.workspace
    journal = current_runtime().journal
    assert journal is not None
    started = journal.effect_started

    async def after_a_takeover(start: EffectStart) -> EffectRecord:
        await asyncio.to_thread(orch.store.claim_task, start.task_id, executor_id="other")
        return await started(start)

    monkeypatch.setattr(journal, "effect_started", after_a_takeover)
    plan = WAIT_THEN_SEND.model_copy(deep=True)
    plan.steps[0].inputs["seconds"] = 0.0
    task = await orch.submit(plan, auto_approve=True, run_here=True)
    host = orch.host
    assert host is not None
    await until(lambda: not host.runs_here(task.task_id), timeout=30, what="the run here to stop")

    assert outbox(ws) == []
    assert runs(ws, task.task_id) == ["wait"]
    assert orch.store.effects(task.task_id) == []
    assert "its step 'send' does not act here" in caplog.text
    assert orch.store.get_task(task.task_id).status is TaskStatus.RUNNING
