"""The review as the CLI prints it."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from intelligent_orchestrator.cli.output import print_review
from intelligent_orchestrator.domain.models import (
    ExecutionPlan,
    QualityAssessment,
    QualityIssue,
    Review,
    Task,
    TaskStatus,
)


def review(assessment: QualityAssessment) -> Review:
    now = datetime.now(UTC)
    plan = ExecutionPlan.model_validate(
        {"name": "p", "steps": [{"id": "write_blog", "tool": "write_content"}]}
    )
    task = Task(
        task_id="t1",
        status=TaskStatus.AWAITING_APPROVAL,
        name="p",
        plan=plan,
        created_at=now,
        updated_at=now,
    )
    return Review(
        task=task, round=2, needs_human=True, gate="review", variants=[], assessment=assessment
    )


def printed(r: Review) -> str:
    console = Console(record=True, width=200)
    print_review(r, console=console)
    return console.export_text()


def words(text: str) -> str:
    return " ".join(text.split())  # (a table's title wraps to the table's width)


def test_a_finding_repeated_by_several_rounds_is_printed_once_with_its_count() -> None:
    typo = QualityIssue(
        dimension="tone",
        message="a typo",
        step_id="write_blog",
        deliverable="blog",
        severity="warning",
    )
    long = QualityIssue(
        dimension="completeness", message="158 words", deliverable="linkedin", severity="warning"
    )
    text = printed(
        review(
            QualityAssessment(
                overall_score=0.6,
                passed=False,
                dimensions={"tone": 0.25},
                issues=[typo] * 5 + [long],
            )
        )
    )
    assert text.count("a typo") == 1
    assert "warning blog tone: a typo (step write_blog) (5 times)" in text
    assert "warning linkedin completeness: 158 words\n" in text  # once: no count
    assert "below the mark" in text


def test_a_result_over_the_mark_that_did_not_pass_says_why() -> None:
    text = printed(
        review(QualityAssessment(overall_score=0.89, passed=False, dimensions={"tone": 0.25}))
    )
    assert (
        "quality 0.89 (pass mark 0.75) — not passed: a dimension or a deliverable scored too low"
        in words(text)
    )
    assert "below the mark" not in text.split("needs a person")[0]
