"""Output helpers: one JSON document with --json, Rich for people, progress on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..domain.models import (
    ChannelVariant,
    ExecutionPlan,
    ExecutionResult,
    PipelinePhase,
    QualityAssessment,
    Review,
    StepStatus,
    Task,
    TaskStatus,
)
from ..planning.validate import execution_order, step_dependencies

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    "pending": "dim",
    "queued": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "awaiting_approval": "magenta",
    "rejected": "red",
    "cancelled": "yellow",
    "expired": "yellow",
    "needs_clarification": "yellow",
}


def emit_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json() + "\n")
    else:
        sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def exit_code(status: TaskStatus) -> int:
    match status:
        case TaskStatus.SUCCEEDED:
            return 0
        case TaskStatus.FAILED | TaskStatus.REJECTED | TaskStatus.CANCELLED | TaskStatus.EXPIRED:
            return 1
        case TaskStatus.QUEUED | TaskStatus.RUNNING | TaskStatus.AWAITING_APPROVAL:
            return 3
        case TaskStatus.NEEDS_CLARIFICATION:
            return 4


def steps_table(result: ExecutionResult) -> Table:
    title = f"task {result.task.task_id} — {styled(result.task.status.value)}"
    if result.task.phase is not None:
        title += f"\n{phases_line(result.task)}"
    table = Table(title=title, title_justify="left")
    table.add_column("step", no_wrap=True, min_width=8)
    table.add_column("tool", no_wrap=True, min_width=12)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("try", no_wrap=True, min_width=3)
    table.add_column("time", no_wrap=True, min_width=5)
    table.add_column(
        "detail", no_wrap=True, overflow="ellipsis", max_width=max(20, stdout.width - 58)
    )
    runs = {s.step_id: s for s in result.steps}
    if result.llm.calls:
        table.add_column("tokens", no_wrap=True, justify="right")
        u = result.llm
        table.caption = (
            f"model calls {u.calls}"
            + (f" ({u.failed_calls} failed)" if u.failed_calls else "")
            + f", tokens {u.input_tokens} in / {u.output_tokens} out, cost {u.cost:.4f} USD"
        )
        table.caption_justify = "left"
    for step in result.task.plan.steps:
        r = runs.get(step.id)
        status = r.status.value if r else StepStatus.PENDING.value
        detail = ""
        if r is not None:
            if r.error:
                detail = r.error
            elif r.output is not None:
                detail = summarize(r.output)
        took = f"{r.duration_ms / 1000:.2f}s" if r is not None and r.duration_ms is not None else ""
        row = [step.id, step.tool, styled(status), str(r.attempt if r else ""), took, detail]
        if result.llm.calls:
            row.append(str(r.llm.tokens) if r is not None and r.llm else "")
        table.add_row(*row)
    return table


def tasks_table(tasks: list[Task], total: int) -> Table:
    table = Table(title=f"{len(tasks)} of {total} task(s)", title_justify="left")
    table.add_column("task", no_wrap=True, min_width=32)
    table.add_column("name", overflow="ellipsis", max_width=24)
    table.add_column("status", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("cost", no_wrap=True)
    table.add_column("error", overflow="ellipsis", max_width=40)
    for t in tasks:
        table.add_row(
            t.task_id,
            t.name,
            styled(t.status.value),
            t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{t.total_cost:.4f}",
            _short(t.error or "", 60),
        )
    return table


def summarize(value: Any, limit: int = 70) -> str:
    """A one-line gist of a step output: scalars shown, lists and objects counted."""
    if not isinstance(value, dict):
        return _short(value, limit)
    parts: list[str] = []
    for k, v in value.items():  # pyright: ignore[reportUnknownVariableType]  # JSON
        if isinstance(v, list):
            parts.append(f"{k}[{len(v)}]")  # pyright: ignore[reportUnknownArgumentType]  # JSON
        elif isinstance(v, dict):
            parts.append(f"{k}{{{len(v)}}}")  # pyright: ignore[reportUnknownArgumentType]  # JSON
        elif v is not None:
            parts.append(f"{k}={_short(v, 40)}")
    return _short(" ".join(parts), limit)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_plan(plan: ExecutionPlan, *, console: Console | None = None) -> None:
    """The plan as a tree of parallel branches, then its requirements, reasoning and warnings."""
    out = console or stdout
    if plan.clarification is not None:
        out.print(f"[yellow]clarification needed:[/] {plan.clarification}")
        for line in plan.reasoning:
            out.print(f"  [dim]{escape(line)}[/]")
        return
    deps = {s.id: sorted(step_dependencies(s)) for s in plan.steps}
    tree = Tree(f"[bold]{escape(plan.intent or plan.name)}[/]")
    nodes: dict[str, Tree] = {}
    for sid in execution_order(plan):
        step = plan.step(sid)
        gate = " [yellow](approval)[/]" if step.requires_approval else ""  # set by the planner
        label = f"[bold]{sid}[/] {step.tool}{gate}"
        if len(deps[sid]) > 1:
            label += f" [dim]← {', '.join(deps[sid])}[/]"
        parent = nodes.get(deps[sid][-1]) if deps[sid] else tree
        nodes[sid] = (parent or tree).add(label)
    out.print(tree)
    est = []
    if plan.estimated_duration_seconds is not None:
        est.append(f"critical path ~{plan.estimated_duration_seconds:g} s")
    if plan.estimated_cost is not None:
        est.append(f"estimated cost {plan.estimated_cost:.4f} USD")
    if est:
        out.print(", ".join(est))
    for w in plan.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")
    for line in plan.reasoning:
        out.print(f"  [dim]{escape(line)}[/]")


_PHASES = [p for p in PipelinePhase if p is not PipelinePhase.DONE]


def phases_line(task: Task) -> str:
    """The pipeline's phases, done ones ticked and the current one bold."""
    current = task.phase or PipelinePhase.PLAN
    at = len(_PHASES) if current is PipelinePhase.DONE else _PHASES.index(current)
    parts = []
    for i, p in enumerate(_PHASES):
        if i < at and p is PipelinePhase.REFINE and not task.round:
            parts.append(f"[dim]{p.value} -[/]")  # nothing needed refining
        elif i < at:
            parts.append(f"[green]{p.value} ✓[/]")
        elif i == at and not task.status.finished:
            parts.append(f"[bold yellow]{p.value} ●[/]")
        else:
            parts.append(f"[dim]{p.value}[/]")
    extra = f"  round {task.round}" if task.round else ""
    if task.quality_score is not None:
        extra += f"  quality {task.quality_score:.2f}"
    return " > ".join(parts) + extra


