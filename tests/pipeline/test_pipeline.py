"""The request pipeline with scripted models: assess, refine, format, learn, review, act.

Every test runs on SQLite and on Postgres (the ``settings`` fixture)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import (
    ApprovalStatus,
    ExecutionPlan,
    PipelinePhase,
    StepStatus,
    TaskStatus,
)
from intelligent_orchestrator.errors import ConflictError, InvalidEditError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import QualitySettings, Settings
from tests.conftest import build_registry
from tests.engine.test_llm_in_tasks import paid_settings
from tests.support.models import Script, scripted
from tests.support.pipeline import (
    GOOD,
    POST,
    POST_FIXED,
    REQUEST,
    Model,
    request_plan,
    verdict,
)
from tests.support.procs import until


@dataclass
class Harness:
    orch: Orchestrator
    model: Model
    script: Script

    async def start(self, plan: ExecutionPlan | None = None, **kw: Any) -> str:
        task = await self.orch.submit(plan or request_plan(), request=REQUEST, **kw)
        await self.orch.wait(task.task_id, timeout=60)
        return task.task_id

    def instructions_of(self, marker: str) -> list[str]:
        return [
            i or ""
            for p, i in zip(self.script.prompts, self.script.instructions, strict=True)
            if marker in p
        ]


@pytest.fixture
async def make(
    settings: Settings,
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Orchestrator] = []

    async def build(model: Model | None = None, **quality: Any) -> Harness:
        s = paid_settings(settings)
        s = s.model_copy(update={"quality": QualitySettings(**quality)})
        m = model or Model()
        script = scripted(m)
        o = Orchestrator(s, registry=build_registry(s), models={"paid": script.model})
        await o.start_engine(kind="test", listen=False)
        made.append(o)
        return Harness(o, m, script)

    yield build
    for o in made:
        await o.close()


def published(settings: Settings) -> list[Path]:
    return sorted((settings.home / "published").rglob("*.md"))


async def test_pass_first_time_waits_for_review_then_publishes_once(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make()
    task_id = await h.start()
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL
    assert task.phase is PipelinePhase.APPROVAL
    assert task.round == 0
    assert not task.needs_human
    review = await h.orch.review(task_id)
    assert review.assessment is not None
    assert review.assessment.passed
    assert {a.deliverable for a in review.assessment.deliverables} == {"blog", "linkedin"}
    assert review.assessment.overall_score == 1.0
    assert [s.id for s in review.actions] == ["publish_blog"]
    variants = {v.key: v for v in review.variants}
    assert set(variants) == {"blog", "linkedin"}
    assert variants["blog"].html
    assert "<h1>" in variants["blog"].html
    assert "#SpringSale" in variants["linkedin"].text
    for path in variants["blog"].artifacts:
        assert (settings.workspace / path).is_file()
    record = await h.orch.execution_record(task_id)
    assert record is not None
    assert record.outcome == "awaiting_approval"
    assert record.quality[0]["score"] == 1.0
    assert record.refinements == 0
    assert published(settings) == []  # nothing goes out before the review

    await h.orch.approve(task_id, comment="good", decided_by="ana")
    result = await h.orch.wait(task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    assert result.task.phase is PipelinePhase.DONE
    files = published(settings)
    assert len(files) == 1
    assert "Our spring sale starts on Monday" in files[0].read_text()
    record = await h.orch.execution_record(task_id)
    assert record is not None
    assert record.outcome == "succeeded"
    assert record.approval == "approved"
    assert "publish_blog" in record.receipts
    assert record.tool_sequence[-1] == "publish_post"
    assert {"execute", "assess", "format", "learn", "discover"} - set(record.phase_ms) == {
        "discover"
    }
    assert h.model.calls == {
        "write_blog": 1,
        "write_linkedin": 1,
        "judge_blog": 1,
        "judge_linkedin": 1,
    }


async def test_refinement_reruns_only_the_faulty_branch_with_the_issues(
    make: Callable[..., Any],
) -> None:
    h = await make(Model(linkedin_verdicts=[verdict(1), GOOD], linkedin_drafts=[POST, POST_FIXED]))
    task_id = await h.start(request_plan(publish=False))
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL
    assert task.round == 1
    assert not task.needs_human
    assert h.model.calls["write_blog"] == 1  # the good branch kept its output
    assert h.model.calls["write_linkedin"] == 2
    # the second LinkedIn draft was asked to fix what the judge found
    second = h.instructions_of("social media post")[1]
    assert "the hook is weak" in second
    assert "Open with the reader's benefit." in second
    assert "reviewer" not in h.instructions_of("blog post")[0]
    history = await h.orch.review(task_id)
    assert [(a["round"], a["passed"]) for a in history.attempts] == [(0, False), (1, True)]
    assert history.attempts[0]["score"] < 0.75 <= history.attempts[1]["score"]
    kept = h.orch.store.step_history(task_id)
    assert [(r, run.step_id) for r, run in kept] == [(0, "write_linkedin")]
    assert kept[0][1].output["body"] == POST["body"]
    linkedin = next(v for v in history.variants if v.key == "linkedin")
    assert "Your terrace deserves better chairs." in linkedin.text


@pytest.mark.parametrize(
    ("verdicts", "rounds", "why"),
    [
        ([verdict(1), verdict(2), verdict(2)], 2, "after 2 refinement"),
        ([verdict(1), verdict(1)], 1, "did not improve"),
    ],
)
async def test_still_failing_escalates_to_a_person_even_with_auto_approve(
    make: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    verdicts: list[Any],
    rounds: int,
    why: str,
) -> None:
    h = await make(Model(linkedin_verdicts=verdicts), max_retries=2)
    caplog.set_level("INFO")
    task_id = await h.start(auto_approve=True)
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL  # never silently done
    assert task.needs_human
    assert task.round == rounds
    assert h.model.calls["write_linkedin"] == rounds + 1
    assert h.model.calls["write_blog"] == 1
    review = await h.orch.review(task_id)
    assert review.gate == f"@review:{rounds}"
    assert review.needs_human
    assert len(review.attempts) == rounds + 1
    assert any(why in r.getMessage() for r in caplog.records)
    record = await h.orch.execution_record(task_id)
    assert record is not None
    assert record.needs_human
    assert record.refinements == rounds


async def test_a_judge_that_fails_escalates_and_never_passes(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make(Model(linkedin_verdicts=["this is not JSON"]))
    task_id = await h.start(auto_approve=True)
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL
    assert task.needs_human
    assert task.round == 0  # no refinement against a broken judge
    review = await h.orch.review(task_id)
    assert review.assessment is not None
    assert not review.assessment.passed
    assert review.assessment.judge_error
    assert "LlmOutputError" in review.assessment.judge_error
    failed = [c for c in h.orch.store.llm_calls(task_id) if c.step_id == "@assess" and c.error]
    assert failed  # the failed judge calls are recorded
    assert published(settings) == []


async def test_approve_with_edits_publishes_the_edited_text_once(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make()
    task_id = await h.start()
    blog = next(v for v in (await h.orch.review(task_id)).variants if v.key == "blog")
    edited = blog.text.replace("Come early", "Come early on Monday")
    await h.orch.approve(task_id, decided_by="ana", edits={"blog": {"text": edited}})
    result = await h.orch.wait(task_id, timeout=60)
    assert result.task.status is TaskStatus.SUCCEEDED
    files = published(settings)
    assert len(files) == 1
    assert "Come early on Monday" in files[0].read_text()
    revisions = h.orch.store.variants(task_id, all_revisions=True)
    blog_revs = sorted((v.revision, v.edited_by) for v in revisions if v.key == "blog")
    assert blog_revs == [(0, None), (1, "ana")]
    diff = next(v.diff for v in revisions if v.key == "blog" and v.revision == 1)
    assert diff is not None
    assert "+" in diff
    assert "Come early on Monday" in diff
    # the downloadable files carry the approved text too, and their rows match them
    page = settings.workspace / "outputs" / task_id / "blog.html"
    assert "Come early on Monday" in page.read_text()
    rows = {a.path: a for a in h.orch.store.artifacts(task_id)}
    row = rows[f"outputs/{task_id}/blog.html"]
    assert row.sha256 == hashlib.sha256(page.read_bytes()).hexdigest()
    assert (
        "Come early on Monday"
        not in (settings.workspace / "outputs" / task_id / "linkedin.txt").read_text()
    )
    # approving again is refused, and nothing is published twice
    with pytest.raises(ConflictError):
        await h.orch.approve(task_id)
    assert len(published(settings)) == 1


async def test_edits_that_break_limits_or_name_no_variant_are_refused(
    make: Callable[..., Any],
) -> None:
    h = await make()
    task_id = await h.start()
    with pytest.raises(InvalidEditError, match="no variant twitter"):
        await h.orch.approve(task_id, edits={"twitter": {"text": "hi"}})
    with pytest.raises(InvalidEditError, match="linkedin"):
        await h.orch.approve(
            task_id, edits={"linkedin": {"text": "word " * 700}, "blog": {"text": "# T\n\nok"}}
        )
    revisions = h.orch.store.variants(task_id, all_revisions=True)
    assert all(v.revision == 0 for v in revisions)  # a refused edit stores nothing
    assert (await h.orch.get_task(task_id)).status is TaskStatus.AWAITING_APPROVAL


async def test_reject_stores_the_feedback_and_publishes_nothing(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make()
    task_id = await h.start()
    await h.orch.reject(task_id, comment="wrong dates", decided_by="ana")
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.REJECTED
    assert h.orch.store.feedback(task_id)[0]["text"] == "wrong dates"
    record = await h.orch.execution_record(task_id)
    assert record is not None
    assert record.outcome == "rejected"
    assert record.approval == "rejected"
    assert record.feedback == ["wrong dates"]
    assert published(settings) == []
    runs = {r.step_id: r.status for r in h.orch.store.step_runs(task_id)}
    assert "publish_blog" not in runs or runs["publish_blog"] is not StepStatus.SUCCEEDED


async def test_revise_reruns_the_chosen_deliverable_with_the_feedback_then_returns(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make(Model(linkedin_drafts=[POST, POST_FIXED]))
    task_id = await h.start()
    await h.orch.revise(
        task_id, feedback="start with the reader's terrace", channels=["linkedin"], decided_by="bo"
    )
    result = await h.orch.wait(task_id, timeout=60)
    assert result.task.status is TaskStatus.AWAITING_APPROVAL
    assert result.task.round == 1
    assert result.task.phase is PipelinePhase.APPROVAL
    assert h.model.calls == {
        "write_blog": 1,
        "write_linkedin": 2,
        "judge_blog": 2,  # every deliverable is assessed again
        "judge_linkedin": 2,
    }
    assert "start with the reader's terrace" in h.instructions_of("social media post")[1]
    review = await h.orch.review(task_id)
    assert [a["trigger"] for a in review.attempts] == ["initial", "human"]
    assert review.gate == "@review:1"
    assert h.orch.store.feedback(task_id)[0]["kind"] == "revision"
    with pytest.raises(InvalidEditError, match="no deliverable for email"):
        await h.orch.revise(task_id, feedback="x", channels=["email"])
    await h.orch.approve(task_id)
    assert (await h.orch.wait(task_id, timeout=60)).task.status is TaskStatus.SUCCEEDED
    assert len(published(settings)) == 1
    record = await h.orch.execution_record(task_id)
    assert record is not None
    assert [q["trigger"] for q in record.quality] == ["initial", "human"]
    assert record.feedback == ["start with the reader's terrace"]


async def test_workflow_files_without_requirements_skip_the_pipeline(
    make: Callable[..., Any],
) -> None:
    h = await make()
    plan = request_plan(publish=False).model_copy(update={"requirements": None})
    task_id = await h.start(plan)
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.phase is None
    assert "judge_blog" not in h.model.calls
    # and a workflow file may ask for it
    task_id = await h.start(plan.model_copy(update={"pipeline": True}))
    assert (await h.orch.get_task(task_id)).phase is PipelinePhase.APPROVAL


def test_the_judge_rubric_output_is_small() -> None:
    from intelligent_orchestrator.quality.judge import Verdict

    schema = Verdict.model_json_schema()
    assert schema["properties"]["problems"]["maxItems"] == 2
    assert json.dumps(schema).count('"maximum": 5') == 4


async def test_a_refinement_that_scores_lower_puts_the_better_result_up_for_review(
    make: Callable[..., Any],
) -> None:
    h = await make(
        Model(linkedin_verdicts=[verdict(2), verdict(1)], linkedin_drafts=[POST, POST_FIXED])
    )
    task_id = await h.start(request_plan(publish=False), auto_approve=True)
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL
    assert task.needs_human
    assert task.round == 2  # a fresh round: round numbers are never reused
    review = await h.orch.review(task_id)
    assert [(a["round"], a["trigger"]) for a in review.attempts] == [
        (0, "initial"),
        (1, "quality"),
        (2, "restored"),  # round 0's assessment, for round 0's result under review
    ]
    first, worse, restored = (a["score"] for a in review.attempts)
    assert worse < first == restored
    assert review.assessment is not None
    assert review.assessment.overall_score == first
    assert (await h.orch.get_task(task_id)).quality_score == first
    linkedin = next(v for v in review.variants if v.key == "linkedin")
    assert "Spring sale starts Monday!" in linkedin.text  # round 0's draft, not round 1's
    runs = {r.step_id: r for r in h.orch.store.step_runs(task_id)}
    assert runs["write_linkedin"].output["body"] == POST["body"]
    kept = [(r, run.output["body"]) for r, run in h.orch.store.step_history(task_id)]
    assert kept == [(1, POST_FIXED["body"])]  # the worse attempt is kept


async def test_a_refinement_that_fails_puts_the_previous_result_up_for_review(
    make: Callable[..., Any],
) -> None:
    h = await make(
        Model(linkedin_verdicts=[verdict(1)], linkedin_drafts=[POST, RuntimeError("model down")])
    )
    task_id = await h.start(request_plan(publish=False), auto_approve=True)
    task = await h.orch.get_task(task_id)
    assert task.status is TaskStatus.AWAITING_APPROVAL  # nothing lost, a person decides
    assert task.needs_human
    assert task.round == 2  # a fresh round: round numbers are never reused
    review = await h.orch.review(task_id)
    assert review.gate == "@review:2"
    linkedin = next(v for v in review.variants if v.key == "linkedin")
    assert "Spring sale starts Monday!" in linkedin.text  # the first draft, restored
    runs = {r.step_id: r for r in h.orch.store.step_runs(task_id)}
    assert runs["write_linkedin"].status is StepStatus.SUCCEEDED
    assert runs["write_linkedin"].output["body"] == POST["body"]
    failed = [(r, run.status) for r, run in h.orch.store.step_history(task_id)]
    assert failed == [(1, StepStatus.FAILED)]  # the failed attempt is kept


async def test_after_a_person_sends_a_result_back_auto_approve_no_longer_applies(
    make: Callable[..., Any], settings: Settings
) -> None:
    h = await make(
        Model(
            linkedin_verdicts=[verdict(1), verdict(1), GOOD],
            linkedin_drafts=[POST, POST, POST_FIXED],
        ),
        max_retries=1,
    )
    task_id = await h.start(auto_approve=True)
    task = await h.orch.get_task(task_id)
    assert task.needs_human  # escalated after one refinement that did not help
    await h.orch.revise(task_id, feedback="open with the terrace", channels=["linkedin"])
    result = await h.orch.wait(task_id, timeout=60)
    assert result.task.status is TaskStatus.AWAITING_APPROVAL  # the person sees it again
    assert not result.task.needs_human  # it passed this time
    assert published(settings) == []


async def test_a_draft_saved_in_a_refined_round_is_saved_again(
    make: Callable[..., Any], settings: Settings
) -> None:
    """write_file to drafts/ is a side effect inside the content: a refinement round must
    write the new text, not replay the first round's receipt."""
    h = await make(Model(linkedin_verdicts=[verdict(1), GOOD], linkedin_drafts=[POST, POST_FIXED]))
    plan = request_plan(publish=False)
    plan.steps.append(
        plan.steps[0].model_copy(
            update={
                "id": "save",
                "tool": "write_file",
                "inputs": {
                    "path": "drafts/linkedin.md",
                    "content": "${steps.write_linkedin.output.body}",
                },
            }
        )
    )
    task_id = await h.start(plan)
    assert (await h.orch.get_task(task_id)).round == 1
    saved = (settings.workspace / "drafts" / "linkedin.md").read_text()
    assert saved == POST_FIXED["body"]


