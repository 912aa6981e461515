"""kill -9 a real worker at the worst moments; another worker must finish the work."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import StepStatus, TaskStatus
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store
from tests.support.procs import Worker, cli, wait_for
from tests.support.tools import mail_workflow, outbox, runs

pytestmark = pytest.mark.slow


def submit(env: dict[str, str], tmp_path: Path, workflow: dict, *extra: str) -> str:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))
    done = cli(env, "run", "--plan", str(path), "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["task_id"]


def submit_parked(
    env: dict[str, str], tmp_path: Path, store: Store, workflows: list[dict]
) -> list[str]:
    """Submit each workflow and wait until every task is parked for approval."""
    ids = [submit(env, tmp_path, w) for w in workflows]
    wait_for(
        lambda: all(status(store, t) is TaskStatus.AWAITING_APPROVAL for t in ids),
        timeout=60,
        what="parking",
    )
    return ids


def status(store: Store, task_id: str) -> TaskStatus:
    return store.get_task(task_id).status


def step_status(store: Store, task_id: str) -> dict[str, StepStatus]:
    return {r.step_id: r.status for r in store.step_runs(task_id)}


def finished(store: Store, task_id: str) -> bool:
    return status(store, task_id).finished


def test_kill_during_a_running_step_resumes_without_redoing_finished_steps(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    ws = settings.workspace
    a = Worker(env, "crash-a", tmp_path)
    try:
        task_id = submit(
            env,
            tmp_path,
            {
                "name": "chain",
                "steps": [
                    {"id": "first", "tool": "noop", "inputs": {"value": 1}},
                    {
                        "id": "slow",
                        "tool": "sleep",
                        "inputs": {"seconds": 60, "retry_seconds": 0.5, "value": 2},
                        "depends_on": ["first"],
                    },
                    {
                        "id": "last",
                        "tool": "add",
                        "inputs": {"a": "${steps.slow.output.value}", "b": 40},
                    },
                ],
            },
        )
        wait_for(  # (its start is durable within the journal's commit delay)
            lambda: (
                (ws / f"started-{task_id}-slow").exists()
                and step_status(store, task_id).get("slow") is StepStatus.RUNNING
            ),
            timeout=60,
            what="slow step to start",
        )
        a.kill9()
    finally:
        a.stop()
    assert status(store, task_id) is TaskStatus.RUNNING
    b = Worker(env, "crash-b", tmp_path)
    try:
        wait_for(lambda: finished(store, task_id), timeout=60, what="recovery by worker b")
    finally:
        b.stop()
    assert status(store, task_id) is TaskStatus.SUCCEEDED, b.output()
    assert runs(ws, task_id).count("first") == 1
    assert runs(ws, task_id).count("slow") == 2  # interrupted, so run again
    assert runs(ws, task_id).count("last") == 1
    assert {r.step_id: r.output for r in store.step_runs(task_id)}["last"] == {"value": 42}


def test_kill_during_parallel_steps_reruns_only_the_interrupted_ones(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    ws = settings.workspace
    a = Worker(env, "par-a", tmp_path)
    try:
        task_id = submit(
            env,
            tmp_path,
            {
                "name": "fan",
                "steps": [
                    {"id": "quick", "tool": "noop"},
                    *(
                        {
                            "id": f"p{i}",
                            "tool": "sleep",
                            "inputs": {"seconds": 60, "retry_seconds": 0.5, "value": i},
                        }
                        for i in range(3)
                    ),
                    {"id": "join", "tool": "noop", "depends_on": ["p0", "p1", "p2", "quick"]},
                ],
            },
        )
        wait_for(
            lambda: (
                all((ws / f"started-{task_id}-p{i}").exists() for i in range(3))
                and all(
                    step_status(store, task_id).get(f"p{i}") is StepStatus.RUNNING for i in range(3)
                )
                and step_status(store, task_id).get("quick") is StepStatus.SUCCEEDED
            ),
            timeout=60,
            what="parallel steps to start",
        )
        a.kill9()
    finally:
        a.stop()
    b = Worker(env, "par-b", tmp_path)
    try:
        wait_for(lambda: finished(store, task_id), timeout=60, what="recovery")
    finally:
        b.stop()
    assert status(store, task_id) is TaskStatus.SUCCEEDED, b.output()
    counts = {s: runs(ws, task_id).count(s) for s in ("quick", "p0", "p1", "p2", "join")}
    assert counts == {"quick": 1, "p0": 2, "p1": 2, "p2": 2, "join": 1}


def test_kill_while_parked_then_approve_sends_once(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    ws = settings.workspace
    a = Worker(env, "park-a", tmp_path)
    try:
        [task_id] = submit_parked(env, tmp_path, store, [mail_workflow()])
        a.kill9()
    finally:
        a.stop()
    b = Worker(env, "park-b", tmp_path)
    try:
        wait_for(
            lambda: bool(store.live_executors(lease=timedelta(seconds=2), kinds=["worker"])),
            timeout=30,
            what="worker b",
        )
        done = cli(env, "approve", task_id, "--comment", "ok", "--json")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: finished(store, task_id), timeout=60, what="approved task to finish")
    finally:
        b.stop()
    assert status(store, task_id) is TaskStatus.SUCCEEDED, b.output()
    assert outbox(ws) == [f"{task_id}:send v5"]
    assert runs(ws, task_id).count("draft") == 1


def test_kill_in_the_middle_of_a_side_effect_does_not_repeat_it(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    ws = settings.workspace
    a = Worker(env, "fx-a", tmp_path)
    try:
        task_id = submit(
            env,
            tmp_path,
            {
                "name": "fx",
                "steps": [
                    {
                        "id": "send",
                        "tool": "deliver",
                        "inputs": {"message": "once", "hold_seconds": 30},
                    },
                ],
            },
            "--auto-approve",
        )
        wait_for(
            lambda: (ws / f"delivered-{task_id}-send").exists(), timeout=60, what="effect to happen"
        )
        a.kill9()  # the effect happened, the step never finished
    finally:
        a.stop()
    assert outbox(ws) == [f"{task_id}:send once"]
    assert [e.status for e in store.effects(task_id)] == ["started"]
    b = Worker(env, "fx-b", tmp_path)
    try:
        wait_for(lambda: finished(store, task_id), timeout=60, what="recovery")
    finally:
        b.stop()
    assert status(store, task_id) is TaskStatus.SUCCEEDED, b.output()
    assert outbox(ws) == [f"{task_id}:send once"]  # the re-run carried the same idempotency key
    assert runs(ws, task_id).count("send") == 2
    assert [e.status for e in store.effects(task_id)] == ["done"]


APPROVER = """
import asyncio, sys
from dbos import DBOS
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings

