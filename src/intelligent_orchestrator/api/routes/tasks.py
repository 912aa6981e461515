"""Tasks: submit a workflow, watch it, decide its approvals, cancel it, list past tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import status as http_status
from fastapi.responses import StreamingResponse

from intelligent_orchestrator.api.deps import OrchestratorDep
from intelligent_orchestrator.api.schemas import (
    ApprovalDecision,
    ApprovalPublic,
    ErrorPublic,
    PlanRequest,
    ProcessAccepted,
    TaskCreated,
    TasksPublic,
    TaskStatusPublic,
    WorkflowSubmit,
)
from intelligent_orchestrator.domain.models import ExecutionPlan, Task, TaskStatus

router = APIRouter(prefix="/api/orchestrator", tags=["tasks"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "Unknown task id."}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "Not possible in the task's state."}
}


@router.post("/workflows", response_model=TaskCreated, status_code=http_status.HTTP_202_ACCEPTED)
async def submit_workflow(body: WorkflowSubmit, orch: OrchestratorDep) -> TaskCreated:
    """Validate a workflow document and queue it as a task.

    An invalid document (syntax, unknown tool, cycle, bad inputs) gives 422 listing every
    problem; nothing is started.
    """
    plan = orch.load_workflow(body.content, source="workflow", fmt=body.format)
    task = await orch.submit(plan, auto_approve=body.auto_approve)
    return TaskCreated(task_id=task.task_id, status=task.status)


@router.post(
    "/plan",
    response_model=ExecutionPlan,
    responses={422: {"model": ErrorPublic, "description": "The plan is invalid."}},
)
async def plan_request(body: PlanRequest, orch: OrchestratorDep) -> ExecutionPlan:
    """Plan a request without running it. A request that cannot be planned returns 200 with
    ``clarification`` (a question for the user) and no steps."""
    return await orch.plan(body.request, model=body.model)


@router.post(
    "/process",
    response_model=ProcessAccepted,
    status_code=http_status.HTTP_202_ACCEPTED,
    responses={422: {"model": ErrorPublic, "description": "Needs clarification, or invalid."}},
)
async def process_request(body: PlanRequest, orch: OrchestratorDep) -> ProcessAccepted:
    """Plan a request and start it at once (the seed's ``process_request``); 422 with the
    question when the request needs clarification."""
    task, plan = await orch.process_request(
        body.request,
        body.user_id,
        body.business_metrics,
        model=body.model,
        auto_approve=body.auto_approve,
    )
    return ProcessAccepted(task_id=task.task_id, status=task.status, plan=plan)


@router.get("/status/{task_id}", response_model=TaskStatusPublic, responses=NOT_FOUND)
async def get_status(task_id: str, orch: OrchestratorDep) -> TaskStatusPublic:
    """A task with every step, its approvals and outputs."""
    return TaskStatusPublic.from_result(await orch.status(task_id))


@router.get("/approval/{task_id}", response_model=ApprovalPublic, responses=NOT_FOUND)
async def get_approval(task_id: str, orch: OrchestratorDep) -> ApprovalPublic:
    """What the task waits for: the resolved inputs of each gated step and, for a request,
    every channel variant with the quality assessment, the attempts and the metadata."""
    result = await orch.status(task_id)
    if result.task.phase is None:
        return ApprovalPublic.from_result(result)
    return ApprovalPublic.from_review(result, await orch.review(task_id))


@router.post(
    "/approve/{task_id}", response_model=TaskStatusPublic, responses={**NOT_FOUND, **CONFLICT}
)
async def decide_approval(
    task_id: str, body: ApprovalDecision, orch: OrchestratorDep
) -> TaskStatusPublic:
    """Approve (the task resumes; ``edits`` change variants first), reject (nothing gated
    runs; the feedback is stored) or revise (the feedback starts a refinement round)."""
    if body.approved:
        await orch.approve(
            task_id,
            comment=body.feedback,
            decided_by=body.decided_by,
            step_id=body.step_id,
            edits=body.edits,
        )
    elif body.revise:
        assert body.feedback is not None
        await orch.revise(
            task_id, feedback=body.feedback, decided_by=body.decided_by, channels=body.channels
        )
    else:
        assert body.feedback is not None  # ApprovalDecision requires it when rejecting
        await orch.reject(task_id, comment=body.feedback, decided_by=body.decided_by)
    return TaskStatusPublic.from_result(await orch.status(task_id))


@router.post(
    "/rerun/{task_id}",
    response_model=TaskCreated,
    status_code=http_status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
)
async def rerun_task(task_id: str, orch: OrchestratorDep) -> TaskCreated:
    """Run a task's plan again as a new task."""
    task = await orch.rerun(task_id)
    return TaskCreated(task_id=task.task_id, status=task.status)


@router.get("/events/{task_id}", responses=NOT_FOUND, response_class=StreamingResponse)
async def task_events(
    task_id: str,
    orch: OrchestratorDep,
    poll_seconds: Annotated[float, Query(ge=0.05, le=10)] = 0.5,
) -> StreamingResponse:
    """Server-Sent Events: a ``progress`` event (the task's status document) whenever it changes,
    then ``end`` once the task has finished or parked for approval."""
    first = await orch.status(task_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        last = ""
        result = first
        while True:
            doc = TaskStatusPublic.from_result(result).model_dump_json()
            if doc != last:
                last = doc
                yield f"event: progress\ndata: {doc}\n\n"
            if result.task.status.settled:
                yield f"event: end\ndata: {json.dumps({'status': result.task.status.value})}\n\n"
                return
            await asyncio.sleep(poll_seconds)
            result = await orch.status(task_id)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/cancel/{task_id}", response_model=Task, responses={**NOT_FOUND, **CONFLICT})
async def cancel_task(task_id: str, orch: OrchestratorDep) -> Task:
    """Cancel a task that has not finished."""
    return await orch.cancel(task_id)


@router.get("/history", response_model=TasksPublic)
async def list_history(
    orch: OrchestratorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
) -> TasksPublic:
    """Tasks, newest first; ``count`` is the total matching ``status``."""
    tasks, total = await orch.history(limit=limit, status=status, offset=offset)
    return TasksPublic(data=tasks, count=total)
