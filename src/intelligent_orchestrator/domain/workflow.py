"""Workflow files (YAML or JSON) → :class:`ExecutionPlan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import WorkflowValidationError
from .models import ExecutionPlan


def parse_workflow(
    text: str, *, source: str = "<workflow>", fmt: str | None = None
) -> ExecutionPlan:
    """Parse a workflow document; every structural problem is reported at once."""
    data = _load(text, source=source, fmt=fmt)
    if not isinstance(data, dict):
        raise WorkflowValidationError(
            [f"{source}: the document must be a mapping with a 'steps' list"]
        )
    if "steps" in data and isinstance(data["steps"], list):
        for step in data["steps"]:  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]  # raw document
            if isinstance(step, dict) and "inputs" in step and step["inputs"] is None:
                step["inputs"] = {}
    try:
        return ExecutionPlan.model_validate(data)
    except ValidationError as exc:
        raise WorkflowValidationError([_describe(source, data, e) for e in exc.errors()]) from exc  # pyright: ignore[reportUnknownArgumentType]  # raw document


def load_workflow_file(path: Path) -> ExecutionPlan:
    if not path.is_file():
        raise WorkflowValidationError([f"{path}: no such file"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowValidationError([f"{path}: not UTF-8 text ({exc.reason})"]) from exc
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_workflow(text, source=str(path), fmt=fmt)


def _load(text: str, *, source: str, fmt: str | None) -> Any:
    if fmt == "json" or (fmt is None and text.lstrip().startswith(("{", "["))):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowValidationError(
                [f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
            ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowValidationError([f"{source}: invalid YAML{where}: {problem}"]) from exc


def _describe(source: str, data: dict[str, Any], err: Any) -> str:
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") or []
        sid = (
            steps[loc[1]].get("id")
            if loc[1] < len(steps) and isinstance(steps[loc[1]], dict)
            else None
        )
        where = f"step {sid!r}" if sid else f"steps[{loc[1]}]"
        rest = ".".join(str(p) for p in loc[2:])
        where = f"{where} field {rest!r}" if rest else where
    else:
        where = "field " + repr(".".join(str(p) for p in loc)) if loc else "document"
    if err.get("type") in ("model_type", "dict_type") and len(loc) == 2:
        return f"{source}: {where} must be a mapping"
    return f"{source}: {where}: {err['msg']}"
