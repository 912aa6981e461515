"""kill -9 a worker while its tasks stand in every phase of a request's pipeline; another
worker finishes them all without redoing what was stored, and each approved post is published
exactly once.

One drill per database: worker A runs ten tasks at once, each held (fault injection,
``engine.pause_at_phase`` keyed by the task's name or request) in a different phase (discover,
plan, execute, assess, refine, format, learn, approval, parked for review, actions), and is
killed when all stand where they should. Worker B recovers them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import PipelinePhase, TaskStatus
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store
from tests.support.pipeline import request_plan
from tests.support.procs import Worker, cli, wait_for

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).parents[1] / "support" / "pipeline_worker.py")
SCRIPTED_MODEL = {
    "ORCHESTRATOR_MODELS__PAID__PROVIDER": "openai",
    "ORCHESTRATOR_MODELS__PAID__MODEL": "scripted",
    "ORCHESTRATOR_MODELS__PAID__BASE_URL": "http://127.0.0.1:9/v1",
    "ORCHESTRATOR_LLM__DEFAULT_MODEL": "paid",
}
HOLD = 300.0  # seconds a held task waits in its phase (it is killed long before)
# Tasks from a plan, by the phase they are held in ("parked": no hold, parked for review).
PLANNED = ("execute", "assess", "refine", "format", "learn", "approval", "parked", "actions")
# Tasks from a request, held while their run plans them.
REQUESTS = {
    "discover": "Write a LinkedIn post about our garden chairs",
    "plan": "Write a LinkedIn post about our new parasols",
}


def worker(env: dict[str, str], name: str, tmp_path: Path, **extra: str) -> Worker:
    return Worker(
        {**env, **SCRIPTED_MODEL, **extra}, name, tmp_path, command=[sys.executable, WORKER, name]
    )


def calls_by_step(store: Store, task_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in store.llm_calls(task_id):
        out[c.step_id or "?"] = out.get(c.step_id or "?", 0) + 1
    return out


async def _submit(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """Queue the drill's tasks (as the CLI and API do, without running them here)."""
    orch = Orchestrator(settings)
    try:
        planned = {}
        for phase in PLANNED:
            plan = request_plan(name=f"drill-{phase}", second_draft=phase == "refine")
            planned[phase] = (await orch.submit(plan, run_here=False)).task_id
        requested = {}
        for phase, request in REQUESTS.items():
            task, _ = await orch.process_request(request, run_here=False, plan_timeout=None)
            requested[phase] = task.task_id
        return planned, requested
    finally:
        await orch.close()


async def _approve(settings: Settings, task_ids: list[str]) -> None:
    """Approve as the API does: the continuation goes to the worker through the queue."""
    orch = Orchestrator(settings)
    try:
        for task_id in task_ids:
            await orch.approve(task_id, comment="drill", run_here=False)
    finally:
        await orch.close()


def test_kill_with_tasks_in_every_phase_resumes_all_and_publishes_once(
    settings: Settings, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    holds = {f"{p}@drill-{p}": HOLD for p in PLANNED if p != "parked"}
    holds |= {f"{p}@{request}": HOLD for p, request in REQUESTS.items()}
    a = worker(
        env,
        "drill-a",
        tmp_path,
        ORCHESTRATOR_ENGINE__PAUSE_AT_PHASE=json.dumps(holds),
        ORCHESTRATOR_ENGINE__WORKER_CONCURRENCY="20",
    )
    try:
        planned, requested = asyncio.run(_submit(settings))

        def parked(task_id: str) -> bool:
            return store.get_task(task_id).status is TaskStatus.AWAITING_APPROVAL

        wait_for(lambda: parked(planned["actions"]), timeout=60, what="the actions task's review")
        approved = cli(env, "approve", planned["actions"], "--json")
        assert approved.returncode == 0, approved.stderr

        def standing(phase: str, task_id: str) -> bool:
            if phase == "parked":
                return parked(task_id)
            current = store.get_task(task_id).phase
            return current is not None and current.value == phase

        everyone = {**planned, **requested}
        wait_for(
            lambda: all(standing(p, t) for p, t in everyone.items()),
            timeout=90,
            what="every task in its phase: "
            + ", ".join(f"{p}={store.get_task(t).phase}" for p, t in everyone.items()),
        )
        for phase in REQUESTS:  # held before the plan was stored
            assert store.get_task(requested[phase]).plan.pending
        a.kill9()
    finally:
        a.stop()

    b = worker(env, "drill-b", tmp_path, ORCHESTRATOR_ENGINE__WORKER_CONCURRENCY="20")
    try:
        reviews = [t for p, t in everyone.items() if p != "actions"]
        wait_for(
            lambda: all(parked(t) for t in reviews), timeout=120, what="recovery up to the review"
        )
        for task_id in reviews:
            assert store.get_task(task_id).phase is PipelinePhase.APPROVAL
        asyncio.run(_approve(settings, reviews))
        wait_for(
            lambda: all(store.get_task(t).status.finished for t in everyone.values()),
            timeout=90,
            what="the end of every task",
        )
    finally:
        b.stop()

    for phase, task_id in everyone.items():
        task = store.get_task(task_id)
        assert task.status is TaskStatus.SUCCEEDED, (phase, task.error, b.output())
        assert task.phase is PipelinePhase.DONE, phase
        record = store.execution_record(task_id)
        assert record is not None, phase
        assert record.outcome == "succeeded", phase

    for phase, task_id in planned.items():
        refined = phase == "refine"
        assert calls_by_step(store, task_id) == {
            "write_blog": 1,  # nothing stored was redone
            "write_linkedin": 2 if refined else 1,
            "@assess": 4 if refined else 2,
        }, phase
        assert [e.status for e in store.effects(task_id)] == ["done"], phase
        assert len(store.assessments(task_id)) == (2 if refined else 1), phase
        record = store.execution_record(task_id)
        assert record is not None
        assert "publish_blog" in record.receipts, phase
    published = sorted((settings.home / "published").rglob("*.md"))
    assert len(published) == len(PLANNED)  # one post per task, none twice

    for phase, task_id in requested.items():
        task = store.get_task(task_id)
        assert not task.plan.pending, phase
        assert task.plan.steps, phase
        calls = calls_by_step(store, task_id)
        # held on entering its phase, before the planner's model call: planned once, by B
        assert calls.get("plan") == 1, (phase, calls)
        writers = [s.id for s in task.plan.steps if s.tool == "write_content"]
        assert writers, phase
        assert all(calls.get(w) == 1 for w in writers), (phase, calls)
        assert task.plan.metadata["phase_ms"]["plan"] > 0
