"""Assessment: checks and the judge become scores per deliverable and for the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import QUALITY_DIMENSIONS, ExecutionPlan, WorkflowStep
from intelligent_orchestrator.llm import BoundLlm, CallScope, ModelGateway
from intelligent_orchestrator.orchestrator import default_registry
from intelligent_orchestrator.quality import (
    Inputs,
    assess,
    descendants,
    find_deliverables,
    plan_parts,
)
from intelligent_orchestrator.quality.assess import ERROR_PENALTY, WARNING_PENALTY
from intelligent_orchestrator.quality.deliverables import split_plan
from intelligent_orchestrator.settings import (
    LlmSettings,
    ModelConfig,
    QualitySettings,
    Settings,
    ToolSettings,
)
from tests.support.models import Script, scripted

CLEAN = "Our garden chairs are made by hand from oak and last for many years."
INVENTED = "Our garden chairs sold 37% more this spring than the year before."
ENGLISH = (
    "We are proud to announce that our new garden furniture is available in all of our "
    "stores. It is made by hand and it lasts for years, and you can order it online."
)
ALL_ONES = {
    "accuracy": 1,
    "completeness": 1,
    "coherence": 1,
    "tone": 1,
    "problems": [{"dimension": "tone", "message": "'Dear valued customer' is stiff"}],
    "suggestion": " Write as you would speak to a neighbour. ",
}
GOOD = {
    "accuracy": 5,
    "completeness": 5,
    "coherence": 5,
    "tone": 5,
    "problems": [],
    "suggestion": "",
}
WEIGHTS = QualitySettings().weights


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", tools=ToolSettings(load_entry_points=False))


def step(step_id: str, tool: str, **inputs: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": tool, "inputs": inputs}


def make_plan(*steps: dict[str, Any], channels: list[str] | None = None) -> ExecutionPlan:
    return ExecutionPlan.model_validate(
        {
            "name": "request",
            "intent": "marketing",
            "steps": list(steps),
            "requirements": {"channels": channels or [], "tone": "friendly"},
        }
    )


def inputs(
    plan: ExecutionPlan,
    outputs: dict[str, Any],
    quality: QualitySettings | None = None,
) -> Inputs:
    return Inputs(
        plan=plan,
        outputs=outputs,
        deliverables=find_deliverables(plan, plan.steps),
        content=plan.steps,
        request="Write about our handmade garden chairs",
        workspace=None,
        settings=quality or QualitySettings(judge=False),
    )


def blog_and_linkedin(blog: str, linkedin: str, **linkedin_output: Any) -> Inputs:
    plan = make_plan(
        step("write_blog", "write_content", kind="blog_post", brief="garden chairs"),
        step("write_linkedin", "write_content", kind="social_post", brief="garden chairs"),
    )
    return inputs(
        plan,
        {
            "write_blog": {"title": "Chairs", "body": blog},
            "write_linkedin": {"title": "Chairs", "body": linkedin, **linkedin_output},
        },
    )


def one_error_overall(dimension: str) -> float:
    """The overall score of a deliverable with one error issue on ``dimension``."""
    return round(1 - WEIGHTS[dimension] * ERROR_PENALTY / sum(WEIGHTS.values()), 3)


def judge_llm(tmp_path: Path, *replies: Any) -> tuple[BoundLlm, Script]:
    """The judge as the pipeline binds it, answering with a scripted model named "paid"."""
    base = settings(tmp_path)
    s = base.model_copy(
        update={
            "models": {
                **base.models,
                "paid": ModelConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"),
            },
            "llm": LlmSettings.model_validate({"default_model": "paid"}),
        }
    )
    script = scripted(*replies)
    gateway = ModelGateway(s, models={"paid": script.model})
    return BoundLlm(gateway, CallScope(task_id=None, step_id="@assess")), script


def blog_plan() -> ExecutionPlan:
    return make_plan(step("write_blog", "write_content", kind="blog_post", brief="garden chairs"))


# Checks only --------------------------------------------------------------------------------


async def test_a_clean_deliverable_scores_one_and_passes() -> None:
    result = await assess(inputs(blog_plan(), {"write_blog": {"body": CLEAN}}), None)

    assert result.overall_score == 1.0
    assert result.dimensions == dict.fromkeys(QUALITY_DIMENSIONS, 1.0)
    assert result.passed is True
    assert result.issues == []
    assert result.judge_model is None
    assert result.judge_error is None
    [blog] = result.deliverables
    assert (blog.deliverable, blog.overall_score, blog.passed) == ("blog", 1.0, True)
    assert blog.checks == result.checks
    assert "figures" in result.checks


async def test_one_error_costs_its_dimension_the_error_penalty() -> None:
    result = await assess(inputs(blog_plan(), {"write_blog": {"body": INVENTED}}), None)

    [blog] = result.deliverables
    assert blog.dimensions == {
        "accuracy": 1 - ERROR_PENALTY,
        "completeness": 1.0,
        "coherence": 1.0,
        "tone": 1.0,
        "format": 1.0,
    }
    assert blog.overall_score == one_error_overall("accuracy")
    assert blog.overall_score >= blog.threshold
    # one error takes its dimension under the default min_dimension: the result fails
    assert blog.dimensions["accuracy"] < QualitySettings().min_dimension
    assert blog.passed is False
    assert [(i.check, i.step_id, i.deliverable) for i in blog.issues] == [
        ("figures", "write_blog", "blog")
    ]
    assert blog.step_scores == {"write_blog": 1 - ERROR_PENALTY}
    assert blog.suggestions == ["Use only figures from the data and sources; remove the others."]
    assert blog.evidence == {"accuracy": [f"figures: {blog.issues[0].message}"]}


async def test_a_warning_costs_the_warning_penalty_weighted_by_its_dimension() -> None:
    plan = make_plan(
        step("write_linkedin", "write_content", kind="social_post"), channels=["linkedin"]
    )
    long_post = "garden " * 430  # 3010 characters; LinkedIn takes 3000

    result = await assess(inputs(plan, {"write_linkedin": {"body": long_post}}), None)

    [post] = result.deliverables
    assert post.deliverable == "linkedin"
    assert [(i.check, i.severity) for i in post.issues] == [("channel_limit", "warning")]
    assert post.dimensions["format"] == round(1 - WARNING_PENALTY, 3)
    expected = 1 - WEIGHTS["format"] * WARNING_PENALTY / sum(WEIGHTS.values())
    assert post.overall_score == round(expected, 3)


async def test_custom_weights_drive_the_overall_score() -> None:
    quality = QualitySettings(judge=False, weights={"accuracy": 3.0, "format": 1.0})

    result = await assess(inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, quality), None)

    # Only the weighted dimensions count: (3 * (1 - ERROR_PENALTY) + 1 * 1.0) / 4
    assert result.overall_score == round((3 * (1 - ERROR_PENALTY) + 1.0) / 4, 3)
    assert result.passed is False


async def test_a_channel_threshold_applies_to_that_deliverable_only() -> None:
    inp = blog_and_linkedin(INVENTED, INVENTED)
    inp.settings = QualitySettings(judge=False, thresholds={"linkedin": 0.95}, min_dimension=0)

    result = await assess(inp, None)

    by_key = {a.deliverable: a for a in result.deliverables}
    assert {k: (a.overall_score, a.threshold, a.passed) for k, a in by_key.items()} == {
        "blog": (one_error_overall("accuracy"), 0.75, True),
        "linkedin": (one_error_overall("accuracy"), 0.95, False),
    }
    assert result.threshold == 0.95
    assert result.passed is False


async def test_an_intent_threshold_applies_when_the_channel_has_none() -> None:
    quality = QualitySettings(judge=False, thresholds={"marketing": 0.9})

    result = await assess(inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, quality), None)

    assert (result.threshold, result.passed) == (0.9, False)


async def test_min_dimension_fails_a_result_whose_overall_passes() -> None:
    lenient = QualitySettings(judge=False, min_dimension=0.3)
    strict = QualitySettings(judge=False, min_dimension=0.5)

    passes = await assess(inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, lenient), None)
    fails = await assess(inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, strict), None)

    assert passes.overall_score == fails.overall_score == one_error_overall("accuracy")
    assert fails.overall_score >= fails.threshold
    assert fails.dimensions["accuracy"] == 1 - ERROR_PENALTY
    assert (passes.passed, fails.passed) == (True, False)


async def test_the_task_is_as_good_as_its_weakest_deliverable() -> None:
    inp = blog_and_linkedin(CLEAN, f"{INVENTED} [3]", sources=[{"n": 1, "title": "Survey"}])

    result = await assess(inp, None)

    blog, social = result.deliverables
    assert (blog.deliverable, blog.overall_score, blog.passed) == ("blog", 1.0, True)
    # Two accuracy errors: the dimension hits 0, below min_dimension.
    assert social.deliverable == "linkedin"
    assert social.dimensions["accuracy"] == 0.0
    assert social.passed is False
    assert result.overall_score == min(blog.overall_score, social.overall_score)
    assert result.overall_score == social.overall_score
    assert result.dimensions == {
        d: min(blog.dimensions[d], social.dimensions[d]) for d in QUALITY_DIMENSIONS
    }
    assert result.passed is False
    assert result.deliverable is None
    assert [(i.check, i.step_id, i.deliverable) for i in result.issues] == [
        ("citations", "write_linkedin", "linkedin"),
        ("figures", "write_linkedin", "linkedin"),
    ]
    assert result.step_scores == {"write_linkedin": 0.0}


async def test_the_task_passes_only_when_every_deliverable_passes() -> None:
    result = await assess(blog_and_linkedin(CLEAN, CLEAN), None)

    assert [a.passed for a in result.deliverables] == [True, True]
    assert (result.overall_score, result.passed) == (1.0, True)


async def test_a_plan_without_deliverables_passes() -> None:
    plan = make_plan(step("look", "research", query="garden chairs"))

    result = await assess(inputs(plan, {"look": {"findings": []}}), None)

    assert (result.overall_score, result.passed, result.deliverables) == (1.0, True, [])


async def test_an_english_translation_points_at_the_translate_step() -> None:
    plan = make_plan(
        step("write_blog", "write_content", kind="blog_post"),
        step(
            "translate_de",
            "translate",
            text="${steps.write_blog.output.body}",
            target_language="German",
        ),
    )
    outputs = {"write_blog": {"body": ENGLISH}, "translate_de": {"translation": ENGLISH}}

    result = await assess(inputs(plan, outputs), None)

    blog, german = result.deliverables
    assert (blog.deliverable, blog.passed) == ("blog", True)
    assert german.deliverable == "blog:german"
    assert [(i.check, i.dimension, i.step_id) for i in german.issues] == [
        ("language", "completeness", "translate_de")
    ]
    assert german.suggestions == ["Write the whole text in German."]


async def test_research_before_the_writer_requires_citations() -> None:
    plan = make_plan(
        step("look", "research", query="garden chairs"),
        step("write_blog", "write_content", kind="blog_post", facts="${steps.look.output}"),
    )
    outputs = {
        "look": {"findings": ["oak lasts"], "sources": [{"n": 1, "url": "https://a.example"}]},
        "write_blog": {"body": CLEAN},
    }

    result = await assess(inputs(plan, outputs), None)

    assert [(i.check, i.message) for i in result.issues] == [
        ("citations", "the research findings are not cited: cite the sources used as [n]")
    ]


async def test_figures_of_an_ancestor_step_are_material() -> None:
    plan = make_plan(
        step("numbers", "summarize", text="sales table"),
        step("write_blog", "write_content", kind="blog_post", notes="${steps.numbers.output}"),
    )
    outputs = {"numbers": {"summary": "growth 0.37"}, "write_blog": {"body": INVENTED}}

    result = await assess(inputs(plan, outputs), None)

    assert result.issues == []


# The judge ----------------------------------------------------------------------------------


async def test_a_judge_verdict_of_all_ones_pulls_the_judged_dimensions_down(
    tmp_path: Path,
) -> None:
    llm, script = judge_llm(tmp_path, ALL_ONES)
    inp = inputs(blog_plan(), {"write_blog": {"body": CLEAN}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.dimensions == {
        "accuracy": 0.5,
        "completeness": 0.5,
        "coherence": 0.5,
        "tone": 0.5,
        "format": 1.0,
    }
    assert result.passed is False
    assert result.judge_model == "paid"
    assert result.judge_error is None
    assert [(i.check, i.dimension, i.severity, i.step_id, i.message) for i in result.issues] == [
        ("judge", "tone", "error", "write_blog", "'Dear valued customer' is stiff")
    ]
    assert result.suggestions == ["Write as you would speak to a neighbour."]
    assert result.deliverables[0].evidence["tone"] == ["judge: 1/5"]
    assert len(script.prompts) == 1
    assert "Channel: blog" in script.prompts[0]
    assert "Tone: friendly" in script.prompts[0]
    assert CLEAN in script.prompts[0]


async def test_the_judge_never_lifts_a_dimension_the_checks_lowered(tmp_path: Path) -> None:
    llm, _ = judge_llm(tmp_path, GOOD)
    inp = inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.dimensions["accuracy"] == 1 - ERROR_PENALTY
    assert result.dimensions["tone"] == 1.0


async def test_a_low_judge_score_averages_with_a_lowered_dimension(tmp_path: Path) -> None:
    llm, _ = judge_llm(tmp_path, ALL_ONES)
    inp = inputs(blog_plan(), {"write_blog": {"body": INVENTED}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.dimensions["accuracy"] == (1 - ERROR_PENALTY) / 2
    assert [i.check for i in result.issues] == ["figures", "judge"]


async def test_a_judge_problem_on_a_middling_dimension_is_a_warning(tmp_path: Path) -> None:
    verdict = {**GOOD, "coherence": 3, "problems": [{"dimension": "coherence", "message": "x"}]}
    llm, _ = judge_llm(tmp_path, verdict)
    inp = inputs(blog_plan(), {"write_blog": {"body": CLEAN}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.dimensions["coherence"] == 0.75  # (1.0 + 0.5) / 2
    assert [(i.check, i.severity, i.step_id) for i in result.issues] == [
        ("judge", "warning", "write_blog")
    ]
    assert result.passed is True


async def test_judge_problems_on_dimensions_it_rates_well_are_dropped(tmp_path: Path) -> None:
    """A small judge lists praise ("the grammar is correct") as problems."""
    verdict = {
        **GOOD,
        "coherence": 4,
        "problems": [{"dimension": "coherence", "message": "The grammar is correct."}],
    }
    llm, _ = judge_llm(tmp_path, verdict)
    inp = inputs(blog_plan(), {"write_blog": {"body": CLEAN}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.dimensions["coherence"] == 0.875  # (1.0 + 0.75) / 2
    assert result.issues == []


async def test_invalid_judge_output_never_passes(tmp_path: Path) -> None:
    llm, script = judge_llm(tmp_path, "this is not a verdict")
    inp = inputs(blog_plan(), {"write_blog": {"body": CLEAN}}, QualitySettings())

    result = await assess(inp, llm)

    assert result.overall_score == 1.0
    assert result.issues == []
    assert result.passed is False
    assert result.judge_error is not None
    assert result.judge_error.startswith("LlmOutputError: judge: model 'paid' gave output")
    assert result.deliverables[0].judge_error == result.judge_error
    assert result.deliverables[0].evidence["accuracy"] == [f"judge failed: {result.judge_error}"]
    assert result.judge_model is None
    assert len(script.prompts) >= 1


async def test_the_judge_is_not_asked_when_it_is_off(tmp_path: Path) -> None:
    llm, script = judge_llm(tmp_path, ALL_ONES)

    result = await assess(inputs(blog_plan(), {"write_blog": {"body": CLEAN}}), llm)

    assert (result.overall_score, result.passed, result.judge_model) == (1.0, True, None)
    assert script.prompts == []


# Deliverables and the plan split ------------------------------------------------------------


def test_actions_and_everything_downstream_wait_for_approval(tmp_path: Path) -> None:
    registry = default_registry(settings(tmp_path))
    plan = make_plan(
        step("look", "research", query="garden chairs"),
        step("write_blog", "write_content", kind="blog_post", facts="${steps.look.output}"),
        step("draft", "write_file", path="drafts/x.md", content="${steps.write_blog.output.body}"),
        step("save", "write_file", path="reports/x.md", content="${steps.write_blog.output.body}"),
        step("post", "publish_post", channel="blog", text="${steps.write_blog.output.body}"),
        step("recap", "summarize", text="${steps.post.output}"),
        step("mail", "send_email", to=["team@example.com"], body="${steps.recap.output.summary}"),
    )

    split, deliverables = plan_parts(plan, registry)

    assert [s.id for s in split.content] == ["look", "write_blog", "draft"]
    assert [s.id for s in split.actions] == ["save", "post", "recap", "mail"]
    assert split.content_ids == {"look", "write_blog", "draft"}
    assert [d.key for d in deliverables] == ["blog"]


def test_a_step_flag_overrides_the_tool_approval(tmp_path: Path) -> None:
    registry = default_registry(settings(tmp_path))
    plan = make_plan(
        step("write_blog", "write_content", kind="blog_post"),
        {**step("save", "write_file", path="reports/x.md"), "requires_approval": False},
        {
            **step("check", "summarize", text="${steps.write_blog.output.body}"),
            "requires_approval": True,
        },
    )

    split, _ = plan_parts(plan, registry)

    assert [s.id for s in split.actions] == ["check"]


def test_split_plan_follows_dependencies_declared_out_of_order() -> None:
    plan = make_plan(
        {**step("after", "summarize"), "depends_on": ["act"]},
        step("act", "publish_post"),
        step("write_blog", "write_content"),
    )

    split = split_plan(plan, lambda s: s.tool == "publish_post")

    assert [s.id for s in split.actions] == ["after", "act"]
    assert [s.id for s in split.content] == ["write_blog"]


def test_writer_ids_name_their_channel() -> None:
    plan = make_plan(
        step("write_linkedin", "write_content", kind="blog_post"),
        step("write_web", "write_content"),
        step("write_newsletter", "write_content"),
        step("write_something", "write_content", kind="email"),
    )

    assert [(d.step_id, d.key) for d in find_deliverables(plan, plan.steps)] == [
        ("write_linkedin", "linkedin"),
        ("write_web", "blog"),
        ("write_newsletter", "newsletter"),
        ("write_something", "email"),
    ]


def test_a_social_post_takes_the_single_social_channel_of_the_request() -> None:
    writer = step("draft", "write_content", kind="social_post")

    one = make_plan(writer, channels=["blog", "linkedin"])
    two = make_plan(writer, channels=["linkedin", "twitter"])

    assert [d.key for d in find_deliverables(one, one.steps)] == ["linkedin"]
    assert [d.key for d in find_deliverables(two, two.steps)] == ["social"]


def test_a_translation_takes_its_source_channel_and_language() -> None:
    plan = make_plan(
        step("write_blog", "write_content", kind="blog_post"),
        step("de", "translate", text="${steps.write_blog.output.body}", target_language="de"),
        step("fr", "translate", text="${steps.write_blog.output.body}", target_language="French"),
    )

    found = find_deliverables(plan, plan.steps)

    assert [(d.step_id, d.channel, d.language, d.source_step, d.key) for d in found] == [
        ("write_blog", "blog", None, None, "blog"),
        ("de", "blog", "de", "write_blog", "blog:de"),
        ("fr", "blog", "French", "write_blog", "blog:french"),
    ]


def test_a_summary_is_a_deliverable_only_when_nothing_is_written_from_it() -> None:
    plan = make_plan(
        step("notes", "summarize", text="long notes"),
        step("write_blog", "write_content", kind="blog_post", brief="${steps.notes.output}"),
        step("digest", "summarize", text="${steps.write_blog.output.body}"),
        step("recap", "summarize", text="other notes"),
    )

    found = find_deliverables(plan, plan.steps)

    assert [(d.step_id, d.key) for d in found] == [
        ("write_blog", "blog"),
        ("digest", "report"),
        ("recap", "report-2"),
    ]


def test_descendants_include_transitive_dependants() -> None:
    plan = make_plan(
        step("a", "research"),
        step("b", "summarize", text="${steps.a.output}"),
        {**step("c", "write_content"), "depends_on": ["b"]},
        step("d", "research"),
        step("e", "translate", text="${steps.c.output.body}"),
    )
    steps: list[WorkflowStep] = plan.steps

    assert descendants(steps, ["a"]) == {"a", "b", "c", "e"}
    assert descendants(steps, ["c"]) == {"c", "e"}
    assert descendants(steps, ["d"]) == {"d"}
    assert descendants(steps, []) == set()


@pytest.mark.parametrize("path", ["drafts/x.md", "drafts/sub/x.md"])
def test_write_file_under_drafts_is_content(tmp_path: Path, path: str) -> None:
    registry = default_registry(settings(tmp_path))
    plan = make_plan(step("save", "write_file", path=path, content="x"))

    split, _ = plan_parts(plan, registry)

    assert ([s.id for s in split.content], split.actions) == (["save"], [])


@pytest.mark.parametrize("path", ["reports/x.md", "drafts/../x.md", "x.md", "/drafts/x.md"])
def test_write_file_elsewhere_is_an_action(tmp_path: Path, path: str) -> None:
    registry = default_registry(settings(tmp_path))
    plan = make_plan(step("save", "write_file", path=path, content="x"))

    split, _ = plan_parts(plan, registry)

    assert ([s.id for s in split.actions], split.content) == (["save"], [])
