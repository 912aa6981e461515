"""kill -9 a worker in every phase of a request's pipeline; another worker finishes the task
without redoing what was stored, and the approved post is published exactly once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import PipelinePhase, TaskStatus
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


def worker(env: dict[str, str], name: str, tmp_path: Path, mode: str, **extra: str) -> Worker:
    return Worker(
        {**env, **SCRIPTED_MODEL, **extra},
        name,
        tmp_path,
        command=[sys.executable, WORKER, name, mode],
    )


def phase_of(store: Store, task_id: str) -> PipelinePhase | None:
    return store.get_task(task_id).phase


def calls_by_step(store: Store, task_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in store.llm_calls(task_id):
        out[c.step_id or "?"] = out.get(c.step_id or "?", 0) + 1
    return out


@pytest.mark.parametrize(
    ("phase", "mode"),
    [
        ("execute", ""),
        ("assess", ""),
        ("refine", "refine"),
        ("format", ""),
        ("learn", ""),
        ("approval", ""),
        ("parked", ""),
        ("actions", ""),
    ],
)
def test_kill_in_each_phase_resumes_and_publishes_once(
    settings: Settings,
    env: dict[str, str],
    store: Store,
    tmp_path: Path,
    phase: str,
    mode: str,
) -> None:
    pause = {} if phase == "parked" else {phase: 120}
    a = worker(
        env, f"{phase}-a", tmp_path, mode, ORCHESTRATOR_ENGINE__PAUSE_AT_PHASE=json.dumps(pause)
    )
    try:
        wf = tmp_path / "wf.json"
        wf.write_text(request_plan().model_dump_json())
        submitted = cli(env, "run", "--plan", str(wf), "--json")
        assert submitted.returncode == 0, submitted.stderr
        task_id = json.loads(submitted.stdout)["task_id"]
        if phase in ("actions", "parked"):
            wait_for(
                lambda: store.get_task(task_id).status is TaskStatus.AWAITING_APPROVAL,
                timeout=60,
                what="the review",
            )
        if phase == "actions":
            approved = cli(env, "approve", task_id, "--json")
            assert approved.returncode == 0, approved.stderr
        if phase != "parked":
            wait_for(
                lambda: (p := phase_of(store, task_id)) is not None and p.value == phase,
                timeout=60,
                what=f"phase {phase}",
            )
        a.kill9()
    finally:
        a.stop()
    b = worker(env, f"{phase}-b", tmp_path, mode)
    try:
        if phase != "actions":
            wait_for(
                lambda: store.get_task(task_id).status is TaskStatus.AWAITING_APPROVAL,
                timeout=60,
                what="recovery up to the review",
            )
            assert store.get_task(task_id).phase is PipelinePhase.APPROVAL
            approved = cli(env, "approve", task_id, "--json")
            assert approved.returncode == 0, approved.stderr
        wait_for(lambda: store.get_task(task_id).status.finished, timeout=60, what="the end")
    finally:
        b.stop()
    task = store.get_task(task_id)
    assert task.status is TaskStatus.SUCCEEDED, b.output()
    assert task.phase is PipelinePhase.DONE
    refined = mode == "refine"
    assert calls_by_step(store, task_id) == {
        "write_blog": 1,  # nothing stored was redone
        "write_linkedin": 2 if refined else 1,
        "@assess": 4 if refined else 2,
    }
    published = sorted((settings.home / "published").rglob("*.md"))
    assert len(published) == 1
    assert [e.status for e in store.effects(task_id)] == ["done"]
    assert len(store.assessments(task_id)) == (2 if refined else 1)
    record = store.execution_record(task_id)
    assert record is not None
    assert record.outcome == "succeeded"
    assert "publish_blog" in record.receipts