async def test_two_edits_of_the_same_revision_conflict_instead_of_crashing(
    make: Callable[..., Any],
) -> None:
    h = await make()
    task_id = await h.start()
    blog = next(v for v in h.orch.store.variants(task_id) if v.key == "blog")
    edit = blog.model_copy(update={"revision": 1, "text": "# Mine", "edited_by": "ana"})
    h.orch.store.add_variant_revision(task_id, 0, edit)
    with pytest.raises(ConflictError, match="another edit of blog"):
        h.orch.store.add_variant_revision(task_id, 0, edit.model_copy(update={"text": "# Bo"}))
    kept = [v for v in h.orch.store.variants(task_id, all_revisions=True) if v.revision == 1]
    assert [v.text for v in kept] == ["# Mine"]
    # an approval carrying a conflicting edit is refused whole: nothing approved, nothing stored
    with pytest.raises(ConflictError, match="another edit of blog"):
        h.orch.store.approve_and_claim(
            task_id,
            comment="ok",
            decided_by="bo",
            revisions=[edit.model_copy(update={"text": "# Bo", "edited_by": "bo"})],
            round_=0,
        )
    assert [a.status for a in h.orch.store.approvals(task_id)] == [ApprovalStatus.PENDING]
    assert (await h.orch.get_task(task_id)).status is TaskStatus.AWAITING_APPROVAL
    assert len(h.orch.store.variants(task_id, all_revisions=True)) == len(kept) + 2
    with pytest.raises(ConflictError, match="changed since it was read"):
        h.orch.store.approve_and_claim(
            task_id, comment=None, decided_by="bo", revisions=[edit], round_=1
        )


