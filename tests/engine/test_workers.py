"""Several worker processes on one database: sharing, no stealing, recovery of a dead one."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.errors import ConflictError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.support.procs import Worker, cli, wait_for
from tests.support.tools import run_pids, runs

pytestmark = pytest.mark.slow


def submit(env: dict[str, str], path: Path, workflow: dict) -> str:
    path.write_text(json.dumps(workflow))
    done = cli(env, "run", "--plan", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["task_id"]


def executors_of(store: Store, task_id: str) -> set[str]:
    store.move_step_ends([task_id])  # (a finished task's last rows, as Store.step_runs does)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT DISTINCT executor_id FROM step_runs WHERE task_id = %s"
            if store.engine.dialect.name == "postgresql"
            else "SELECT DISTINCT executor_id FROM step_runs WHERE task_id = ?",
            (task_id,),
        ).fetchall()
    return {r[0] for r in rows if r[0]}


def test_a_live_worker_keeps_its_task_while_another_starts(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    a = Worker(env, "live-a", tmp_path)
    try:
        task_id = submit(
            env,
            tmp_path / "wf.json",
            {
                "name": "long",
                "steps": [
                    {"id": "long", "tool": "sleep", "inputs": {"seconds": 5}},
                ],
            },
        )
        wait_for(
            lambda: (settings.workspace / f"started-{task_id}-long").exists(),
            timeout=60,
            what="start",
        )
        b = Worker(env, "live-b", tmp_path)
        try:
            wait_for(lambda: store.get_task(task_id).status.finished, timeout=60, what="finish")
        finally:
            b.stop()
    finally:
        a.stop()
    assert store.get_task(task_id).status is TaskStatus.SUCCEEDED
    assert runs(settings.workspace, task_id) == ["long"]  # never recovered while its worker lived
    assert executors_of(store, task_id) == {"live-a"}


def test_an_executor_id_in_use_is_refused(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    a = Worker(env, "twin", tmp_path)
    try:
        wait_for(
            lambda: any(
                e.executor_id == "twin" for e in store.live_executors(lease=timedelta(seconds=2))
            ),
            timeout=30,
            what="worker to register",
        )
        done = cli(env, "worker", "--executor-id", "twin", timeout=60)
        assert done.returncode == 1
        assert "executor id 'twin' is in use" in done.stderr
    finally:
        a.stop()

    # The stopped worker's id may be reused; a live one may not (checked in-process too).
    store.register_executor("twin", kind="worker", host="h", pid=1, lease=timedelta(hours=1))
    with pytest.raises(ConflictError, match="in use by pid 1"):
        store.register_executor("twin", kind="worker", host="h", pid=2, lease=timedelta(hours=1))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_workers_share_tasks_and_one_finishes_the_work_of_a_killed_one(
    settings: Settings, env: dict[str, str], store: Store, registry: ToolRegistry, tmp_path: Path
) -> None:
    # Three tasks at most per worker, so that six tasks are split between the two.
    env = {**env, "ORCHESTRATOR_ENGINE__WORKER_CONCURRENCY": "3"}
    a = Worker(env, "pg-a", tmp_path)
    b = Worker(env, "pg-b", tmp_path)
    submitter = Orchestrator(settings, registry=registry)  # no engine: enqueues for the workers
    try:
        ids = []
        for i in range(6):
            plan = ExecutionPlan.model_validate(
                {
                    "name": f"t{i}",
                    "steps": [
                        {"id": "s1", "tool": "sleep", "inputs": {"seconds": 2.0, "value": i}},
                        {
                            "id": "s2",
                            "tool": "add",
                            "inputs": {"a": "${steps.s1.output.value}", "b": 100},
                        },
                    ],
                }
            )
            ids.append((await submitter.submit(plan)).task_id)
        await asyncio.to_thread(
            wait_for,
            lambda: (
                sum("pg-a" in executors_of(store, t) for t in ids) >= 1
                and any(
                    store.get_task(t).status is TaskStatus.RUNNING
                    and "pg-a" in executors_of(store, t)
                    for t in ids
                )
            ),
            timeout=60,
            what="worker a to run a task",
        )
        a.kill9()
        killed_at = time.monotonic()
        await asyncio.to_thread(
            wait_for,
            lambda: all(store.get_task(t).status.finished for t in ids),
            timeout=90,
            what="all tasks",
        )
        recovery = time.monotonic() - killed_at
    finally:
        await submitter.close()
        a.stop()
        b.stop()
    assert [store.get_task(t).status for t in ids] == [TaskStatus.SUCCEEDED] * 6
    outputs = [{r.step_id: r.output for r in store.step_runs(t)}["s2"] for t in ids]
    assert outputs == [{"value": 100 + i} for i in range(6)]
    taken_over = [t for t in ids if run_pids(settings.workspace, t) == {a.proc.pid, b.proc.pid}]
    assert taken_over, f"no task was taken over: {[run_pids(settings.workspace, t) for t in ids]}"
    assert all(executors_of(store, t) == {"pg-b"} for t in taken_over)
    assert recovery < 30, f"recovery took {recovery:.1f} s"
