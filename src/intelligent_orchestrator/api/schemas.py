"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, model_validator

from intelligent_orchestrator.domain.models import (
    Approval,
    ApprovalStatus,
    ChannelVariant,
    ExecutionPlan,
    ExecutionResult,
    QualityAssessment,
    Review,
    Task,
    TaskStatus,
    ToolSpecification,
    WorkflowStep,
)

MAX_WORKFLOW_CHARS = 1_000_000


class WorkflowSubmit(BaseModel):
    """A workflow document to validate and start as a task."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        min_length=1,
        max_length=MAX_WORKFLOW_CHARS,
        description="The workflow file's text (YAML or JSON).",
    )
    format: Literal["yaml", "json"] | None = Field(
        default=None,
        description="Format of `content`; detected when omitted ('{' or '[' means JSON).",
    )
    auto_approve: bool = Field(
        default=False, description="Approve every gate of this task without asking."
    )


class PlanRequest(BaseModel):
    """A plain-language request to plan (and, for /process, to start)."""

    model_config = ConfigDict(extra="forbid")

    request: str = Field(min_length=1, max_length=20_000, description="What you want done.")
    model: str | None = Field(default=None, description="A configured model for planning.")
    user_id: str | None = Field(default=None, max_length=200)
    business_metrics: dict[str, float] | None = Field(
        default=None, description="Metrics to relate this task's outcome to (kept with the plan)."
    )
    auto_approve: bool = Field(default=False, description="Approve every gate of the task.")


class ProcessAccepted(BaseModel):
    """A request planned and started."""

    task_id: str
    status: TaskStatus
    plan: ExecutionPlan


class TaskCreated(BaseModel):
    """A task accepted for execution."""

    task_id: str
    status: TaskStatus


class TaskStatusPublic(ExecutionResult):
    """A task with every step run, its approvals and the outputs of succeeded steps."""

    @computed_field(description="Output of each succeeded step, by step id.")
    @property
    def outputs(self) -> dict[str, Any]:
        return super().outputs

    @classmethod
    def from_result(cls, result: ExecutionResult) -> Self:
        return cls.model_validate(result, from_attributes=True)


class GatePublic(BaseModel):
    """One pending approval: what will run if it is approved."""

    approval_id: str
    step_id: str | None = Field(
        description="The gated step; null when the whole task waits before any step."
    )
    tool: str | None = None
    description: str | None = None
    inputs: dict[str, Any] | None = Field(
        default=None,
        description="The step's inputs with references resolved: exactly what the tool will get.",
    )
    requested_at: datetime
    expires_at: datetime | None = None


class ApprovalPublic(BaseModel):
    """What a task waits for: its pending gates, the plan, and earlier decisions."""

    task_id: str
    status: TaskStatus
    name: str
    pending: list[GatePublic]
    decided: list[Approval] = Field(description="Approvals that are no longer pending.")
    plan: ExecutionPlan
    phase: str | None = Field(default=None, description="A request's pipeline phase.")
    round: int = 0
    needs_human: bool = Field(
        default=False, description="Escalated: the result stayed below the quality threshold."
    )
    variants: list[ChannelVariant] = Field(
        default_factory=list, description="The result formatted per channel (newest revisions)."
    )
    assessment: QualityAssessment | None = None
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[WorkflowStep] = Field(
        default_factory=list, description="Steps that run once the result is approved."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_review(cls, result: ExecutionResult, review: Review) -> Self:
        base = cls.from_result(result)
        return base.model_copy(
            update={
                "phase": review.task.phase.value if review.task.phase else None,
                "round": review.round,
                "needs_human": review.needs_human,
                "variants": review.variants,
                "assessment": review.assessment,
                "attempts": review.attempts,
                "actions": review.actions,
                "metadata": review.metadata,
            }
        )

    @classmethod
    def from_result(cls, result: ExecutionResult) -> Self:
        runs = {r.step_id: r for r in result.steps}
        plan_steps = {s.id: s for s in result.task.plan.steps}
        pending: list[GatePublic] = []
        for a in result.approvals:
            if a.status is not ApprovalStatus.PENDING:
                continue
            run = runs.get(a.step_id) if a.step_id is not None else None
            step = plan_steps.get(a.step_id) if a.step_id is not None else None
            pending.append(
                GatePublic(
                    approval_id=a.approval_id,
                    step_id=a.step_id,
                    tool=run.tool if run is not None else (step.tool if step is not None else None),
                    description=step.description if step is not None else None,
                    inputs=run.inputs if run is not None else None,
                    requested_at=a.requested_at,
                    expires_at=a.expires_at,
                )
            )
        return cls(
            task_id=result.task.task_id,
            status=result.task.status,
            name=result.task.name,
            pending=pending,
            decided=[a for a in result.approvals if a.status is not ApprovalStatus.PENDING],
            plan=result.task.plan,
        )


MAX_EDIT_CHARS = 2_000_000


class ApprovalDecision(BaseModel):
    """A person's decision on a task waiting for approval."""

    model_config = ConfigDict(extra="forbid")

    approved: bool = Field(description="false: reject, or with `revise`, send back for changes.")
    revise: bool = Field(
        default=False,
        description="With approved=false: run the deliverables again with the feedback "
        "(a refinement round), then return to review.",
    )
    channels: list[str] | None = Field(
        default=None, description="Revise only these variants (default: all)."
    )
    edits: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="With approved=true: per variant key (e.g. linkedin), the fields changed "
        "(text, title, subject, preheader, meta_description, parts, hashtags). The edited "
        "text is what gets published; the diff is stored.",
    )
    feedback: str | None = Field(
        default=None,
        max_length=10_000,
        validation_alias=AliasChoices("feedback", "comment"),
        description="Why; required when rejecting (also accepted as `comment`).",
    )
    decided_by: str | None = Field(default=None, max_length=200)
    step_id: str | None = Field(
        default=None,
        description="Approve only this step's gate; rejecting always stops the whole task.",
    )

    @model_validator(mode="after")
    def _rejection_needs_feedback(self) -> Self:
        if self.approved and (self.revise or self.channels):
            raise ValueError("revise and channels go with approved=false")
        if not self.approved and self.edits:
            raise ValueError("edits go with approved=true")
        if self.channels and not self.revise:
            raise ValueError("channels go with revise=true")
        if self.edits and len(str(self.edits)) > MAX_EDIT_CHARS:
            raise ValueError(f"edits are limited to {MAX_EDIT_CHARS} characters in all")
        if not self.approved:
            if not (self.feedback and self.feedback.strip()):
                raise ValueError("feedback is required when rejecting")
            if self.step_id is not None:
                raise ValueError(
                    "step_id applies to approvals only: a rejection stops the whole task"
                )
        return self


class TasksPublic(BaseModel):
    """A page of tasks; ``count`` is the number of tasks matching the filter, all pages."""

    data: list[Task]
    count: int


class ToolsPublic(BaseModel):
    """Every registered tool."""

    data: list[ToolSpecification]
    count: int


class HealthPublic(BaseModel):
    """Liveness of this API process."""

    status: Literal["ok"] = "ok"
    working: bool = Field(description="Whether this process also runs queued tasks.")
    executor_id: str | None = Field(
        default=None, description="This process's executor id when working."
    )


class ErrorPublic(BaseModel):
    """The body of every error the orchestrator maps to an HTTP status."""

    detail: str
    error: str = Field(description="The error class, e.g. NotFoundError.")
    problems: list[str] | None = Field(
        default=None, description="Every problem of an invalid workflow."
    )
