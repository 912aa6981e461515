"""Work that arrives together is done together: approvals decided in one transaction, the runs
of tasks claimed at the same moment started as one DBOS workflow, their side effects recorded
in one transaction — and one item's failure stays its own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from dbos import DBOS

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.engine.batching import Coalescer
from intelligent_orchestrator.engine.runtime import TASK_WORKFLOW, TASKS_WORKFLOW
from intelligent_orchestrator.errors import ConflictError, NotFoundError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.support.tools import outbox, runs

MAIL = ExecutionPlan.model_validate(
    {
        "name": "mail",
        "steps": [
            {"id": "draft", "tool": "noop", "inputs": {"value": 1}},
            {"id": "send", "tool": "deliver", "inputs": {"message": "hi"}},
        ],
    }
)


def spy(store: Store, monkeypatch: pytest.MonkeyPatch, name: str) -> list[list[Any]]:
    """The argument lists ``store.<name>`` is called with, in order."""
    calls: list[list[Any]] = []
    real = getattr(store, name)

    def record(items: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(items))
        return real(items, *args, **kwargs)

    monkeypatch.setattr(store, name, record)
    return calls


async def park(orch: Orchestrator, n: int) -> list[str]:
    ids = [(await orch.submit(MAIL)).task_id for _ in range(n)]
    for tid in ids:
        result = await orch.wait(tid, timeout=60)
        assert result.task.status is TaskStatus.AWAITING_APPROVAL
    return ids


async def outcomes(workflow_ids: list[str]) -> list[Any]:
    """The workflows' DBOS statuses once none is pending any more (or after 10 s): a run's
    workflow records its outcome just after the task's end is durable, which ``wait`` sees."""
    deadline = time.monotonic() + 10
    while True:
        found = await DBOS.list_workflows_async(workflow_ids=workflow_ids)
        if time.monotonic() > deadline or all(
            w.status not in ("PENDING", "ENQUEUED") for w in found
        ):
            return found
        await asyncio.sleep(0.05)


