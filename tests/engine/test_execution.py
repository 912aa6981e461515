from __future__ import annotations

import asyncio
import time

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.errors import ConflictError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.storage import StepUpdate
from tests.support.tools import outbox, runs


def plan(*steps: dict, **kw: object) -> ExecutionPlan:
    return ExecutionPlan.model_validate({"name": "t", "steps": list(steps), **kw})


async def run(orch: Orchestrator, p: ExecutionPlan, **kw: object):
    task = await orch.submit(p, **kw)
    return await orch.wait(task.task_id, timeout=60)


def by_id(result) -> dict:
    return {s.step_id: s for s in result.steps}


async def test_independent_steps_run_in_parallel_and_join(orch: Orchestrator) -> None:
    p = plan(
        *(
            {"id": f"s{i}", "tool": "sleep", "inputs": {"seconds": 0.4, "value": i}}
            for i in range(4)
        ),
        {
            "id": "total",
            "tool": "add",
            "inputs": {"a": "${steps.s1.output.value}", "b": "${steps.s3.output.value}"},
            "depends_on": ["s0", "s2"],
        },
    )
    t0 = time.perf_counter()
    result = await run(orch, p)
    elapsed = time.perf_counter() - t0
    assert result.task.status is TaskStatus.SUCCEEDED
    assert by_id(result)["total"].output == {"value": 4}
    assert elapsed < 1.2, f"4 x 0.4 s steps took {elapsed:.2f} s: not parallel"


async def test_task_concurrency_limit_is_respected(orch: Orchestrator) -> None:
    p = plan(
        *({"id": f"s{i}", "tool": "sleep", "inputs": {"seconds": 0.3}} for i in range(4)),
        max_concurrency=2,
    )
    t0 = time.perf_counter()
    result = await run(orch, p)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert time.perf_counter() - t0 >= 0.6


async def test_failed_step_skips_dependants_while_other_branches_finish(orch: Orchestrator) -> None:
    p = plan(
        {"id": "bad", "tool": "fail", "inputs": {"message": "no data"}},
        {"id": "after_bad", "tool": "noop", "depends_on": ["bad"]},
        {"id": "later", "tool": "noop", "depends_on": ["after_bad"]},
        {"id": "good", "tool": "sleep", "inputs": {"seconds": 0.2, "value": 7}},
    )
    result = await run(orch, p)
    steps = by_id(result)
    assert result.task.status is TaskStatus.FAILED
    assert result.task.failed_step == "bad"
    assert "no data" in (result.task.error or "")
    assert steps["good"].status is StepStatus.SUCCEEDED
    assert steps["good"].output == {"value": 7}
    assert steps["after_bad"].status is StepStatus.SKIPPED
    assert steps["later"].status is StepStatus.SKIPPED
    assert "after_bad" not in runs(orch.settings.workspace, result.task.task_id)


async def test_transient_errors_are_retried_and_permanent_ones_are_not(orch: Orchestrator) -> None:
    p = plan(
        {"id": "flaky", "tool": "flaky", "inputs": {"failures": 2}, "retries": 2},
        {"id": "perm", "tool": "fail", "inputs": {"transient": False}, "retries": 3},
    )
    result = await run(orch, p)
    steps = by_id(result)
    assert steps["flaky"].status is StepStatus.SUCCEEDED
    assert steps["flaky"].attempt == 3
    assert steps["perm"].status is StepStatus.FAILED
    assert runs(orch.settings.workspace, result.task.task_id).count("perm") == 1


async def test_timeout_and_tool_crash_fail_the_step_with_reason(orch: Orchestrator) -> None:
    p = plan(
        {"id": "slow", "tool": "sleep", "inputs": {"seconds": 30}, "timeout_seconds": 0.3},
        {"id": "buggy", "tool": "crash"},
    )
    result = await run(orch, p)
    steps = by_id(result)
    assert steps["slow"].status is StepStatus.FAILED
    assert "timed out after 0.3 s" in (steps["slow"].error or "")
    assert steps["buggy"].status is StepStatus.FAILED
    assert "ZeroDivisionError" in (steps["buggy"].error or "")