async def main():
    orch = Orchestrator(Settings())
    await orch.start_engine(kind="approver", listen=False)
    await asyncio.gather(*(orch.approve(t, run_here=True) for t in sys.argv[1:]))
    batches = await asyncio.to_thread(DBOS.list_workflows, name="tasks.run")
    print("batched runs:", [sorted(t for t, _ in w.input["args"][0]) for w in batches], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_kill_during_a_batched_resume_finishes_every_task_once(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """Approvals that arrive together resume as one DBOS workflow; the process dies while
    their side effects are in flight; another process recovers that workflow and every task
    finishes, each effect done once."""
    ws = settings.workspace
    a = Worker(env, "batch-a", tmp_path)
    approver = None
    try:
        ids = submit_parked(
            env,
            tmp_path,
            store,
            [
                {
                    "name": f"mail{i}",
                    "steps": [
                        {
                            "id": "send",
                            "tool": "deliver",
                            "inputs": {"message": f"m{i}", "hold_seconds": 30},
                        }
                    ],
                }
                for i in range(3)
            ],
        )
        approver = Worker(env, "approver", tmp_path, command=[sys.executable, "-c", APPROVER, *ids])
        wait_for(
            lambda: all((ws / f"delivered-{t}-send").exists() for t in ids),
            timeout=60,
            what="the effects to happen",
        )
        wait_for(lambda: "batched runs:" in approver.output(), timeout=30, what="approvals")
        assert f"batched runs: [{sorted(ids)!r}]" in approver.output()
        approver.kill9()  # every effect happened, no step finished
        assert sorted(outbox(ws)) == sorted(f"{t}:send m{i}" for i, t in enumerate(ids))
        wait_for(
            lambda: all(finished(store, t) for t in ids), timeout=60, what="recovery by worker a"
        )
    finally:
        if approver is not None:
            approver.stop()
        a.stop()
    for t in ids:
        assert status(store, t) is TaskStatus.SUCCEEDED, a.output()
        assert runs(ws, t).count("send") == 2  # re-run once, with the same idempotency key
        assert [e.status for e in store.effects(t)] == ["done"]
    assert sorted(outbox(ws)) == sorted(f"{t}:send m{i}" for i, t in enumerate(ids))


DIES_BEFORE_THE_RECORD = """
import asyncio, os, sys
from intelligent_orchestrator.engine import runtime
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings

async def die(launches):
    print("claimed", sorted(t for t, _ in launches), flush=True)
    os._exit(9)  # as kill -9: after the approvals' commit, before the runs' DBOS record

runtime._launch = die

async def main():
    orch = Orchestrator(Settings())
    await orch.start_engine(kind="approver", listen=False)
    await asyncio.gather(*(orch.approve(t, run_here=True) for t in sys.argv[1:]))

asyncio.run(main())
"""


def test_kill_between_an_approval_and_its_run_record_finishes_the_tasks(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """The approving process commits the approvals, claiming the tasks for itself, and dies
    before DBOS records the runs: no workflow exists to recover. A worker takes over the dead
    executor's claimed tasks and each side effect happens once."""
    ws = settings.workspace
    a = Worker(env, "record-a", tmp_path)
    approver = None
    try:
        ids = submit_parked(
            env,
            tmp_path,
            store,
            [
                {
                    "name": f"mail{i}",
                    "steps": [
                        {"id": "draft", "tool": "noop", "inputs": {"value": i}},
                        {
                            "id": "send",
                            "tool": "deliver",
                            "inputs": {"message": "m${steps.draft.output.value}"},
                        },
                    ],
                }
                for i in range(2)
            ],
        )
        approver = Worker(
            env, "approver", tmp_path, command=[sys.executable, "-c", DIES_BEFORE_THE_RECORD, *ids]
        )
        assert approver.proc.wait(timeout=60) == 9, approver.output()
        assert f"claimed {sorted(ids)!r}" in approver.output()
        assert all(status(store, t) is TaskStatus.RUNNING for t in ids)
        wait_for(
            lambda: all(finished(store, t) for t in ids), timeout=60, what="recovery by worker a"
        )
    finally:
        if approver is not None:
            approver.stop()
        a.stop()
    for t in ids:
        assert status(store, t) is TaskStatus.SUCCEEDED, a.output()
        assert runs(ws, t) == ["draft", "send"]
    assert sorted(outbox(ws)) == sorted(f"{t}:send m{i}" for i, t in enumerate(ids))
    assert "is claimed but has no run recorded" in a.output()
