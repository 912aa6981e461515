"""Domain types, named as in the seed specification. Pure data: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .refs import find_references

TaskId = NewType("TaskId", str)
StepId = NewType("StepId", str)

SCHEMA_VERSION = 1
"""Version stamped on every JSON blob that is stored (plans, results, exports)."""

_STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NEEDS_CLARIFICATION = "needs_clarification"

    @property
    def finished(self) -> bool:
        return self in _FINISHED_TASK

    @property
    def settled(self) -> bool:
        """Nothing more happens without a person: finished, or parked for a decision (what
        a waiter waits for)."""
        return self in _FINISHED_TASK or self is TaskStatus.AWAITING_APPROVAL


_FINISHED_TASK = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.REJECTED,
        TaskStatus.CANCELLED,
        TaskStatus.EXPIRED,
        TaskStatus.NEEDS_CLARIFICATION,
    }
)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REVISE = "revise"  # a result sent back for another round, with the reviewer's feedback


class ToolSpecification(BaseModel):
    """How a tool is registered: identity, schemas, cost and behaviour."""

    model_config = ConfigDict(extra="forbid")

    tool_id: str = Field(
        pattern=r"^[a-z][a-z0-9_]*(?::[A-Za-z0-9_\-.]+)?$", description="Public snake_case id."
    )
    name: str
    description: str
    category: str = "general"
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    output_schema: dict[str, Any] = Field(default_factory=dict)
    estimated_cost: float = Field(default=0.0, ge=0)
    success_rate: float = Field(default=1.0, ge=0, le=1)
    source: str = "builtin"
    side_effects: bool = False
    requires_approval: bool | None = Field(
        default=None,
        description="None: approval is required exactly when the tool has side effects.",
    )
    timeout_seconds: float = Field(default=60.0, gt=0)

    @property
    def needs_approval(self) -> bool:
        return self.side_effects if self.requires_approval is None else self.requires_approval


class WorkflowStep(BaseModel):
    """One node of a plan: a tool call whose inputs may reference earlier outputs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_STEP_ID_PATTERN, description="Short id, unique in the plan.")
    tool: str = Field(description="Id of a registered tool.")
    inputs: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    description: str | None = None
    instructions: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0, le=20)
    requires_approval: bool | None = None

    @property
    def dependencies(self) -> set[str]:
        """Explicit ``depends_on`` plus every step the inputs reference."""
        return set(self.depends_on) | {r.step for r in find_references(self.inputs)}


class Requirements(BaseModel):
    """What a request asks for, as the planner understood it."""

    model_config = ConfigDict(extra="forbid")

    topic: str | None = None
    audience: str | None = None
    tone: str | None = None
    length_words: int | None = None
    channels: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list, description="Translations asked for.")
    files: list[str] = Field(default_factory=list, description="Workspace files named.")
    urls: list[str] = Field(default_factory=list)
    deadlines: list[str] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list, description="Capabilities the request needs.")
    side_effects: list[str] = Field(
        default_factory=list,
        description="Actions the user's own words ask for: send_email, publish, webhook, save.",
    )
    draft_only: bool = Field(default=False, description="The user said not to send/post yet.")
    constraints: list[str] = Field(default_factory=list)


class ExecutionPlan(BaseModel):
    """A workflow blueprint: a DAG of steps."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str = "workflow"
    description: str | None = None
    intent: str | None = None
    clarification: str | None = Field(
        default=None,
        description="A question for the user when the request cannot be planned (steps empty).",
    )
    pending: bool = Field(
        default=False,
        description=(
            "Not planned yet: a request's task holds this until its durable run has planned "
            "it (steps empty)."
        ),
    )
    steps: list[WorkflowStep] = Field(description="The steps; at least one.")
    requires_approval: bool = Field(
        default=False, description="Park the whole task for approval before any step runs."
    )
    max_concurrency: int | None = Field(default=None, ge=1, le=1000)
    pipeline: bool | None = Field(
        default=None,
        description=(
            "Assess, refine, format and review the result before its actions run. "
            "None: yes for plans made from a request, no for workflow files."
        ),
    )
    reasoning: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    requirements: Requirements | None = None
    warnings: list[str] = Field(default_factory=list)
    estimated_cost: float | None = Field(default=None, ge=0)
    estimated_duration_seconds: float | None = Field(
        default=None, ge=0, description="Critical path."
    )

    @property
    def uses_pipeline(self) -> bool:
        return self.pipeline if self.pipeline is not None else self.requirements is not None

    @field_validator("steps")
    @classmethod
    def _non_empty(cls, steps: list[WorkflowStep], info: ValidationInfo) -> list[WorkflowStep]:
        if not steps and not info.data.get("clarification") and not info.data.get("pending"):
            raise ValueError("a workflow needs at least one step")
        return steps

    @classmethod
    def for_request(cls, request: str, **metadata: Any) -> ExecutionPlan:
        """The placeholder a request's task starts with, until its run plans it."""
        return cls(
            name="request",
            description=request,
            pending=True,
            steps=[],
            metadata={k: v for k, v in metadata.items() if v is not None},
        )

    def step(self, step_id: str) -> WorkflowStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