def quality_table(a: QualityAssessment) -> Table:
    dims = list(a.dimensions)
    if a.passed:
        verdict = "[green]passed[/]"
    elif a.overall_score >= a.threshold and not a.judge_error:
        # (over the mark on average, and yet not passed: say why)
        verdict = "[red]not passed: a dimension or a deliverable scored too low[/]"
    else:
        verdict = "[red]below the mark[/]"
    table = Table(
        title=f"quality {a.overall_score:.2f} (pass mark {a.threshold:.2f}) — "
        + verdict
        + (f" — [red]judge failed: {escape(a.judge_error)}[/]" if a.judge_error else ""),
        title_justify="left",
    )
    table.add_column("deliverable", no_wrap=True)
    table.add_column("overall", justify="right")
    for d in dims:
        table.add_column(d, justify="right")
    for one in a.deliverables or [a]:
        table.add_row(
            one.deliverable or "(task)",
            ("[green]" if one.passed else "[red]") + f"{one.overall_score:.2f}[/]",
            *(f"{one.dimensions.get(d, 0):.2f}" for d in dims),
        )
    return table


def print_review(review: Review, *, console: Console | None = None) -> None:
    out = console or stdout
    task = review.task
    out.print(phases_line(task))
    if review.assessment is not None:
        out.print(quality_table(review.assessment))
        # The same finding from several checks or rounds is one line, with its count.
        lines: dict[str, int] = {}
        for i in review.assessment.issues:
            where = f" (step {i.step_id})" if i.step_id else ""
            colour = "red" if i.severity == "error" else "yellow"
            line = (
                f"  [{colour}]{i.severity}[/] {i.deliverable or ''} {i.dimension}: "
                f"{escape(i.message)}{where}"
            )
            lines[line] = lines.get(line, 0) + 1
        for line, n in list(lines.items())[:10]:
            out.print(line + (f" ({n} times)" if n > 1 else ""))
        if len(review.attempts) > 1:
            out.print(
                "attempts: "
                + ", ".join(f"round {t['round']} {t['score']:.2f}" for t in review.attempts)
            )
    if review.needs_human:
        out.print("[bold red]needs a person:[/] the result stayed below the quality mark")
    for v in review.variants:
        out.print(variant_summary(v))
    if review.actions:
        out.print("after approval: " + ", ".join(f"{s.id} ({s.tool})" for s in review.actions))
    if review.gate is not None:
        tid = task.task_id
        out.print(
            f"review: [bold]orchestrator show {tid} --channel NAME[/], then "
            f"[bold]orchestrator approve {tid}[/] (--edit NAME=@file), "
            f"[bold]orchestrator revise {tid} -m '...'[/] or "
            f"[bold]orchestrator reject {tid} -m '...'[/]"
        )


def variant_summary(v: ChannelVariant) -> str:
    head = v.subject or v.title or ""
    figures = f"{len(v.text)} chars" + (f", {len(v.parts)} posts" if v.parts else "")
    edited = f", edited by {v.edited_by or 'someone'} (rev {v.revision})" if v.revision else ""
    files = ", ".join(v.artifacts)
    return f"[bold]{v.key}[/]: {escape(head)} ({figures}{edited})" + (
        f"\n    files: {files}" if files else ""
    )
