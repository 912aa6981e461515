"""The one place that maps orchestrator errors to HTTP status codes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from intelligent_orchestrator.errors import (
    ClarificationNeeded,
    ConfigError,
    ConflictError,
    InvalidEditError,
    NotFoundError,
    OrchestratorError,
    PlanningError,
    ToolError,
    ToolNotFoundError,
    WorkflowValidationError,
)

STATUS_BY_ERROR: dict[type[OrchestratorError], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ToolNotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    PlanningError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    WorkflowValidationError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    ConfigError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidEditError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    OrchestratorError: status.HTTP_400_BAD_REQUEST,
}
"""Error class → HTTP status. The most specific class in an error's MRO wins."""


def status_for(exc: OrchestratorError) -> int:
    """The HTTP status of an error, from :data:`STATUS_BY_ERROR`."""
    for cls in type(exc).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return status.HTTP_400_BAD_REQUEST


def error_body(exc: OrchestratorError) -> dict[str, Any]:
    """``{"detail": ..., "error": ...}`` plus the error's fields (``problems``, ``task_id``, ...)."""
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    match exc:
        case WorkflowValidationError():
            body["detail"] = f"workflow is invalid ({len(exc.problems)} problem(s))"
            body["problems"] = exc.problems
        case NotFoundError():
            body["kind"] = exc.kind
            body["id"] = exc.ident
        case ConflictError():
            body["task_id"] = exc.task_id
        case ConfigError():
            body["setting"] = exc.setting
        case ClarificationNeeded():
            body["clarification"] = exc.question
            if exc.task_id is not None:
                body["task_id"] = exc.task_id
        case ToolError():
            body["tool_id"] = exc.tool_id
        case _:
            pass
    return body


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)  # registered for OrchestratorError only
    return JSONResponse(error_body(exc), status_code=status_for(exc))


def add_error_handlers(app: FastAPI) -> None:
    """Register the handler for every :class:`OrchestratorError` subclass."""
    app.add_exception_handler(OrchestratorError, _handle)