class LlmCall(BaseModel):
    """One model call: which model, for what, what it cost (a row of ``llm_calls``)."""

    model: str
    purpose: str
    task_id: str | None = None
    step_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    error: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LlmUsage(BaseModel):
    """Model calls summed over a step or a task."""

    calls: int = 0
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class StepRun(BaseModel):
    """What happened to one step of one task."""

    task_id: str
    step_id: str
    tool: str
    status: StepStatus
    attempt: int = 0
    inputs: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    cost: float = 0.0
    llm: LlmUsage | None = None


class Approval(BaseModel):
    """A human decision point: the whole task (step_id None) or one step."""

    approval_id: str
    task_id: str
    step_id: str | None
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None


class Task(BaseModel):
    """One request or workflow run."""

    task_id: str
    status: TaskStatus
    name: str
    request: str | None = None
    user_id: str | None = None
    plan: ExecutionPlan
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    failed_step: str | None = None
    total_cost: float = 0.0
    auto_approve: bool = False
    phase: PipelinePhase | None = Field(default=None, description="Pipeline tasks only.")
    round: int = Field(default=0, description="Refinement rounds so far.")
    needs_human: bool = Field(default=False, description="Escalated: quality not reached.")
    quality_score: float | None = None


class ArtifactRef(BaseModel):
    """A file a step produced, relative to the workspace."""

    step_id: str
    path: str
    media_type: str
    size: int
    sha256: str


class ExecutionResult(BaseModel):
    """A task's full outcome: status, every step, approvals, artifacts and outputs."""

    task: Task
    steps: list[StepRun]
    approvals: list[Approval] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    llm: LlmUsage = Field(default_factory=LlmUsage, description="Model calls of the whole task.")

    @property
    def outputs(self) -> dict[str, Any]:
        return {s.step_id: s.output for s in self.steps if s.status is StepStatus.SUCCEEDED}


QUALITY_DIMENSIONS = ("accuracy", "completeness", "coherence", "tone", "format")
"""The dimensions every assessment scores, each 0-1."""


class Deliverable(BaseModel):
    """A step whose output is content for a person: a channel's text or a translation of it."""

    step_id: str
    channel: str = Field(description="blog, linkedin, twitter, email, newsletter, report, ...")
    language: str | None = Field(default=None, description="Set for translations.")
    source_step: str | None = Field(
        default=None, description="For a translation: the step whose text it translates."
    )

    @property
    def key(self) -> str:
        """How variants and assessments name it: the channel, with the language if any."""
        return self.channel if not self.language else f"{self.channel}:{self.language.lower()}"


class QualityIssue(BaseModel):
    """One problem found in a result, pointing at the step that caused it."""

    dimension: str = Field(description="One of accuracy, completeness, coherence, tone, format.")
    message: str
    step_id: str | None = Field(default=None, description="The step to re-run to fix it.")
    deliverable: str | None = Field(default=None, description="Deliverable key (channel).")
    check: str = Field(default="judge", description="The check that found it.")
    severity: Literal["error", "warning"] = "error"


class QualityAssessment(BaseModel):
    """Quality of a result across dimensions, each 0-1: of one deliverable, or of the task
    (then ``deliverables`` holds each one's assessment and the scores are their mean)."""

    overall_score: float = Field(ge=0, le=1)
    dimensions: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, list[str]] = Field(
        default_factory=dict, description="Why each dimension scored what it did."
    )
    passed: bool
    threshold: float = 0.75
    issues: list[QualityIssue] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)
    deliverable: str | None = Field(default=None, description="Deliverable key; None: the task.")
    step_scores: dict[str, float] = Field(
        default_factory=dict, description="Per step: 1 minus what its issues cost."
    )
    checks: list[str] = Field(default_factory=list, description="Deterministic checks that ran.")
    judge_model: str | None = None
    judge_error: str | None = Field(
        default=None, description="The judge failed: the result is never counted as good."
    )
    round: int = Field(default=0, description="0: first result; n: after the n-th refinement.")
    deliverables: list[QualityAssessment] = Field(default_factory=list)