async def test_bad_reference_at_run_time_fails_the_step(orch: Orchestrator) -> None:
    p = plan(
        {"id": "a", "tool": "noop", "inputs": {"value": 1}},
        {"id": "b", "tool": "add", "inputs": {"a": "${steps.a.output.missing}"}},
    )
    result = await run(orch, p)
    assert by_id(result)["b"].status is StepStatus.FAILED
    assert "no field 'missing'" in (by_id(result)["b"].error or "")


async def test_side_effect_waits_for_approval_then_runs_once(orch: Orchestrator) -> None:
    p = plan(
        {"id": "draft", "tool": "noop", "inputs": {"value": 3}},
        {
            "id": "send",
            "tool": "deliver",
            "inputs": {"message": "hello ${steps.draft.output.value}"},
        },
        {"id": "other", "tool": "noop"},
    )
    result = await run(orch, p)
    ws = orch.settings.workspace
    assert result.task.status is TaskStatus.AWAITING_APPROVAL
    assert by_id(result)["send"].status is StepStatus.AWAITING_APPROVAL
    assert by_id(result)["other"].status is StepStatus.SUCCEEDED
    assert outbox(ws) == []
    [pending] = await orch.pending_approvals(result.task.task_id)
    assert pending.step_id == "send"

    await orch.approve(result.task.task_id, comment="ship it", decided_by="ana")
    done = await orch.wait(result.task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED
    assert outbox(ws) == [f"{result.task.task_id}:send hello 3"]
    assert by_id(done)["send"].output == {"receipt": f"{result.task.task_id}:send"}
    # finished steps did not run again on the continuation
    assert runs(ws, result.task.task_id).count("draft") == 1
    with pytest.raises(ConflictError, match="not awaiting approval"):
        await orch.approve(result.task.task_id)


async def test_reject_stores_feedback_and_runs_nothing(orch: Orchestrator) -> None:
    p = plan({"id": "send", "tool": "deliver", "inputs": {"message": "hi"}})
    result = await run(orch, p)
    task = await orch.reject(result.task.task_id, comment="wrong audience", decided_by="bo")
    assert task.status is TaskStatus.REJECTED
    assert outbox(orch.settings.workspace) == []
    fb = orch.store.feedback(task.task_id)
    assert [(f["kind"], f["text"], f["author"]) for f in fb] == [
        ("rejection", "wrong audience", "bo")
    ]
    final = await orch.status(task.task_id)
    assert by_id(final)["send"].status is StepStatus.REJECTED


async def test_task_level_approval_parks_before_any_step(orch: Orchestrator) -> None:
    p = plan({"id": "a", "tool": "noop"}, requires_approval=True)
    result = await run(orch, p)
    assert result.task.status is TaskStatus.AWAITING_APPROVAL
    assert result.steps == []
    await orch.approve(result.task.task_id)
    done = await orch.wait(result.task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED


async def test_auto_approve_runs_side_effects_directly(orch: Orchestrator) -> None:
    p = plan({"id": "send", "tool": "deliver", "inputs": {"message": "auto"}})
    result = await run(orch, p, auto_approve=True)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert len(outbox(orch.settings.workspace)) == 1
    assert result.approvals[0].decided_by == "auto-approve"


async def test_cancel_stops_a_running_task(orch: Orchestrator) -> None:
    p = plan(
        {"id": "long", "tool": "sleep", "inputs": {"seconds": 60}},
        {"id": "next", "tool": "noop", "depends_on": ["long"]},
    )
    task = await orch.submit(p)
    ws = orch.settings.workspace
    for _ in range(100):
        if (ws / f"started-{task.task_id}-long").exists():
            break
        await orch.wait(task.task_id, timeout=0.05)
    t0 = time.perf_counter()
    cancelled = await orch.cancel(task.task_id)
    assert cancelled.status is TaskStatus.CANCELLED
    result = await orch.wait(task.task_id, timeout=10)
    for _ in range(50):
        result = await orch.status(task.task_id)
        if by_id(result).get("long") and by_id(result)["long"].status is StepStatus.CANCELLED:
            break
        await asyncio.sleep(0.1)  # the task is already cancelled: wait() would not wait
    assert by_id(result)["long"].status is StepStatus.CANCELLED
    assert time.perf_counter() - t0 < 5
    assert "next" not in runs(ws, task.task_id)
    with pytest.raises(ConflictError):
        await orch.cancel(task.task_id)


async def test_parked_approval_expires(orch: Orchestrator) -> None:
    orch.settings.engine.approval_expiry_hours = 1.5 / 3600
    p = plan({"id": "send", "tool": "deliver", "inputs": {"message": "late"}})
    result = await run(orch, p)
    assert result.task.status in (TaskStatus.AWAITING_APPROVAL, TaskStatus.EXPIRED)
    import asyncio

    await asyncio.sleep(1.6)  # past the deadline
    assert orch.host is not None
    await orch.host.maintain()
    task = await orch.get_task(result.task.task_id)
    assert task.status is TaskStatus.EXPIRED
    with pytest.raises(ConflictError):
        await orch.approve(task.task_id)
    assert outbox(orch.settings.workspace) == []


async def test_a_resumed_run_skips_what_depends_on_a_step_that_failed_before(
    orch: Orchestrator,
) -> None:
    """A run that resumes from a recorded failure (its dependants not yet written) skips
    them at once, and still runs the independent steps."""
    p = plan(
        {"id": "bad", "tool": "noop"},
        {"id": "after_bad", "tool": "noop", "depends_on": ["bad"]},
        {"id": "free", "tool": "noop"},
    )
    task = orch.store.create_task(p)
    orch.store.write_steps(
        task.task_id,
        [StepUpdate(step_id="bad", tool="noop", status=StepStatus.FAILED, error="boom")],
    )
    assert orch.host is not None
    await orch.host.start_task(task.task_id)
    result = await orch.wait(task.task_id, timeout=30)
    assert result.task.status is TaskStatus.FAILED
    steps = by_id(result)
    assert steps["after_bad"].status is StepStatus.SKIPPED
    assert steps["after_bad"].error == "not run: dependency 'bad' failed"
    assert steps["free"].status is StepStatus.SUCCEEDED


async def test_a_recorded_side_effect_is_never_invoked_again(orch: Orchestrator) -> None:
    """The ledger says 'done' but the step checkpoint was lost: the receipt is reused."""
    p = plan({"id": "send", "tool": "deliver", "inputs": {"message": "x"}})
    task = orch.store.create_task(p, auto_approve=True)
    key = f"{task.task_id}:send"
    orch.store.effect_started(key, task_id=task.task_id, step_id="send", tool="deliver")
    orch.store.effect_done(key, {"receipt": "from-ledger"})
    assert orch.host is not None
    await orch.host.start_task(task.task_id)
    result = await orch.wait(task.task_id, timeout=30)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert by_id(result)["send"].output == {"receipt": "from-ledger"}
    assert runs(orch.settings.workspace, task.task_id) == []
    assert outbox(orch.settings.workspace) == []


async def test_deciding_after_the_deadline_expires_the_task(orch: Orchestrator) -> None:
    orch.settings.engine.approval_expiry_hours = 1.5 / 3600
    result = await run(orch, plan({"id": "send", "tool": "deliver", "inputs": {"message": "late"}}))
    # (under heavy load the lease round may already have expired it)
    assert result.task.status in (TaskStatus.AWAITING_APPROVAL, TaskStatus.EXPIRED)
    import asyncio

    await asyncio.sleep(1.6)
    with pytest.raises(ConflictError, match="expired"):
        await orch.approve(result.task.task_id)
    assert (await orch.get_task(result.task.task_id)).status is TaskStatus.EXPIRED
    assert outbox(orch.settings.workspace) == []
