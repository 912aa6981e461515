"""Phase 4: score every deliverable on five dimensions, point each issue at its step."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.models import (
    QUALITY_DIMENSIONS,
    Deliverable,
    ExecutionPlan,
    QualityAssessment,
    QualityIssue,
    WorkflowStep,
)
from ..domain.refs import ReferenceError_, find_references, resolve
from ..errors import LlmError, ToolError
from ..llm import BoundLlm
from ..settings import QualitySettings
from ..tools.builtin.knowledge import workspace_text
from .checks import Subject, material_text, run_checks
from .deliverables import content_of
from .judge import Verdict, judge

MATERIAL_FILE_CHARS = 200_000
ERROR_PENALTY = 0.6  # one error takes its dimension under the default min_dimension
WARNING_PENALTY = 0.15


@dataclass(slots=True, kw_only=True)
class Inputs:
    plan: ExecutionPlan
    outputs: dict[str, Any]
    deliverables: Sequence[Deliverable]
    content: Sequence[WorkflowStep]
    request: str | None
    workspace: Path | None
    settings: QualitySettings
    round: int = 0


async def assess(inp: Inputs, llm: BoundLlm | None) -> QualityAssessment:
    """The task's assessment: each deliverable's, and the weakest of them (passed only if
    all pass)."""
    subjects = [subject(inp, d) for d in inp.deliverables]
    per = await asyncio.gather(*(_assess_one(inp, s, llm) for s in subjects))
    if not per:
        return QualityAssessment(
            overall_score=1.0,
            dimensions=dict.fromkeys(QUALITY_DIMENSIONS, 1.0),
            passed=True,
            threshold=inp.settings.threshold,
            round=inp.round,
            evidence={"completeness": ["the plan has no text deliverable to assess"]},
        )
    # The task is as good as its weakest deliverable: a fine blog post does not make up for
    # a LinkedIn post that must be redone.
    dims = {d: min(a.dimensions[d] for a in per) for d in QUALITY_DIMENSIONS}
    step_scores: dict[str, float] = {}
    for a in per:
        for sid, v in a.step_scores.items():
            step_scores[sid] = min(v, step_scores.get(sid, 1.0))
    return QualityAssessment(
        overall_score=min(a.overall_score for a in per),
        dimensions=dims,
        passed=all(a.passed for a in per),
        threshold=max(a.threshold for a in per),
        issues=[i for a in per for i in a.issues],
        suggestions=list(dict.fromkeys(s for a in per for s in a.suggestions)),
        step_scores=step_scores,
        checks=per[0].checks,
        judge_model=next((a.judge_model for a in per if a.judge_model), None),
        judge_error=next((a.judge_error for a in per if a.judge_error), None),
        round=inp.round,
        deliverables=list(per),
    )


def subject(inp: Inputs, d: Deliverable) -> Subject:
    steps = {s.id: s for s in inp.content}
    step = steps[d.step_id]
    title, text = content_of(step.tool, inp.outputs.get(d.step_id))
    ancestors = _ancestors(steps, d.step_id)
    out = inp.outputs.get(d.step_id)
    sources = out.get("sources", []) if isinstance(out, dict) else []
    if d.source_step and not sources:
        src = inp.outputs.get(d.source_step)
        sources = src.get("sources", []) if isinstance(src, dict) else []
    try:
        read = resolve(step.inputs, inp.outputs)
    except ReferenceError_:
        read = step.inputs
    material = material_text(
        [
            inp.request or "",
            read,
            _files_read(read, inp.workspace),
            *(inp.outputs.get(a) for a in sorted(ancestors)),
        ]
    )
    target = step.inputs.get("length_words") if step.tool == "write_content" else None
    qa = [
        (s.id, p)
        for s in inp.content
        if s.tool == "qa_review" and d.step_id in {r.step for r in find_references(s.inputs)}
        for p in _problems(inp.outputs.get(s.id))
    ]
    return Subject(
        deliverable=d,
        tool=step.tool,
        title=title,
        text=text,
        sources=[c for c in sources if isinstance(c, dict)],
        material=material,
        research=any(steps[a].tool == "research" for a in ancestors),
        target_words=int(target) if isinstance(target, int | float) else None,
        qa_problems=qa,
        workspace=inp.workspace,
        writer_step=d.step_id,
    )


async def _assess_one(inp: Inputs, s: Subject, llm: BoundLlm | None) -> QualityAssessment:
    cfg = inp.settings
    checks, issues = run_checks(s, tolerance=cfg.length_tolerance)
    det: dict[str, float] = dict.fromkeys(QUALITY_DIMENSIONS, 1.0)
    evidence: dict[str, list[str]] = {d: [] for d in QUALITY_DIMENSIONS}
    for i in issues:
        det[i.dimension] = max(
            0.0, det[i.dimension] - (ERROR_PENALTY if i.severity == "error" else WARNING_PENALTY)
        )
        evidence[i.dimension].append(f"{i.check}: {i.message}")
    verdict: Verdict | None = None
    judge_error = None
    judge_model = None
    if cfg.judge and llm is not None:
        req = inp.plan.requirements
        try:
            verdict = await judge(
                llm,
                s,
                request=inp.request,
                audience=req.audience if req else None,
                tone=req.tone if req else None,
            )
            judge_model = llm.gateway.settings.model_for("judge")
        except LlmError as exc:
            judge_error = f"{type(exc).__name__}: {exc}"
    dims = dict(det)
    suggestions: list[str] = []
    if verdict is not None:
        for dim in ("accuracy", "completeness", "coherence", "tone"):
            j = verdict.score(dim)
            dims[dim] = round(min(det[dim], (det[dim] + j) / 2), 3)
            evidence[dim].append(f"judge: {getattr(verdict, dim)}/5")
        for p in verdict.problems:
            if getattr(verdict, p.dimension) >= 4:
                continue  # a small judge lists praise as "problems" of dimensions it rates well
            issues.append(
                s.issue(
                    p.dimension,
                    "judge",
                    p.message,
                    severity="error" if getattr(verdict, p.dimension) <= 2 else "warning",
                )
            )
        if verdict.suggestion.strip():
            suggestions.append(verdict.suggestion.strip())
    suggestions += _fixes(issues, s)
    weights = cfg.weights
    overall = sum(weights.get(d, 0) * dims[d] for d in QUALITY_DIMENSIONS) / sum(
        weights.get(d, 0) for d in QUALITY_DIMENSIONS
    )
    intent = inp.plan.intent
    threshold = cfg.threshold_for(s.deliverable.key, s.deliverable.channel, intent)
    passed = (
        judge_error is None
        and overall >= threshold
        and all(v >= cfg.min_dimension for v in dims.values())
    )
    if judge_error:
        evidence["accuracy"].append(f"judge failed: {judge_error}")
    return QualityAssessment(
        overall_score=round(overall, 3),
        dimensions={d: round(v, 3) for d, v in dims.items()},
        evidence={d: v for d, v in evidence.items() if v},
        passed=passed,
        threshold=threshold,
        issues=issues,
        suggestions=suggestions,
        deliverable=s.deliverable.key,
        step_scores=_step_scores(issues),
        checks=checks,
        judge_model=judge_model,
        judge_error=judge_error,
        round=inp.round,
    )


def _fixes(issues: list[QualityIssue], s: Subject) -> list[str]:
    out = []
    for i in issues:
        if i.check == "length" and s.target_words:
            out.append(f"Write about {s.target_words} words.")
        elif i.check == "citations":
            out.append("Cite the research sources as [n] where their facts are used.")
        elif i.check == "figures":
            out.append("Use only figures from the data and sources; remove the others.")
        elif i.check == "channel_limit":
            out.append(f"Keep the {s.deliverable.channel} text within the channel's limit.")
        elif i.check == "language":
            out.append(f"Write the whole text in {s.deliverable.language}.")
        elif i.check == "sections":
            out.append("Structure the piece with '## ' section headings.")
    return list(dict.fromkeys(out))


def _step_scores(issues: list[QualityIssue]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for i in issues:
        if i.step_id is None:
            continue
        cost = ERROR_PENALTY if i.severity == "error" else WARNING_PENALTY
        scores[i.step_id] = round(max(0.0, scores.get(i.step_id, 1.0) - cost), 3)
    return scores


def _ancestors(steps: dict[str, WorkflowStep], step_id: str) -> set[str]:
    out: set[str] = set()
    todo = [step_id]
    while todo:
        for d in steps[todo.pop()].dependencies:
            if d in steps and d not in out:
                out.add(d)
                todo.append(d)
    return out


def _problems(output: Any) -> list[dict[str, Any]]:
    if not isinstance(output, dict):
        return []
    return [p for p in output.get("problems", []) if isinstance(p, dict)]


def _files_read(args: Any, workspace: Path | None) -> str:
    """The text of a workspace file the step was given by ``path`` (its figures are material)."""
    path = args.get("path") if isinstance(args, dict) else None
    if workspace is None or not isinstance(path, str):
        return ""
    try:
        return workspace_text(workspace, path)[:MATERIAL_FILE_CHARS]
    except (ToolError, OSError, ValueError):
        return ""
