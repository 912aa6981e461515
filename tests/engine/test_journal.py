"""The journal's group commit: what waits for durability, and what a failed write does."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.engine.journal import JournalWriteError, StepJournal
from intelligent_orchestrator.engine.runtime import Claim, current_runtime
from intelligent_orchestrator.errors import NotFoundError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.storage import StepBatch, StepUpdate, Store, TaskUpdate, repository
from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import ToolContext, tool
from tests.conftest import make_settings
from tests.support.tools import outbox, runs


def plan(*steps: dict[str, Any]) -> ExecutionPlan:
    return ExecutionPlan.model_validate({"name": "journal", "steps": list(steps)})


def recording(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[list[StepBatch]]:
    """Every group commit the store is asked for, in order."""
    commits: list[list[StepBatch]] = []
    write = store.write_batch

    def spy(batches: Any) -> list[bool]:
        commits.append(list(batches))
        return write(batches)

    monkeypatch.setattr(store, "write_batch", spy)
    return commits


def handed_over(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, StepStatus]]:
    """Every step transition handed to a journal (step id, status), in order."""
    handed: list[tuple[str, StepStatus]] = []
    write = StepJournal.write

    def spy(self: StepJournal, batch: StepBatch) -> asyncio.Future[bool]:
        handed.extend((u.step_id, u.status) for u in batch.updates)
        return write(self, batch)

    monkeypatch.setattr(StepJournal, "write", spy)
    return handed


async def test_a_side_effect_acts_only_on_outputs_already_durable(orch: Orchestrator) -> None:
    seen: dict[str, tuple[StepStatus, Any]] = {}

    @tool("durable_check", category="test", side_effects=True, requires_approval=False)
    async def durable_check(ctx: ToolContext, value: int) -> dict[str, int]:
        """A side effect that looks at what the database holds when it is about to act."""
        for r in orch.store.step_runs(ctx.task_id):
            seen[r.step_id] = (r.status, r.output)
        return {"value": value}

    orch.registry.register(durable_check)
    task = await orch.submit(
        plan(
            {"id": "a", "tool": "noop", "inputs": {"value": 3}},
            {"id": "b", "tool": "add", "inputs": {"a": "${steps.a.output.value}", "b": 1}},
            {"id": "send", "tool": "durable_check", "inputs": {"value": "${steps.b.output.value}"}},
        )
    )
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    # pure steps do not wait for their commits, but the effect saw its inputs in the database
    assert seen["a"] == (StepStatus.SUCCEEDED, {"value": 3})
    assert seen["b"] == (StepStatus.SUCCEEDED, {"value": 4})
    assert seen["send"][0] is StepStatus.RUNNING
    effects = orch.store.effects(task.task_id)
    assert [(e.status, e.receipt) for e in effects] == [("done", {"value": 4})]


async def test_a_task_ends_in_the_same_commit_as_its_last_steps(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = recording(orch.store, monkeypatch)
    task = await orch.submit(
        plan(
            {"id": "a", "tool": "noop", "inputs": {"value": 1}},
            *({"id": f"w{i}", "tool": "noop", "depends_on": ["a"]} for i in range(5)),
            {"id": "z", "tool": "noop", "depends_on": [f"w{i}" for i in range(5)]},
        )
    )
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    mine = [b for commit in commits for b in commit if b.task_id == task.task_id]
    ends = [b for b in mine if b.task is not None]
    assert len(ends) == 1
    assert ends[0] is mine[-1]
    end = ends[0].task
    assert end is not None
    assert end.status is TaskStatus.SUCCEEDED
    assert "finished_at" in end.fields
    assert [(u.step_id, u.status) for u in ends[0].updates] == [("z", StepStatus.SUCCEEDED)]
    # and every transition was handed over in order: each step ran, then succeeded
    order = [(u.step_id, u.status) for b in mine for u in b.updates]
    for sid in ["a", *(f"w{i}" for i in range(5)), "z"]:
        mine_steps = [st for s, st in order if s == sid]
        assert mine_steps == [StepStatus.RUNNING, StepStatus.SUCCEEDED], sid


async def test_pure_steps_start_before_their_running_rows_are_handed_over(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launch's RUNNING rows wait one turn of the event loop, in which the launched pure
    steps start (the last of a wide fan-out starts sooner); the rows are still handed over
    before the steps' ends, and a side effect's launch still waits for them (see above)."""
    handed = handed_over(monkeypatch)
    seen_at_start: dict[str, list[tuple[str, StepStatus]]] = {}

    @tool("start_probe", category="test")
    async def start_probe(ctx: ToolContext, value: int) -> dict[str, int]:
        """Notes what had been handed to the journal when it started."""
        seen_at_start[ctx.step_id] = list(handed)
        await asyncio.sleep(0.01)
        return {"value": value}

    orch.registry.register(start_probe)
    task = await orch.submit(
        plan(
            {"id": "a", "tool": "noop", "inputs": {"value": 1}},
            *(
                {"id": f"w{i}", "tool": "start_probe", "inputs": {"value": i}, "depends_on": ["a"]}
                for i in range(5)
            ),
        )
    )
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    for i in range(5):
        sid = f"w{i}"
        assert (sid, StepStatus.RUNNING) not in seen_at_start[sid]
        assert ("a", StepStatus.SUCCEEDED) not in seen_at_start[sid]  # (in the same write)
        mine = [st for s, st in handed if s == sid]
        assert mine == [StepStatus.RUNNING, StepStatus.SUCCEEDED], sid


