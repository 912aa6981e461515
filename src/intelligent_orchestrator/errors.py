"""The orchestrator's exception tree.

```
OrchestratorError
├── ConfigError                  operator or developer mistake in settings / registration
├── NotFoundError                a task, approval or tool id that does not exist
├── ConflictError                the request is valid but not in the current state (e.g. approve twice)
├── WorkflowValidationError      a workflow file or plan has problems; nothing was started
├── PlanningError
│   └── InvalidPlanError
├── ToolError
│   ├── ToolNotFoundError
│   ├── ToolInputError           arguments do not match the tool's input schema
│   ├── ToolExecutionError       the tool ran and failed (``transient`` says whether a retry may help)
│   ├── ToolTimeoutError         the tool did not finish within its timeout (transient)
│   └── PathEscapeError          a file path that leaves the workspace
├── QualityGateFailed
└── ApprovalError
    ├── ApprovalRejected
    └── ApprovalTimedOut
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class OrchestratorError(Exception):
    """Base class of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """A setting or a registration is wrong; names the setting."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class NotFoundError(OrchestratorError):
    """A task, approval, artifact or tool that does not exist."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class ConflictError(OrchestratorError):
    """The operation does not fit the object's current state."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class WorkflowValidationError(OrchestratorError):
    """A workflow has one or more problems; every problem is listed."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"workflow is invalid ({len(self.problems)} problem(s)):\n{lines}")


class PlanningError(OrchestratorError):
    """Planning could not produce a plan."""


class ClarificationNeeded(PlanningError):
    """The request cannot be planned as asked; ``question`` is for the user."""

    def __init__(self, question: str, *, plan: Any = None, task_id: str | None = None) -> None:
        super().__init__(question)
        self.question = question
        self.plan = plan
        self.task_id = task_id  # the task that asked (ended needs_clarification)


class InvalidPlanError(PlanningError):
    """A plan failed validation and could not be repaired."""

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


class ToolError(OrchestratorError):
    """Base of tool failures."""

    def __init__(
        self, message: str, *, tool_id: str | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.tool_id = tool_id
        self.transient = transient


class ToolNotFoundError(ToolError):
    """No tool is registered under that id."""


class ToolInputError(ToolError):
    """Arguments do not match the tool's input schema."""


class ToolExecutionError(ToolError):
    """The tool ran and failed."""


class ToolTimeoutError(ToolError):
    """The tool did not finish in time."""

    def __init__(self, message: str, *, tool_id: str | None = None) -> None:
        super().__init__(message, tool_id=tool_id, transient=True)


class PathEscapeError(ToolError):
    """A path that would leave the workspace."""


class LlmError(ToolError):
    """A model call failed; ``purpose`` and ``model`` name the call."""

    def __init__(
        self,
        message: str,
        *,
        purpose: str | None = None,
        model: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message, tool_id=None, transient=transient)
        self.purpose = purpose
        self.model = model


class LlmOutputError(LlmError):
    """The model's output did not match the expected schema after the repair attempts."""


class LlmUnavailableError(LlmError):
    """Every configured model (and the fallback) failed to answer."""


class BudgetExceededError(LlmError):
    """The task's cost or token budget is spent: the task stops."""


class QualityGateFailed(OrchestratorError):
    """The result stayed below the quality threshold."""


class ApprovalError(OrchestratorError):
    """Base of approval outcomes that stop a task."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class ApprovalRejected(ApprovalError):
    """A person rejected the task."""


class ApprovalTimedOut(ApprovalError):
    """Nobody decided before the approval expired."""


class InvalidEditError(OrchestratorError):
    """A reviewer's edit names no variant, changes nothing, or breaks the channel's limits."""