class ChannelVariant(BaseModel):
    """A deliverable formatted for one channel: what a person reviews and what gets published."""

    channel: str
    deliverable: str = Field(description="The step id the content came from.")
    language: str | None = None
    title: str | None = None
    text: str = Field(description="What goes out: Markdown (blog, report) or plain text.")
    html: str | None = None
    subject: str | None = Field(default=None, description="Email and newsletter.")
    preheader: str | None = None
    meta_description: str | None = None
    slug: str | None = None
    parts: list[str] = Field(default_factory=list, description="A thread's posts, in order.")
    hashtags: list[str] = Field(default_factory=list)
    headings: list[str] = Field(default_factory=list)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list, description="Workspace paths.")
    limits: dict[str, Any] = Field(
        default_factory=dict, description="The channel's limits and the variant's figures."
    )
    revision: int = Field(default=0, description="0: as formatted; n: the n-th human edit.")
    edited_by: str | None = None
    diff: str | None = Field(default=None, description="Unified diff of a human edit.")

    @property
    def key(self) -> str:
        return self.channel if not self.language else f"{self.channel}:{self.language.lower()}"


class PipelinePhase(StrEnum):
    """Where a request's pipeline is (the seed's seven phases, then approval and actions)."""

    PLAN = "plan"
    DISCOVER = "discover"
    EXECUTE = "execute"
    ASSESS = "assess"
    REFINE = "refine"
    FORMAT = "format"
    LEARN = "learn"
    APPROVAL = "approval"
    ACTIONS = "actions"
    DONE = "done"


class ExecutionRecord(BaseModel):
    """What one finished (or parked) request taught: the row the learning phase mines."""

    schema_version: int = SCHEMA_VERSION
    task_id: str
    request: str | None = None
    plan: ExecutionPlan
    tool_sequence: list[str] = Field(description="Tools in the order their steps finished.")
    steps: list[dict[str, Any]] = Field(
        default_factory=list, description="Per step: tool, status, attempts, duration, cost."
    )
    quality: list[dict[str, Any]] = Field(
        default_factory=list, description="Per assessment round: score, passed, trigger."
    )
    refinements: int = 0
    outcome: str = Field(description="awaiting_approval, succeeded, failed, rejected, ...")
    needs_human: bool = False
    approval: str | None = Field(default=None, description="approved, rejected, revise, ...")
    feedback: list[str] = Field(default_factory=list)
    receipts: dict[str, Any] = Field(default_factory=dict)
    phase_ms: dict[str, float] = Field(default_factory=dict, description="Wall time per phase.")
    models: list[str] = Field(default_factory=list)
    cost: float = 0.0
    business_metrics: dict[str, float] = Field(default_factory=dict)


class PatternType(StrEnum):
    WORKFLOW = "workflow"
    TOOL_SEQUENCE = "tool_sequence"
    QUALITY = "quality"
    FAILURE = "failure"
    BUSINESS_METRIC = "business_metric"


class ExecutionPattern(BaseModel):
    """A learned workflow shape with its track record."""

    pattern_id: str
    pattern_type: PatternType
    tool_sequence: list[str]
    frequency: int = 0
    success_rate: float = 0.0
    average_quality: float = 0.0
    confidence: float = 0.0
    examples: list[str] = Field(default_factory=list)


class TrainingExample(BaseModel):
    """One record of the exported dataset used to fine-tune a planner model."""

    schema_version: int = SCHEMA_VERSION
    example_id: str
    request: str
    reasoning_trace: list[str] = Field(default_factory=list)
    executed_plan: ExecutionPlan
    result_quality: float | None = None
    business_metrics: dict[str, float] = Field(default_factory=dict)
    feedback_label: str | None = None


class Review(BaseModel):
    """What a person sees before deciding: the variants, their quality, what runs after."""

    task: Task
    round: int
    needs_human: bool = Field(description="Escalated: the result stayed below the threshold.")
    gate: str | None = Field(description="The pending approval's id in the plan (None: none).")
    variants: list[ChannelVariant]
    assessment: QualityAssessment | None = None
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, description="Every round's score: round, trigger, score, passed."
    )
    actions: list[WorkflowStep] = Field(
        default_factory=list, description="Steps that run once the result is approved."
    )
    approvals: list[Approval] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