async def test_approvals_arriving_together_resume_as_one(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await park(orch, 5)
    decided = spy(orch.store, monkeypatch, "approve_many")
    effects = spy(orch.store, monkeypatch, "effects_started")
    before = {w.workflow_id for w in await asyncio.to_thread(DBOS.list_workflows)}

    tasks = await asyncio.gather(
        *(orch.approve(t, comment=f"ok {t}", decided_by="ana") for t in ids)
    )

    assert [t.task_id for t in tasks] == ids
    assert all(t.status is TaskStatus.RUNNING for t in tasks)
    assert [[d.task_id for d in call] for call in decided] == [ids]  # one transaction
    for tid in ids:
        result = await orch.wait(tid, timeout=60)
        assert result.task.status is TaskStatus.SUCCEEDED
        assert [(a.status.value, a.comment) for a in orch.store.approvals(tid)] == [
            ("approved", f"ok {tid}")
        ]
        assert runs(orch.settings.workspace, tid).count("send") == 1
    assert sorted(outbox(orch.settings.workspace)) == sorted(f"{t}:send hi" for t in ids)
    # their side effects were recorded as started in one transaction
    assert [sorted(e.task_id for e in call) for call in effects] == [sorted(ids)]
    # and their runs are one DBOS workflow, which ended once all of them had
    new = [w for w in await asyncio.to_thread(DBOS.list_workflows) if w.workflow_id not in before]
    assert [(w.name, w.status) for w in new] == [(TASKS_WORKFLOW, "SUCCESS")]
    assert new[0].input is not None
    assert sorted(new[0].input["args"][0]) == sorted((t, 1) for t in ids)  # (task, generation)
    assert new[0].output == ["succeeded"] * 5


async def test_a_lone_approval_keeps_its_own_workflow(orch: Orchestrator) -> None:
    (tid,) = await park(orch, 1)
    await orch.approve(tid)
    assert (await orch.wait(tid, timeout=60)).task.status is TaskStatus.SUCCEEDED
    (status,) = await outcomes([f"{tid}:g1"])
    assert (status.name, status.status) == (TASK_WORKFLOW, "SUCCESS")


async def test_an_approval_that_cannot_apply_fails_alone(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, other = await park(orch, 2)
    done = (
        await orch.submit(
            ExecutionPlan.model_validate(
                {"name": "plain", "steps": [{"id": "a", "tool": "noop", "inputs": {"value": 1}}]}
            )
        )
    ).task_id
    assert (await orch.wait(done, timeout=60)).task.status is TaskStatus.SUCCEEDED
    decided = spy(orch.store, monkeypatch, "approve_many")

    results = await asyncio.gather(
        orch.approve(ok),
        orch.approve("no-such-task"),
        orch.approve(done),
        orch.approve(ok),  # the same task twice: the second sees the first
        orch.approve(other),
        return_exceptions=True,
    )

    assert len(decided) == 1
    assert len(decided[0]) == 5
    assert not isinstance(results[0], BaseException)
    assert results[0].task_id == ok
    assert isinstance(results[1], NotFoundError)
    assert isinstance(results[2], ConflictError)
    assert "succeeded, not awaiting approval" in str(results[2])
    assert isinstance(results[3], ConflictError)
    assert "running, not awaiting approval" in str(results[3])
    assert not isinstance(results[4], BaseException)
    assert results[4].task_id == other
    for tid in (ok, other):
        assert (await orch.wait(tid, timeout=60)).task.status is TaskStatus.SUCCEEDED
    assert sorted(outbox(orch.settings.workspace)) == sorted([f"{ok}:send hi", f"{other}:send hi"])
    assert orch.store.get_task(done).status is TaskStatus.SUCCEEDED


async def test_a_refused_decision_in_a_batch_changes_nothing(orch: Orchestrator) -> None:
    """Store level: an expired approval is refused, its neighbours apply, and the refused
    task keeps its approval untouched except for the expiry itself."""
    from datetime import timedelta

    from intelligent_orchestrator.storage import Decision, utcnow

    first, late = await park(orch, 2)
    with orch.store.session() as s, s.begin():
        from intelligent_orchestrator.storage.tables import ApprovalRow

        row = s.query(ApprovalRow).filter_by(task_id=late).one()
        row.expires_at = utcnow() - timedelta(minutes=1)
    results = orch.store.approve_many(
        [Decision(task_id=late, comment="too late"), Decision(task_id=first, comment="fine")]
    )
    assert isinstance(results[0], ConflictError)
    assert "expired" in str(results[0])
    assert not isinstance(results[1], BaseException)
    approvals, generation, claimed = results[1]
    assert generation == 1
    assert claimed is None
    assert [a.status.value for a in approvals] == ["approved"]
    assert orch.store.get_task(first).status is TaskStatus.QUEUED
    assert orch.store.get_task(late).status is TaskStatus.EXPIRED
    assert [a.status.value for a in orch.store.approvals(late)] == ["expired"]
    assert orch.store.feedback(late) == []
    assert [f["text"] for f in orch.store.feedback(first)] == ["fine"]


async def test_coalescer_batches_a_burst_and_keeps_results_apart() -> None:
    calls: list[list[int]] = []

    async def handle(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    c: Coalescer[int, int] = Coalescer(handle)
    first = await asyncio.gather(*(c.submit(i) for i in range(4)), return_exceptions=True)
    assert calls == [[0, 1, 2, 3]]
    assert first[0] == 0
    assert first[2] == 20
    assert isinstance(first[1], ValueError)
    assert str(first[1]) == "odd 1"
    # items handed over while a call is in flight gather for the next call
    a = c.submit(4)
    await asyncio.sleep(0.001)
    b, d = c.submit(6), c.submit(8)
    assert await asyncio.gather(a, b, d) == [40, 60, 80]
    assert calls[1:] == [[4], [6, 8]]


async def test_coalescer_fails_every_item_when_the_call_itself_fails() -> None:
    async def handle(items: list[int]) -> list[int]:
        raise RuntimeError("database down")

    c: Coalescer[int, int] = Coalescer(handle)
    results = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database down", "database down"]
    # and the next burst is handled again
    assert isinstance((await asyncio.gather(c.submit(3), return_exceptions=True))[0], RuntimeError)


async def test_coalescer_with_busy_linger_waits_for_the_work_ready_on_the_loop() -> None:
    """The launcher's call (DBOS's record, in a thread) waits until the steps a run has just
    made ready have started; a plain coalescer calls after its few turns."""
    turns: list[str] = []

    async def busy_work() -> None:  # ready every turn for 20 turns, like steps starting
        for i in range(20):
            turns.append(f"work {i}")
            await asyncio.sleep(0)

    async def handle(items: list[int]) -> list[int]:
        turns.append("call")
        return items

    for busy_linger, call_at in ((64, 20), (0, 4)):
        turns.clear()
        c: Coalescer[int, int] = Coalescer(handle, busy_linger=busy_linger)
        work = asyncio.create_task(busy_work())
        assert await c.submit(1) == 1
        await work
        assert turns.index("call") in (call_at, call_at + 1), (busy_linger, turns)

    # and it does not wait for ever on a loop that stays busy
    async def forever() -> None:
        while True:  # noqa: ASYNC110  (busy on purpose: work ready on every turn)
            await asyncio.sleep(0)

    spinning = asyncio.create_task(forever())
    try:
        c = Coalescer(handle, busy_linger=64)
        assert await asyncio.wait_for(c.submit(2), 10) == 2
    finally:
        spinning.cancel()


async def test_coalescer_busy_linger_is_bounded_in_time_by_busy_seconds() -> None:
    """The launcher lingers up to 10 ms while the loop is busy (launching a wide fan-out's
    steps takes that long on a slow VM); a coalescer with a shorter bound calls sooner."""
    turns: list[str] = []

    async def slow_work() -> None:  # 20 turns of 2 ms each: 40 ms of a busy loop
        for i in range(20):
            turns.append(f"work {i}")
            time.sleep(0.002)  # noqa: ASYNC251  (a turn that keeps the loop busy)
            await asyncio.sleep(0)

    async def handle(items: list[int]) -> list[int]:
        turns.append("call")
        return items

    for busy_seconds, waited in ((1.0, True), (0.005, False)):
        turns.clear()
        c: Coalescer[int, int] = Coalescer(handle, busy_linger=256, busy_seconds=busy_seconds)
        work = asyncio.create_task(slow_work())
        assert await c.submit(1) == 1
        await work
        assert (turns.index("call") >= 20) is waited, (busy_seconds, turns)


def test_a_batch_stopped_with_its_process_is_resumed_when_the_executor_restarts(
    settings: Settings, registry: ToolRegistry
) -> None:
    """A graceful stop interrupts a batch's runs like a crash: the batch's workflow stays
    pending (it is not recorded as finished), and the executor's restart resumes every task.
    (Two event loops: DBOS shuts the loop's default executor down when it stops.)"""
    ws = settings.workspace
    slow = ExecutionPlan.model_validate(
        {
            "name": "slow",
            "steps": [
                {"id": "a", "tool": "noop", "inputs": {"value": 1}},
                {"id": "b", "tool": "sleep", "inputs": {"seconds": 30, "retry_seconds": 0.05}},
            ],
        }
    )

    async def first() -> tuple[list[str], str]:
        orch = Orchestrator(settings, registry=registry)
        await orch.start_engine(kind="test", listen=False, executor_id="restarting")
        try:
            tasks = await asyncio.gather(orch.submit(slow), orch.submit(slow))
            ids = [t.task_id for t in tasks]
            for _ in range(200):
                if all((ws / f"started-{t}-b").exists() for t in ids):
                    break
                await asyncio.sleep(0.02)
            (batch,) = await asyncio.to_thread(DBOS.list_workflows, name=TASKS_WORKFLOW)
        finally:
            await orch.close()
        assert {orch.store.get_task(t).status for t in ids} == {TaskStatus.RUNNING}
        return ids, batch.workflow_id

    async def second(ids: list[str], batch: str) -> None:
        again = Orchestrator(settings, registry=registry)
        await again.start_engine(kind="test", listen=False, executor_id="restarting")
        try:
            for t in ids:
                assert (await again.wait(t, timeout=60)).task.status is TaskStatus.SUCCEEDED
                assert runs(ws, t) == ["a", "b", "b"]  # a was durable; b ran again
            (after,) = await outcomes([batch])
            assert after.status == "SUCCESS"
        finally:
            await again.close()

    ids, batch = asyncio.run(first())
    asyncio.run(second(ids, batch))


def test_a_claim_for_a_generation_the_task_has_left_takes_nothing(orch: Orchestrator) -> None:
    task = orch.store.create_task(MAIL, executor_id="ex")
    orch.store.update_task(task.task_id, status=TaskStatus.AWAITING_APPROVAL)
    with orch.store.session() as s, s.begin():
        from intelligent_orchestrator.storage.tables import TaskRow

        row = s.get(TaskRow, task.task_id)
        assert row is not None
        row.run_generation = 2  # approved twice since generation 0 started
    assert orch.store.claim_task(task.task_id, executor_id="late", generation=0) is None
    assert orch.store.get_task(task.task_id).status is TaskStatus.AWAITING_APPROVAL
    claimed = orch.store.claim_task(task.task_id, executor_id="late", generation=2)
    assert claimed is not None
    assert claimed[0].status is TaskStatus.RUNNING


async def test_a_batch_of_approvals_that_fails_as_a_whole_is_decided_one_by_one(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await park(orch, 3)
    real = orch.store.approve_many
    sizes: list[int] = []

    def deadlocking(decisions: Any, **kwargs: Any) -> Any:
        sizes.append(len(decisions))
        if len(decisions) > 1:
            raise RuntimeError("deadlock detected")
        return real(decisions, **kwargs)

    monkeypatch.setattr(orch.store, "approve_many", deadlocking)
    results = await asyncio.gather(
        orch.approve(ids[0]),
        orch.approve("no-such-task"),
        orch.approve(ids[1]),
        return_exceptions=True,
    )
    assert sizes == [3, 1, 1, 1]
    assert isinstance(results[1], NotFoundError)
    for i in (0, 2):
        assert not isinstance(results[i], BaseException)
    for tid in ids[:2]:
        assert (await orch.wait(tid, timeout=60)).task.status is TaskStatus.SUCCEEDED
    assert orch.store.get_task(ids[2]).status is TaskStatus.AWAITING_APPROVAL


async def test_approvals_on_a_process_that_works_the_queue_are_decided_together(
    settings: Settings, registry: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``orchestrator serve`` (or a worker): approvals share one transaction, and each task
    resumes through the shared queue, as its own workflow."""
    orch = Orchestrator(settings, registry=registry)
    await orch.start_engine(kind="test", listen=True)
    try:
        ids = await park(orch, 3)
        decided = spy(orch.store, monkeypatch, "approve_many")
        tasks = await asyncio.gather(*(orch.approve(t) for t in ids))
        assert [[d.task_id for d in call] for call in decided] == [ids]
        assert {t.status for t in tasks} <= {TaskStatus.QUEUED, TaskStatus.RUNNING}
        for tid in ids:
            assert (await orch.wait(tid, timeout=60)).task.status is TaskStatus.SUCCEEDED
        queued = await outcomes([f"{t}:g1" for t in ids])
        assert (
            sorted((w.name, w.queue_name, w.status) for w in queued)
            == [(TASK_WORKFLOW, "tasks", "SUCCESS")] * 3
        )
        assert sorted(outbox(orch.settings.workspace)) == sorted(f"{t}:send hi" for t in ids)
    finally:
        await orch.close()