async def test_a_pipeline_run_taken_over_while_judged_stores_nothing_of_its_own(
    make: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Fencing reaches the pipeline's own records: the task is claimed by another executor
    while the judge grades the draft (this process was taken for dead); this run stores no
    assessment, no variants, no execution record, and stops without failing the task."""
    caplog.set_level(logging.WARNING)
    claimed: list[str] = []

    class TakenOverWhileJudged(Model):
        def __call__(self, prompt: str) -> Any:
            if "Text to grade" in prompt and not claimed:
                (task,), _ = h.orch.store.list_tasks(status=TaskStatus.RUNNING)
                assert h.orch.store.claim_task(task.task_id, executor_id="other") is not None
                claimed.append(task.task_id)
            return super().__call__(prompt)

    h = await make(TakenOverWhileJudged())
    host = h.orch.host
    assert host is not None
    task = await h.orch.submit(request_plan(), request=REQUEST)
    await until(lambda: bool(claimed), timeout=60, what="the judge to be asked")
    await until(lambda: not host.runs_here(task.task_id), timeout=30, what="the run to stop")

    store = h.orch.store
    stored = store.get_task(task.task_id)
    assert stored.status is TaskStatus.RUNNING  # as the new holder found it
    assert stored.quality_score is None
    assert store.assessments(task.task_id) == []
    assert store.variants(task.task_id) == []
    assert store.execution_record(task.task_id) is None
    assert store.approvals(task.task_id) == []
    assert f"task {task.task_id} is held by another executor now" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
