"""The hybrid planner with scripted models: stages, repairs, clarification, memory, MCP tools."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError

from intelligent_orchestrator.domain.models import ExecutionPlan, Requirements, WorkflowStep
from intelligent_orchestrator.errors import WorkflowValidationError
from intelligent_orchestrator.llm import ModelGateway
from intelligent_orchestrator.orchestrator import default_registry
from intelligent_orchestrator.planning import validate_plan
from intelligent_orchestrator.planning.planner import Planner, Recollection, repair, word_overlap
from intelligent_orchestrator.settings import LlmSettings, ModelConfig, Settings
from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import ToolContext, tool
from tests.support.models import Script, scripted

EVAL_WORKSPACE = Path(__file__).parents[2] / "evals" / "planning" / "workspace"
SLOTS = {"intent": "Announce the spring sale", "topic": "spring sale", "audience": "", "tone": ""}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(
        home=tmp_path / "home",
        models={
            "strong": ModelConfig(
                provider="openai",
                model="big",
                base_url="http://127.0.0.1:9/v1",
                plans_whole_dag=True,
            )
        },
        llm=LlmSettings(repair_attempts=1, retry_backoff_seconds=0),
    )
    shutil.copytree(EVAL_WORKSPACE, s.workspace)
    return s


def planner(
    settings: Settings, script: Script, registry: ToolRegistry | None = None, **kw: Any
) -> Planner:
    models = {"local": script.model, "strong": script.model}
    gateway = ModelGateway(settings, models=models)
    return Planner(
        registry or default_registry(settings), gateway, workspace=settings.workspace, **kw
    )


def deps(plan: ExecutionPlan) -> dict[str, set[str]]:
    from intelligent_orchestrator.planning.validate import step_dependencies

    return {s.id: step_dependencies(s) for s in plan.steps}


async def test_blog_with_teaser_has_parallel_branches_and_web_checks(settings: Settings) -> None:
    script = scripted(SLOTS)
    plan = await planner(settings, script).plan(
        "Write a blog post about our spring sale with a LinkedIn teaser"
    )
    tools = {s.id: s.tool for s in plan.steps}
    assert tools == {
        "research": "research",  # the knowledge base has a document on the spring sale
        "write_blog": "write_content",
        "qa_blog": "qa_review",
        "seo_blog": "seo_optimize",
        "write_linkedin": "write_content",
    }
    d = deps(plan)
    assert d["qa_blog"] == d["seo_blog"] == {"write_blog"}  # parallel checks after writing
    assert d["write_linkedin"] == {"write_blog", "research"}  # the teaser reads the article
    assert d["write_blog"] == {"research"}
    assert plan.intent == "Announce the spring sale"
    assert plan.step("write_blog").inputs["kind"] == "blog_post"
    assert plan.step("write_blog").instructions == "Announce the spring sale"
    assert plan.requirements is not None
    assert plan.requirements.channels == ["blog", "linkedin"]
    assert any(r.startswith("candidate tools: write_content") for r in plan.reasoning)
    assert plan.estimated_duration_seconds == 8 + 12 + 12  # research, article, then teaser
    assert plan.clarification is None
    assert "Request: Write a blog post" in script.prompts[0]
    validate_plan(plan, default_registry(settings))


async def test_data_request_links_table_metrics_and_chart(settings: Settings) -> None:
    plan = await planner(settings, scripted(SLOTS)).plan(
        "Calculate the ROI of marketing spend for each region from data/sales.csv and chart it"
    )
    steps = {s.id: s for s in plan.steps}
    assert steps["data"].inputs["tables"] == {"data": "data/sales.csv"}
    assert 'GROUP BY "region"' in steps["data"].inputs["sql"]
    assert steps["metrics"].inputs["columns"] == {"period": "region"}
    assert steps["chart"].inputs["rows"] == "${steps.metrics.output.periods}"
    assert steps["chart"].inputs["y"] == "roi_pct"


async def test_sending_uses_the_translation_and_only_the_given_recipient(
    settings: Settings,
) -> None:
    plan = await planner(settings, scripted(SLOTS)).plan(
        "Write a newsletter about Q3 in German and send it to team@acme.com"
    )
    send = plan.step("send")
    assert send.inputs["to"] == ["team@acme.com"]
    assert send.inputs["body"] == "${steps.translate_german.output.translation}"


async def test_a_failing_model_still_gives_a_plan(settings: Settings) -> None:
    script = scripted(ModelHTTPError(503, "local", body="down"))
    plan = await planner(settings, script).plan("Summarize docs/contract.md in 80 words")
    assert [s.tool for s in plan.steps] == ["summarize"]
    assert plan.step("summary").inputs == {"path": "docs/contract.md", "max_words": 80}
    assert any("model unavailable" in r for r in plan.reasoning)


async def test_malformed_model_output_is_not_fatal(settings: Settings) -> None:
    plan = await planner(settings, scripted("{not json")).plan(
        "Translate knowledge/returns.md into French"
    )
    assert [s.tool for s in plan.steps] == ["read_file", "translate"]


@pytest.mark.parametrize(
    ("request_text", "asks"),
    [
        ("Book me a flight to Berlin", "No available tool can book"),
        ("Help", "What should be produced?"),
    ],
)
async def test_impossible_or_vague_requests_get_a_question(
    settings: Settings, request_text: str, asks: str
) -> None:
    script = scripted(SLOTS)
    plan = await planner(settings, script).plan(request_text)
    assert plan.steps == []
    assert plan.clarification is not None
    assert asks in plan.clarification
    assert script.prompts == []  # nothing to ask the model
    with pytest.raises(WorkflowValidationError, match="needs clarification"):
        validate_plan(plan, default_registry(settings))


def test_repair_removes_unasked_side_effects_unknown_tools_and_dangling_steps(
    settings: Settings,
) -> None:
    registry = default_registry(settings)
    steps = [
        WorkflowStep(id="w", tool="write_content", inputs={"kind": "email", "brief": "x"}),
        WorkflowStep(id="w2", tool="write_content", inputs={"kind": "email", "brief": "x"}),
        WorkflowStep(id="magic", tool="teleport", inputs={}),
        WorkflowStep(id="after", tool="summarize", inputs={"text": "${steps.magic.output.text}"}),
        WorkflowStep(
            id="mail",
            tool="send_email",
            inputs={"to": ["a@b.c"], "subject": "s", "body": "${steps.w.output.body}"},
        ),
        WorkflowStep(
            id="file", tool="write_file", inputs={"path": "reports/x.md", "content": "hi"}
        ),
        WorkflowStep(id="q", tool="query_data", inputs={"sql": "SELECT 1"}),
    ]
    fixed, notes = repair(steps, Requirements(draft_only=True), registry)
    assert [s.id for s in fixed] == ["w", "file"]
    assert fixed[1].inputs["path"] == "drafts/x.md"
    text = "\n".join(notes)
    for part in (
        "unknown tool 'teleport'",
        "send_email was not asked for",
        "same call",
        "'after'",
        "nothing uses its output",
    ):
        assert part in text


async def test_a_capable_model_proposes_the_dag_and_it_is_checked(settings: Settings) -> None:
    proposal = {
        "steps": [
            {"id": "draft", "tool": "write_content", "inputs": {"kind": "email", "brief": "sale"}},
            {
                "id": "mail",
                "tool": "send_email",
                "inputs": {
                    "to": ["x@evil.example"],
                    "subject": "s",
                    "body": "${steps.draft.output.body}",
                },
            },
        ],
        "reasoning": ["one email"],
    }
    script = scripted(SLOTS, proposal)
    plan = await planner(settings, script).plan("Draft an email about the sale", model="strong")
    assert [s.tool for s in plan.steps] == ["write_content"]  # the unasked send was removed
    assert "plan proposed by the model and validated" in plan.reasoning
    assert any("send_email was not asked for" in r for r in plan.reasoning)


async def test_an_invalid_proposal_falls_back_to_the_composed_plan(settings: Settings) -> None:
    cyclic = {
        "steps": [
            {"id": "a", "tool": "summarize", "inputs": {"text": "${steps.b.output.summary}"}},
            {"id": "b", "tool": "summarize", "inputs": {"text": "${steps.a.output.summary}"}},
        ]
    }
    plan = await planner(settings, scripted(SLOTS, cyclic)).plan(
        "Summarize docs/contract.md", model="strong"
    )
    assert [s.tool for s in plan.steps] == ["summarize"]
    assert any("composed plan kept" in r for r in plan.reasoning)


async def test_memory_of_similar_requests_is_in_the_reasoning(settings: Settings) -> None:
    def memory(request: str) -> list[Recollection]:
        return [
            Recollection(
                task_id="t0",
                request="Write a blog post about the winter sale",
                tools=["write_content", "qa_review"],
                similarity=0.5,
            )
        ]

    plan = await planner(settings, scripted(SLOTS), memory=memory).plan(
        "Write a blog post about the spring sale"
    )
    assert any(
        "task t0 'Write a blog post about the winter sale'" in r and "similarity 0.50" in r
        for r in plan.reasoning
    )
    assert not any("reused" in r for r in plan.reasoning)  # too different to reuse


async def test_a_very_similar_successful_plan_is_reused_and_adapted(settings: Settings) -> None:
    request = "Write a LinkedIn post about our Berlin office opening"
    p = planner(settings, scripted(SLOTS))
    past = await p.plan(request)
    # A person had tuned the past plan: a banned phrase check after writing.
    past.steps.append(
        WorkflowStep(
            id="check",
            tool="qa_review",
            inputs={"text": "${steps.write_linkedin.output.body}", "banned_phrases": ["synergy"]},
        )
    )

    def memory(r: str) -> list[Recollection]:
        return [
            Recollection(
                task_id="t1",
                request=request,
                tools=[s.tool for s in past.steps],
                similarity=word_overlap(r, request),
                plan=past.model_dump(mode="json"),
            )
        ]

    slots = {**SLOTS, "intent": "Announce the Hamburg office"}
    plan = await planner(settings, scripted(slots), memory=memory).plan(
        "Write a LinkedIn post about our Hamburg office opening"
    )
    assert [s.id for s in plan.steps] == ["write_linkedin", "check"]
    assert plan.step("check").inputs["banned_phrases"] == ["synergy"]
    assert (
        plan.step("write_linkedin").inputs["brief"]
        == "Write a LinkedIn post about our Hamburg office opening"
    )
    assert plan.step("write_linkedin").instructions == "Announce the Hamburg office"
    assert any(r.startswith("reused the plan of task t1") for r in plan.reasoning)
    # Asking for something else (a translation too) is not the same plan.
    other = await planner(settings, scripted(slots), memory=memory).plan(
        "Write a LinkedIn post about our Hamburg office opening in German"
    )
    assert "check" not in [s.id for s in other.steps]


async def test_an_mcp_tool_is_a_candidate_and_can_be_planned_alone(settings: Settings) -> None:
    @tool("clock_get_current_time", category="time", source="mcp:clock")
    async def current_time(ctx: ToolContext, timezone: str) -> dict[str, str]:
        """Get the current time in a given IANA timezone."""
        return {"time": "12:00"}

    registry = default_registry(settings)
    registry.register(current_time)
    script = scripted({"timezone": "Asia/Tokyo"})
    p = planner(settings, script, registry=registry)
    assert (
        p.candidates("what is the current time in Tokyo timezone")[0].tool_id
        == "clock_get_current_time"
    )
    plan = await p.plan("What is the current time in the Tokyo timezone?")
    assert [(s.tool, s.inputs) for s in plan.steps] == [
        ("clock_get_current_time", {"timezone": "Asia/Tokyo"})
    ]
    assert any("mcp:clock" in r for r in plan.reasoning)


async def test_concurrent_plans_record_their_calls_against_their_own_tasks(
    settings: Settings,
) -> None:
    import asyncio
    import json

    from intelligent_orchestrator.domain.models import LlmCall
    from intelligent_orchestrator.llm import CallScope

    calls: list[LlmCall] = []

    async def sink(call: LlmCall) -> None:
        calls.append(call)

    def answer(prompt: str) -> dict:  # slots, then the whole-DAG proposal (the draft shown)
        if "A draft plan:" in prompt:
            return {"steps": json.loads(prompt.split("A draft plan:\n", 1)[1])}
        return SLOTS

    script = scripted(answer, delay=0.05)  # both plans' calls are in flight at once
    gateway = ModelGateway(settings, models={"strong": script.model}, sink=sink)
    p = Planner(default_registry(settings), gateway, workspace=settings.workspace)
    await asyncio.gather(
        p.plan(
            "Summarize docs/contract.md",
            model="strong",
            scope=CallScope(task_id="A", step_id="plan"),
        ),
        p.plan(
            "Write a LinkedIn post about our office",
            model="strong",
            scope=CallScope(task_id="B", step_id="plan"),
        ),
    )
    assert sorted(c.task_id for c in calls) == ["A", "A", "B", "B"]
    assert {c.step_id for c in calls} == {"plan"}
