"""Domain types, named as in the seed specification. Pure data: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NewType

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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

    @property
    def finished(self) -> bool:
        return self in _FINISHED_TASK


_FINISHED_TASK = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.REJECTED,
        TaskStatus.CANCELLED,
        TaskStatus.EXPIRED,
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
    steps: list[WorkflowStep] = Field(description="The steps; at least one.")
    requires_approval: bool = Field(
        default=False, description="Park the whole task for approval before any step runs."
    )
    max_concurrency: int | None = Field(default=None, ge=1, le=1000)
    reasoning: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    requirements: Requirements | None = None
    warnings: list[str] = Field(default_factory=list)
    estimated_cost: float | None = Field(default=None, ge=0)
    estimated_duration_seconds: float | None = Field(
        default=None, ge=0, description="Critical path."
    )

    @field_validator("steps")
    @classmethod
    def _non_empty(cls, steps: list[WorkflowStep], info: ValidationInfo) -> list[WorkflowStep]:
        if not steps and not info.data.get("clarification"):
            raise ValueError("a workflow needs at least one step")
        return steps

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


class QualityAssessment(BaseModel):
    """Quality of a result across dimensions, each 0-1."""

    overall_score: float = Field(ge=0, le=1)
    dimensions: dict[str, float] = Field(default_factory=dict)
    passed: bool
    threshold: float = 0.75
    issues: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)


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