async def test_a_run_stopped_as_its_pure_steps_start_still_hands_over_what_came_before(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RUNNING rows of a pure launch, and the ends before them, are handed over one loop
    turn after the steps start: a run stopped in that turn (a process shutting down) still
    hands them over."""
    handed = handed_over(monkeypatch)

    @tool("stop_run", category="test")
    async def stop_run(ctx: ToolContext, value: int) -> dict[str, int]:
        """Stops its task's run the moment it starts (as a shutdown would)."""
        current_runtime().local_runs[ctx.task_id].cancel()
        await asyncio.sleep(10)
        return {"value": value}

    orch.registry.register(stop_run)
    task = await orch.submit(
        plan(
            # (long enough for the task's row to be stored: submit returns once it is)
            {"id": "a", "tool": "sleep", "inputs": {"seconds": 0.3}},
            {"id": "b", "tool": "stop_run", "inputs": {"value": 2}, "depends_on": ["a"]},
        )
    )
    for _ in range(300):  # (the run is gone; what it handed over is what counts)
        if ("b", StepStatus.RUNNING) in handed:
            break
        await asyncio.sleep(0.01)
    assert ("a", StepStatus.SUCCEEDED) in handed
    assert ("b", StepStatus.RUNNING) in handed
    assert handed.index(("a", StepStatus.SUCCEEDED)) < handed.index(("b", StepStatus.RUNNING))
    assert task.task_id not in current_runtime().local_runs


async def test_task_ends_use_statements_built_when_the_engine_started(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's statements for new tasks and task ends are compiled when the engine
    starts (Store.prepare), not in a task's commits: a task that succeeds, one whose step
    fails and one parked for approval compile none."""
    compiled: list[object] = []
    real = repository._DriverStatement.__init__

    def counting(self: object, *a: Any, **k: Any) -> None:
        compiled.append(a)
        real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(repository._DriverStatement, "__init__", counting)
    ok = await orch.submit(plan({"id": "a", "tool": "noop", "inputs": {"value": 1}}))
    bad = await orch.submit(plan({"id": "a", "tool": "fail", "inputs": {}}))
    parked = await orch.submit(
        plan({"id": "send", "tool": "deliver", "inputs": {"message": "hi"}})  # (needs approval)
    )
    assert (await orch.wait(ok.task_id, timeout=60)).task.status is TaskStatus.SUCCEEDED
    assert (await orch.wait(bad.task_id, timeout=60)).task.status is TaskStatus.FAILED
    assert (await orch.settled(parked.task_id)) is TaskStatus.AWAITING_APPROVAL
    assert compiled == []


async def test_a_failed_write_fails_only_its_own_task(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = orch.store
    for t in ("good", "bad"):
        store.create_task(plan({"id": "s", "tool": "noop"}), task_id=t, executor_id="ex")
    write = store.write_batch

    def failing(batches: Any) -> list[bool]:
        if any(b.task_id == "bad" for b in batches):
            raise RuntimeError("disk full")
        return write(batches)

    monkeypatch.setattr(store, "write_batch", failing)
    journal = StepJournal(store)

    def batch(task_id: str) -> StepBatch:
        return StepBatch(
            task_id=task_id,
            updates=[StepUpdate(step_id="s", tool="noop", status=StepStatus.SUCCEEDED)],
        )

    good, bad = journal.write(batch("good")), journal.write(batch("bad"))  # one group commit
    assert await good is False  # written (it had no task update)
    with pytest.raises(JournalWriteError, match="disk full"):
        await bad
    assert [r.status for r in store.step_runs("good")] == [StepStatus.SUCCEEDED]
    assert store.step_runs("bad") == []

    # The failed task's later writes are refused unwritten, so what is durable of it stays a
    # prefix of what happened (its end must not land after a lost step)...
    monkeypatch.setattr(store, "write_batch", write)
    with pytest.raises(JournalWriteError, match="disk full"):
        await journal.write(batch("bad"))
    assert store.step_runs("bad") == []
    # ...until a new run of it starts from what is durable.
    journal.begin("bad")
    assert await journal.write(batch("bad")) is False
    assert [r.status for r in store.step_runs("bad")] == [StepStatus.SUCCEEDED]
    await journal.drain()


async def test_each_event_loop_has_its_own_lane(orch: Orchestrator) -> None:
    """DBOS runs queued and recovered workflows on its own loop: writes from two loops (in two
    threads) must each be committed and resolved on their own loop."""
    store = orch.store
    journal = StepJournal(store)
    for t in ("l1", "l2"):
        store.create_task(plan({"id": "s", "tool": "noop"}), task_id=t, executor_id="ex")

    async def write(task_id: str) -> bool:
        update = StepUpdate(step_id="s", tool="noop", status=StepStatus.SUCCEEDED)
        ok = await journal.write(StepBatch(task_id=task_id, updates=[update]))
        await journal.drain()
        return ok

    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda t=t: results.append(asyncio.run(write(t))))
        for t in ("l1", "l2")
    ]
    for th in threads:
        th.start()
    for th in threads:
        await asyncio.to_thread(th.join, 30)
    assert results == [False, False]
    for t in ("l1", "l2"):
        assert [r.status for r in store.step_runs(t)] == [StepStatus.SUCCEEDED]


async def test_a_task_whose_steps_cannot_be_recorded_fails_with_the_reason(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = orch.store.write_batch
    calls = 0

    def flaky(batches: Any) -> list[bool]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("database went away")
        return write(batches)

    monkeypatch.setattr(orch.store, "write_batch", flaky)
    task = await orch.submit(
        plan(
            {"id": "a", "tool": "sleep", "inputs": {"seconds": 0.05}},
            {"id": "b", "tool": "sleep", "inputs": {"seconds": 0.05}, "depends_on": ["a"]},
            {"id": "c", "tool": "noop", "depends_on": ["b"]},
        )
    )
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.FAILED
    assert "could not record the task's steps: database went away" in (result.task.error or "")
    await asyncio.sleep(0)


async def test_a_task_cancelled_between_its_claim_and_its_start_does_not_run(
    orch: Orchestrator,
) -> None:
    host = orch.host
    assert host is not None
    p = plan({"id": "a", "tool": "noop", "inputs": {"value": 1}})
    task = orch.store.create_task(p, executor_id=host.executor_id)  # claimed by this process
    orch.store.update_task(task.task_id, status=TaskStatus.CANCELLED)  # cancelled meanwhile
    await host.start_task(task.task_id, claim=Claim(task=task))
    for _ in range(50):
        await asyncio.sleep(0.02)
    assert orch.store.get_task(task.task_id).status is TaskStatus.CANCELLED
    assert orch.store.step_runs(task.task_id) == []
    assert runs(orch.settings.workspace, task.task_id) == []


async def test_a_submitted_task_is_stored_in_the_commit_of_its_first_steps(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = recording(orch.store, monkeypatch)
    task = await orch.submit(
        plan(
            {"id": "a", "tool": "sleep", "inputs": {"seconds": 0.2}},
            {"id": "b", "tool": "sleep", "inputs": {"seconds": 0.2}},
        )
    )
    # submit returns once the row is durable: it is readable at once, running here
    stored = orch.store.get_task(task.task_id)
    assert stored.status is TaskStatus.RUNNING
    assert stored.plan == task.plan
    mine = [b for commit in commits for b in commit if b.task_id == task.task_id]
    assert mine[0].create is not None
    assert mine[0].create["task_id"] == task.task_id
    assert {(u.step_id, u.status) for u in mine[0].updates} == {
        ("a", StepStatus.RUNNING),
        ("b", StepStatus.RUNNING),
    }
    assert all(b.create is None for b in mine[1:])
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED


async def test_a_submit_whose_task_cannot_be_stored_fails_and_stores_nothing(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = orch.store.write_batch

    def failing(batches: Any) -> list[bool]:
        if any(b.create is not None for b in batches):
            raise RuntimeError("disk full")
        return write(batches)

    monkeypatch.setattr(orch.store, "write_batch", failing)
    before, _ = orch.store.list_tasks(limit=100)
    with pytest.raises(JournalWriteError, match="disk full"):
        await orch.submit(plan({"id": "a", "tool": "sleep", "inputs": {"seconds": 0.05}}))
    await asyncio.sleep(0.2)  # the run notices and stops
    after, _ = orch.store.list_tasks(limit=100)
    assert [t.task_id for t in after] == [t.task_id for t in before]


async def test_a_recovered_run_of_a_task_that_was_never_stored_ends_quietly(
    orch: Orchestrator,
) -> None:
    """The process died between starting the task's workflow and the task's first commit:
    the submit never returned; recovery finds no task and ends the run."""
    from intelligent_orchestrator.engine.runtime import current_runtime, execute_task

    assert await execute_task(current_runtime(), "never-stored") is TaskStatus.CANCELLED


async def test_a_write_nobody_waits_for_waits_for_the_delay_or_for_a_hurry(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = recording(orch.store, monkeypatch)
    for t in ("busy", "lazy", "late"):
        orch.store.create_task(plan({"id": "s", "tool": "noop"}), task_id=t, executor_id="ex")
    journal = StepJournal(orch.store, delay=600)

    def batch(task_id: str, step: str) -> StepBatch:
        return StepBatch(
            task_id=task_id,
            updates=[StepUpdate(step_id=step, tool="noop", status=StepStatus.SUCCEEDED)],
        )

    # Nothing is committed while nobody waits and the delay has not passed...
    lazy = journal.write(batch("lazy", "a"))
    await asyncio.sleep(0.2)
    assert not lazy.done()
    assert commits == []
    # ...until someone is about to wait for it.
    journal.hurry()
    await asyncio.wait_for(lazy, 30)
    assert [[b.task_id for b in c] for c in commits] == [["lazy"]]
    # A hurried commit gathers what is handed over while the loop is busy (here: a write
    # every turn, for longer than the few turns an idle loop lingers).
    written = [journal.write(batch("busy", "s0"))]
    journal.hurry()
    for i in range(1, 12):
        await asyncio.sleep(0)
        written.append(journal.write(batch("busy", f"s{i}")))
    await asyncio.gather(*written)
    assert [len(c) for c in commits[1:]] == [12]
    # With a short delay, a write nobody hurries is committed all the same.
    quick = StepJournal(orch.store, delay=0.05)
    await asyncio.wait_for(quick.write(batch("late", "a")), 30)
    assert [b.task_id for b in commits[-1]] == ["late"]


async def test_a_hurry_right_after_a_release_and_a_drain_do_not_wait_for_the_delay(
    orch: Orchestrator,
) -> None:
    for t in ("held", "drained"):
        orch.store.create_task(plan({"id": "s", "tool": "noop"}), task_id=t, executor_id="ex")
    journal = StepJournal(orch.store, delay=600)
    update = StepUpdate(step_id="s", tool="noop", status=StepStatus.SUCCEEDED)
    until: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    journal.hold("held", until=until)
    written = journal.write(StepBatch(task_id="held", updates=[update]))
    until.set_result(None)  # its release is scheduled, not run yet
    await journal.released("held")  # (what a side effect does before it acts)
    journal.hurry()
    assert await asyncio.wait_for(written, 30) is False
    # a drain commits at once, and what is handed over while it drains too
    first = journal.write(StepBatch(task_id="drained", updates=[update]))
    draining = asyncio.create_task(journal.drain())
    await asyncio.sleep(0)
    second = journal.write(StepBatch(task_id="drained", updates=[update]))
    await asyncio.wait_for(draining, 30)
    await asyncio.wait_for(asyncio.gather(first, second), 30)


async def test_a_failing_end_listener_does_not_stop_the_journal(orch: Orchestrator) -> None:
    orch.store.create_task(plan({"id": "s", "tool": "noop"}), task_id="t", executor_id="ex")
    told: list[str] = []

    def listener(task_id: str, status: TaskStatus) -> None:
        told.append(task_id)
        raise RuntimeError("a waiter's loop is gone")

    journal = StepJournal(orch.store, on_end=listener)
    update = StepUpdate(step_id="s", tool="noop", status=StepStatus.SUCCEEDED)
    end = TaskUpdate(status=TaskStatus.SUCCEEDED)
    written = journal.write(StepBatch(task_id="t", updates=[update], task=end))
    journal.hurry()
    assert await asyncio.wait_for(written, 30) is True
    assert told == ["t"]
    assert orch.store.get_task("t").status is TaskStatus.SUCCEEDED
    # and it goes on committing
    orch.store.create_task(plan({"id": "s", "tool": "noop"}), task_id="u", executor_id="ex")
    later = journal.write(StepBatch(task_id="u", updates=[update]))
    journal.hurry()
    assert await asyncio.wait_for(later, 30) is False


async def test_a_fan_outs_ends_share_the_commit_of_the_tasks_end(
    tmp_path: Path,
    database_url: str | None,
    registry: ToolRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pure steps' ends wait for the next commit someone needs: with a long delay, the ends
    of five parallel steps, the join and the task's end are one commit."""
    settings = make_settings(tmp_path / "h", database_url, commit_delay_ms=60_000)
    o = Orchestrator(settings, registry=registry)
    await o.start_engine(kind="test", listen=False)
    try:
        commits = recording(o.store, monkeypatch)
        task = await o.submit(
            plan(
                {"id": "a", "tool": "noop"},
                *(
                    {
                        "id": f"w{i}",
                        "tool": "sleep",
                        "inputs": {"seconds": 0.05},
                        "depends_on": ["a"],
                    }
                    for i in range(5)
                ),
                {"id": "z", "tool": "noop", "depends_on": [f"w{i}" for i in range(5)]},
            )
        )
        assert await asyncio.wait_for(o.settled(task.task_id), 60) is TaskStatus.SUCCEEDED
    finally:
        await o.close()
    mine = [[b for b in c if b.task_id == task.task_id] for c in commits]
    mine = [c for c in mine if c]
    # the first commit: the new task's row, which its submitter waited for
    assert mine[0][0].create is not None
    last = mine[-1]
    end = last[-1].task
    assert end is not None
    assert end.status is TaskStatus.SUCCEEDED
    ended = {(u.step_id, u.status) for b in last for u in b.updates}
    assert {(f"w{i}", StepStatus.SUCCEEDED) for i in range(5)} <= ended
    assert ("z", StepStatus.SUCCEEDED) in ended
    assert len(mine) == 2


async def test_a_held_task_commits_nothing_until_released_and_then_in_order(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = recording(orch.store, monkeypatch)
    for t in ("held", "free", "failed"):
        orch.store.create_task(plan({"id": "s", "tool": "noop"}), task_id=t, executor_id="ex")
    journal = StepJournal(orch.store)

    def batch(task_id: str, step: str) -> StepBatch:
        return StepBatch(
            task_id=task_id,
            updates=[StepUpdate(step_id=step, tool="noop", status=StepStatus.SUCCEEDED)],
        )

    loop = asyncio.get_running_loop()
    until: asyncio.Future[None] = loop.create_future()
    journal.hold("held", until=until)
    first, second = journal.write(batch("held", "a")), journal.write(batch("held", "b"))
    await journal.write(batch("free", "a"))  # another task's writes are not held
    await asyncio.sleep(0.05)
    assert not first.done()
    assert [[b.task_id for b in c] for c in commits] == [["free"]]
    until.set_result(None)
    await asyncio.gather(first, second)
    held = [[u.step_id for b in c for u in b.updates] for c in commits if c[0].task_id == "held"]
    assert held == [["a", "b"]]  # queued in order, into one commit
    assert [r.step_id for r in orch.store.step_runs("held")] == ["a", "b"]

    # A hold that fails refuses what it held, and the task's later writes too.
    failing: asyncio.Future[None] = loop.create_future()
    journal.hold("failed", until=failing)
    held_write = journal.write(batch("failed", "a"))
    failing.set_exception(RuntimeError("could not record the workflow"))
    with pytest.raises(JournalWriteError, match="could not record the workflow"):
        await held_write
    with pytest.raises(JournalWriteError, match="could not record the workflow"):
        await journal.write(batch("failed", "b"))
    assert orch.store.step_runs("failed") == []


async def test_a_task_starts_while_its_workflow_is_recorded_and_commits_after_it(
    orch: Orchestrator,
) -> None:
    """Its pure steps run at once; nothing of the task is durable before DBOS has recorded
    its workflow (so whatever is durable can be recovered); submit returns after both."""
    host = orch.host
    assert host is not None
    launcher: Any = host._launcher  # pyright: ignore[reportPrivateUsage]
    real = launcher._handle
    recorded = asyncio.Event()
    release = asyncio.Event()
    ws = orch.settings.workspace

    async def slow_record(launches: list[tuple[str, int]]) -> Any:
        await release.wait()
        result = await real(launches)
        recorded.set()
        return result

    launcher._handle = slow_record
    submit = asyncio.create_task(
        orch.submit(
            plan(
                {"id": "a", "tool": "noop", "inputs": {"value": 1}},
                {"id": "b", "tool": "noop", "inputs": {"value": "${steps.a.output.value}"}},
            )
        )
    )
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(runs(ws)) == 2:
                break
        assert len(runs(ws)) == 2  # both pure steps ran before the workflow was recorded
        task_id = ws.joinpath("runs.log").read_text().split()[0]
        assert not submit.done()
        with pytest.raises(NotFoundError):
            orch.store.get_task(task_id)  # and nothing of the task is in the database yet
    finally:
        release.set()  # (else the engine's stop would wait for the launch forever)
    task = await submit
    assert recorded.is_set()
    assert task.task_id == task_id
    result = await orch.wait(task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert runs(ws, task_id) == ["a", "b"]  # not run again


def _slow_launcher(orch: Orchestrator, release: asyncio.Event, *, fail: bool = False) -> None:
    """Make the host's DBOS workflow records wait for ``release`` (and then fail, if asked)."""
    host = orch.host
    assert host is not None
    launcher: Any = host._launcher  # pyright: ignore[reportPrivateUsage]
    real = launcher._handle

    async def slow(launches: list[tuple[str, int]]) -> Any:
        await release.wait()
        if fail:
            raise RuntimeError("system database unavailable")
        return await real(launches)

    launcher._handle = slow


async def test_a_side_effect_waits_for_its_tasks_workflow_record(orch: Orchestrator) -> None:
    """Resumed after approval, the gated side effect is the run's first step (nothing is
    written before it): it still waits for the run's workflow record."""
    ws = orch.settings.workspace
    task = await orch.submit(plan({"id": "send", "tool": "deliver", "inputs": {"message": "hi"}}))
    assert (await orch.wait(task.task_id, timeout=60)).task.status is TaskStatus.AWAITING_APPROVAL
    release = asyncio.Event()
    _slow_launcher(orch, release)
    approve = asyncio.create_task(orch.approve(task.task_id))
    try:
        await asyncio.sleep(0.3)
        assert runs(ws, task.task_id) == []
        assert not ws.joinpath("outbox.log").exists()
        assert not approve.done()
    finally:
        release.set()
    await approve
    assert (await orch.wait(task.task_id, timeout=60)).task.status is TaskStatus.SUCCEEDED
    assert outbox(ws) == [f"{task.task_id}:send hi"]


async def test_a_run_whose_workflow_cannot_be_recorded_stops_and_leaves_nothing(
    orch: Orchestrator,
) -> None:
    release = asyncio.Event()
    _slow_launcher(orch, release, fail=True)
    ws = orch.settings.workspace
    submit = asyncio.create_task(
        orch.submit(
            plan(
                {"id": "a", "tool": "noop", "inputs": {"value": 1}},
                {"id": "b", "tool": "sleep", "inputs": {"seconds": 0.3}},
                {"id": "send", "tool": "deliver", "inputs": {"message": "hi"}},
            ),
            auto_approve=True,
        )
    )
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(runs(ws)) == 2:
                break
        task_id = ws.joinpath("runs.log").read_text().split()[0]
    finally:
        release.set()
    with pytest.raises(RuntimeError, match="system database unavailable"):
        await submit
    await asyncio.sleep(0.5)  # b would have finished and send started by now
    with pytest.raises(NotFoundError):
        orch.store.get_task(task_id)
    assert orch.store.step_runs(task_id) == []
    assert sorted(runs(ws, task_id)) == ["a", "b"]  # the side effect never ran
    assert not ws.joinpath("outbox.log").exists()
