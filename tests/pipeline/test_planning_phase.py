"""Phases 1-2 run inside the task's durable run: a request's task exists before it is planned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import PipelinePhase, TaskStatus
from intelligent_orchestrator.errors import ClarificationNeeded, ConflictError, PlanningError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import EngineSettings, QualitySettings, Settings
from tests.conftest import build_registry
from tests.engine.test_llm_in_tasks import paid_settings
from tests.support.models import scripted
from tests.support.pipeline import DrillModel

REQUEST = "Write a LinkedIn post about our garden chairs"


@pytest.fixture
async def orch(settings: Settings) -> AsyncIterator[Orchestrator]:
    s = paid_settings(settings)
    s = s.model_copy(
        update={
            "engine": EngineSettings.model_validate(
                {**s.engine.model_dump(), "pause_at_phase": {f"plan@{REQUEST}": 1.0}}
            )
        }
    )
    model = DrillModel()
    model.script = scripted(model)
    o = Orchestrator(s, registry=build_registry(s), models={"paid": model.script.model})
    await o.start_engine(kind="test", listen=False)
    try:
        yield o
    finally:
        await o.close()


async def test_the_task_exists_before_its_plan_and_its_run_plans_it(orch: Orchestrator) -> None:
    task, plan = await orch.process_request(REQUEST, "ana", {"leads": 3.0}, plan_timeout=None)
    assert plan.pending
    assert not plan.steps
    assert task.phase is PipelinePhase.PLAN
    assert task.request == REQUEST
    planned = await orch.wait_for_plan(task.task_id, timeout=30)
    assert not planned.plan.pending
    assert "write_content" in {s.tool for s in planned.plan.steps}
    assert planned.plan.metadata["business_metrics"] == {"leads": 3.0}
    assert planned.plan.metadata["phase_ms"]["plan"] > 0
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.AWAITING_APPROVAL
    assert result.task.phase is PipelinePhase.APPROVAL
    calls = [c.step_id for c in orch.store.llm_calls(task.task_id)]
    assert calls.count("plan") == 1  # planning's model call counts for the task it planned


async def test_a_request_that_needs_clarification_ends_its_task_with_the_question(
    orch: Orchestrator,
) -> None:
    with pytest.raises(ClarificationNeeded, match="No available tool can book") as caught:
        await orch.process_request("Book a flight to Rome")
    task_id = caught.value.task_id
    assert task_id is not None
    task = await orch.get_task(task_id)
    assert task.status is TaskStatus.NEEDS_CLARIFICATION
    assert task.error is not None
    assert "No available tool can book" in task.error
    assert task.plan.clarification == task.error
    review = await orch.review(task_id)  # what GET /approval shows: nothing to review
    assert review.variants == []
    assert review.actions == []
    again = await orch.rerun(task_id)  # planned again, as a new task
    assert again.task_id != task_id
    assert (await orch.wait(again.task_id, timeout=30)).task.status is (
        TaskStatus.NEEDS_CLARIFICATION
    )


async def test_a_planning_error_fails_the_task_with_the_reason(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(request: str, **kw: Any) -> Any:
        raise PlanningError("no tool can write")

    monkeypatch.setattr(orch.planner, "plan", broken)
    with pytest.raises(PlanningError, match=r"task \w+: planning failed: no tool can write"):
        await orch.process_request("Write something")
    tasks, _ = await orch.history()
    failed = [t for t in tasks if t.request == "Write something"]
    assert [t.status for t in failed] == [TaskStatus.FAILED]
    with pytest.raises(PlanningError, match="the request is empty"):
        await orch.process_request("   ")


async def test_a_task_cancelled_while_planning_never_runs(orch: Orchestrator) -> None:
    task, _ = await orch.process_request(REQUEST, plan_timeout=None)
    deadline = time.monotonic() + 30
    while True:  # held for a second on entering phase plan
        current = await orch.get_task(task.task_id)
        if current.phase is PipelinePhase.PLAN and current.status is TaskStatus.RUNNING:
            break
        assert time.monotonic() < deadline, current
        await asyncio.sleep(0.02)
    await orch.cancel(task.task_id)
    result = await orch.wait(task.task_id, timeout=30)
    assert result.task.status is TaskStatus.CANCELLED
    assert result.task.plan.pending  # the plan made after the cancel was not stored
    assert result.steps == []
    with pytest.raises(ConflictError, match="cancelled before it was planned"):
        await orch.wait_for_plan(task.task_id)


async def test_with_quality_off_a_planned_request_runs_as_a_plain_workflow(
    settings: Settings,
) -> None:
    s = paid_settings(settings).model_copy(update={"quality": QualitySettings(enabled=False)})
    model = DrillModel()
    model.script = scripted(model)
    o = Orchestrator(s, registry=build_registry(s), models={"paid": model.script.model})
    await o.start_engine(kind="test", listen=False)
    try:
        task, plan = await o.process_request(REQUEST, auto_approve=True)
        assert plan.uses_pipeline  # a request's plan, but the pipeline is switched off
        result = await o.wait(task.task_id, timeout=60)
    finally:
        await o.close()
    assert result.task.status is TaskStatus.SUCCEEDED
    assert result.task.phase is None  # no pipeline phases, no review
    assert o.store.assessments(task.task_id) == []
