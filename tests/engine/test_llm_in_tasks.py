"""LLM tools inside durable tasks: usage per step and task in status, and the task budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import LlmSettings, ModelConfig, Settings
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.conftest import build_registry
from tests.support.models import Script, scripted
from tests.support.pipeline import GOOD

DRAFT = {"title": "Spring sale", "body": "Garden furniture is 25% off until April 10."}


def plan() -> ExecutionPlan:
    return ExecutionPlan.model_validate(
        {
            "name": "newsletter",
            "steps": [
                {
                    "id": "draft",
                    "tool": "write_content",
                    "inputs": {"kind": "newsletter", "brief": "spring sale"},
                },
                {
                    "id": "short",
                    "tool": "summarize",
                    "inputs": {"text": "${steps.draft.output.body}", "max_words": 20},
                },
                {
                    "id": "de",
                    "tool": "translate",
                    "inputs": {
                        "text": "${steps.short.output.summary}",
                        "target_language": "German",
                    },
                },
            ],
        }
    )


def answers(prompt: str) -> dict[str, Any]:
    if "Text to grade" in prompt:  # the quality judge of a request's result
        return GOOD
    if "Translate" in prompt:
        return {"translation": "Gartenmöbel 25 % günstiger.", "source_language": "English"}
    if "Summarise" in prompt:
        return {"summary": "All garden furniture is 25% off this month."}
    return DRAFT


async def orchestrator(settings: Settings, registry: ToolRegistry, script: Script) -> Orchestrator:
    o = Orchestrator(settings, registry=registry, models={"paid": script.model})
    await o.start_engine(kind="test", listen=False)
    return o


def paid_settings(settings: Settings, **llm: object) -> Settings:
    return settings.model_copy(
        update={
            "models": {
                **settings.models,
                "paid": ModelConfig(
                    provider="openai",
                    model="m",
                    base_url="http://127.0.0.1:9/v1",
                    input_price_per_million=1.0,
                    output_price_per_million=4.0,
                ),
            },
            "llm": LlmSettings.model_validate({"default_model": "paid", **llm}),
        }
    )


@pytest.fixture
async def llm_orch(settings: Settings) -> AsyncIterator[tuple[Orchestrator, Script]]:
    s = paid_settings(settings)
    script = scripted(answers)
    o = await orchestrator(s, build_registry(s), script)
    try:
        yield o, script
    finally:
        await o.close()


async def test_status_reports_tokens_and_cost_per_step_and_task(
    llm_orch: tuple[Orchestrator, Script],
) -> None:
    orch, script = llm_orch
    task = await orch.submit(plan())
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED, result.task.error
    assert result.outputs["de"]["translation"] == "Gartenmöbel 25 % günstiger."
    assert "Garden furniture is 25% off" in script.prompts[1]  # the draft reached summarize
    steps = {s.step_id: s for s in result.steps}
    for sid in ("draft", "short", "de"):
        usage = steps[sid].llm
        assert usage is not None
        assert usage.calls == 1
        assert usage.input_tokens > 0
        assert steps[sid].cost == pytest.approx(
            (usage.input_tokens * 1 + usage.output_tokens * 4) / 1e6
        )
    assert result.llm.calls == 3
    assert result.llm.tokens == sum(s.llm.tokens for s in steps.values() if s.llm)
    assert result.task.total_cost == pytest.approx(result.llm.cost)
    calls = orch.store.llm_calls(task.task_id)
    assert [(c.step_id, c.model, c.purpose) for c in calls] == [
        ("draft", "paid", "writer"),
        ("short", "paid", "writer"),
        ("de", "paid", "writer"),
    ]


async def test_a_spent_budget_stops_the_task_cleanly(settings: Settings) -> None:
    s = paid_settings(settings, task_budget_tokens=40)
    script = scripted(answers)
    orch = await orchestrator(s, build_registry(s), script)
    try:
        task = await orch.submit(plan())
        result = await orch.wait(task.task_id, timeout=60)
    finally:
        await orch.close()
    steps = {st.step_id: st for st in result.steps}
    assert result.task.status is TaskStatus.FAILED
    assert "budget" in (result.task.error or "")
    assert steps["draft"].status is StepStatus.SUCCEEDED  # its call crossed the line
    assert steps["short"].status is StepStatus.SKIPPED
    assert steps["de"].status is StepStatus.SKIPPED
    assert len(script.prompts) == 1  # nothing more was asked once the budget was spent


async def test_invalid_model_output_fails_only_that_step(
    settings: Settings, tmp_path: Path
) -> None:
    s = paid_settings(settings, repair_attempts=1)
    script = scripted("this is not JSON")
    orch = await orchestrator(s, build_registry(s), script)
    try:
        p = ExecutionPlan.model_validate(
            {
                "name": "two",
                "steps": [
                    {
                        "id": "draft",
                        "tool": "write_content",
                        "inputs": {"kind": "email", "brief": "hello"},
                    },
                    {"id": "other", "tool": "add", "inputs": {"a": 1, "b": 2}},
                ],
            }
        )
        task = await orch.submit(p)
        result = await orch.wait(task.task_id, timeout=60)
    finally:
        await orch.close()
    steps = {st.step_id: st for st in result.steps}
    assert steps["draft"].status is StepStatus.FAILED
    assert "writer: model 'paid' gave output that does not match _Draft" in (
        steps["draft"].error or ""
    )
    assert steps["other"].status is StepStatus.SUCCEEDED
    assert result.llm.failed_calls == 1


async def test_planner_remembers_successful_requests(
    llm_orch: tuple[Orchestrator, Script],
) -> None:
    orch, _ = llm_orch
    docs = orch.settings.workspace / "docs"
    docs.mkdir(parents=True)
    (docs / "contract.md").write_text("The contract runs for 24 months with 25% off furniture.")
    task, plan = await orch.process_request(
        "Summarize docs/contract.md in 20 words", "ana", auto_approve=True
    )
    assert [s.tool for s in plan.steps] == ["summarize"]
    result = await orch.wait(task.task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert result.llm.calls == 3  # planning counts for the task it planned; then the judge
    again = await orch.plan("Summarize docs/contract.md in 30 words")
    assert any(f"task {task.task_id}" in r for r in again.reasoning)
    assert any(r.startswith(f"reused the plan of task {task.task_id}") for r in again.reasoning)
    assert again.step("summary").inputs["max_words"] == 30  # adapted to the new request
