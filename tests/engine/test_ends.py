"""Waiting for a task: told at once of a run's end in this process, polling otherwise."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.engine.ends import TaskEnds
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.tools import ToolRegistry

NEVER = 600.0  # a poll interval no test waits out: an answer before it was told, not polled


def plan(*steps: dict[str, Any]) -> ExecutionPlan:
    return ExecutionPlan.model_validate({"name": "ends", "steps": list(steps)})


async def test_settled_is_told_when_a_run_here_ends(orch: Orchestrator) -> None:
    task = await orch.submit(plan({"id": "s", "tool": "sleep", "inputs": {"seconds": 0.3}}))
    status = await asyncio.wait_for(orch.settled(task.task_id, poll_seconds=NEVER), 60)
    assert status is TaskStatus.SUCCEEDED
    assert orch.store.get_task(task.task_id).status is TaskStatus.SUCCEEDED  # and it is durable


async def test_settled_is_told_when_a_run_here_parks_for_approval(orch: Orchestrator) -> None:
    task = await orch.submit(
        plan(
            {"id": "s", "tool": "sleep", "inputs": {"seconds": 0.2}},
            {"id": "send", "tool": "deliver", "inputs": {"message": "hi"}, "depends_on": ["s"]},
        )
    )
    status = await asyncio.wait_for(orch.settled(task.task_id, poll_seconds=NEVER), 60)
    assert status is TaskStatus.AWAITING_APPROVAL
    # wait() too, once the approval resumes the task (a new run here)
    await orch.approve(task.task_id, comment="ok")
    result = await asyncio.wait_for(orch.wait(task.task_id, poll_seconds=NEVER), 60)
    assert result.task.status is TaskStatus.SUCCEEDED


async def test_settled_reads_a_task_that_has_already_ended(orch: Orchestrator) -> None:
    task = await orch.submit(plan({"id": "s", "tool": "noop"}))
    assert await orch.settled(task.task_id) is TaskStatus.SUCCEEDED
    # (no run here any more: the first read answers)
    again = await asyncio.wait_for(orch.settled(task.task_id, poll_seconds=NEVER), 30)
    assert again is TaskStatus.SUCCEEDED


async def test_settled_polls_a_task_run_elsewhere(orch: Orchestrator) -> None:
    # A task no run of this process will end: another process's, seen only in the database.
    task = orch.store.create_task(plan({"id": "s", "tool": "noop"}), executor_id="elsewhere")
    waiting = asyncio.create_task(orch.settled(task.task_id, poll_seconds=0.05))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await asyncio.to_thread(
        orch.store.update_task, task.task_id, status=TaskStatus.FAILED, error="elsewhere"
    )
    assert await asyncio.wait_for(waiting, 30) is TaskStatus.FAILED
    # a timeout returns the status as it is
    other = orch.store.create_task(plan({"id": "s", "tool": "noop"}), executor_id="elsewhere")
    assert await orch.settled(other.task_id, timeout=0.2, poll_seconds=0.05) is TaskStatus.RUNNING


async def test_a_waiter_that_comes_after_the_commit_is_told_when_the_run_is_over() -> None:
    ends = TaskEnds()
    ends.ended("t", TaskStatus.SUCCEEDED)  # the run's last commit, nobody waiting yet
    late = ends.watch("t")
    assert not late.done()
    ends.over("t")
    assert late.result() is TaskStatus.SUCCEEDED
    # a run that wrote its status some other way: told None (read the row); nothing kept
    other = ends.watch("u")
    ends.over("u")
    assert other.result() is None
    again = ends.watch("t")
    ends.over("t")
    assert again.result() is None
    # a new run of the task forgets what an earlier run made durable (parked, then approved)
    ends.ended("t", TaskStatus.AWAITING_APPROVAL)
    ends.begin("t")
    resumed = ends.watch("t")
    ends.over("t")
    assert resumed.result() is None


async def test_an_end_on_another_event_loop_reaches_the_waiter() -> None:
    ends = TaskEnds()
    fut = ends.watch("t")
    other = ends.watch("u")
    ends.forget("u", other)

    def elsewhere() -> None:  # as a run recovered on DBOS's own loop would
        async def end() -> None:
            ends.ended("t", TaskStatus.SUCCEEDED)
            ends.ended("u", TaskStatus.FAILED)

        asyncio.run(end())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    assert await asyncio.wait_for(fut, 10) is TaskStatus.SUCCEEDED
    thread.join()
    assert not other.done()  # forgotten: not told


async def test_the_engine_freezes_what_it_starts_with_and_thaws_it_when_stopped(
    orch: Orchestrator,
) -> None:
    assert gc.get_freeze_count() > 0
    await orch.close()
    assert gc.get_freeze_count() == 0


async def test_the_engine_prepares_its_tools_input_checks_as_it_starts(
    settings: Settings, registry: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[ToolRegistry] = []
    monkeypatch.setattr(ToolRegistry, "prepare", lambda self: prepared.append(self))
    o = Orchestrator(settings, registry=registry)
    await o.start_engine(kind="test", listen=False)
    try:
        assert prepared == [registry]
    finally:
        await o.close()
