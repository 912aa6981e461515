"""Which steps of a plan make the result a person reviews, and which act on the world after.

A request's plan splits in two: the *content* steps (research, data, writing, checks) run
first and are assessed, refined and formatted; the *action* steps (publish, send, notify, a
file saved outside drafts/) and everything downstream of them run only after a person approved
the formatted result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..domain.models import Deliverable, ExecutionPlan, WorkflowStep
from ..domain.refs import find_references
from ..tools.registry import ToolRegistry

KIND_CHANNEL = {
    "blog_post": "blog",
    "social_post": "social",
    "newsletter": "newsletter",
    "email": "email",
    "report": "report",
    "product_description": "blog",
}
KNOWN_CHANNELS = {
    "blog",
    "web",
    "product_description",
    "linkedin",
    "twitter",
    "x",
    "instagram",
    "facebook",
    "social",
    "newsletter",
    "email",
    "report",
}
SOCIAL_CHANNELS = ("linkedin", "twitter", "x", "instagram", "facebook")

# Where each content tool keeps its text and its title in its output.
TEXT_FIELDS: dict[str, tuple[str, str | None]] = {
    "write_content": ("body", "title"),
    "translate": ("translation", None),
    "summarize": ("summary", None),
}


@dataclass(frozen=True, slots=True)
class PlanSplit:
    content: list[WorkflowStep]
    actions: list[WorkflowStep]

    @property
    def content_ids(self) -> set[str]:
        return {s.id for s in self.content}


def split_plan(plan: ExecutionPlan, is_action: Callable[[WorkflowStep], bool]) -> PlanSplit:
    """Action steps and their descendants after approval; everything else before it."""
    after: set[str] = set()
    for step in _topological(plan.steps):
        if is_action(step) or step.dependencies & after:
            after.add(step.id)
    return PlanSplit(
        content=[s for s in plan.steps if s.id not in after],
        actions=[s for s in plan.steps if s.id in after],
    )


def plan_parts(plan: ExecutionPlan, registry: ToolRegistry) -> tuple[PlanSplit, list[Deliverable]]:
    """The plan's content and action steps, and the deliverables among the content."""

    def is_action(step: WorkflowStep) -> bool:
        if step.requires_approval is not None:
            return step.requires_approval
        return registry.get(step.tool).needs_approval(step.inputs)

    split = split_plan(plan, is_action)
    return split, find_deliverables(plan, split.content)


def descendants(steps: Iterable[WorkflowStep], roots: Iterable[str]) -> set[str]:
    """``roots`` and every step that depends on them, directly or not."""
    steps = list(steps)
    out = set(roots)
    changed = True
    while changed:
        changed = False
        for s in steps:
            if s.id not in out and s.dependencies & out:
                out.add(s.id)
                changed = True
    return out


def find_deliverables(plan: ExecutionPlan, content: Iterable[WorkflowStep]) -> list[Deliverable]:
    """The content steps whose text is a result: each channel's piece and its translations
    (a summary only when nothing is written from it)."""
    content = list(content)
    req_channels = plan.requirements.channels if plan.requirements else []
    socials = [c for c in req_channels if c in SOCIAL_CHANNELS]
    consumers: dict[str, set[str]] = {}
    for s in content:
        for r in find_references(s.inputs):
            consumers.setdefault(r.step, set()).add(s.tool)
    out: list[Deliverable] = []
    channel_of: dict[str, str] = {}
    for s in content:
        if s.tool == "write_content":
            ch = _channel_of_writer(s, socials)
            channel_of[s.id] = ch
            out.append(Deliverable(step_id=s.id, channel=ch))
        elif s.tool == "translate":
            sources = [r.step for r in find_references(s.inputs.get("text"))]
            source = sources[0] if sources else None
            ch = channel_of.get(source or "", "report")
            lang = s.inputs.get("target_language")
            out.append(
                Deliverable(
                    step_id=s.id,
                    channel=ch,
                    language=str(lang) if lang else None,
                    source_step=source,
                )
            )
        elif s.tool == "summarize" and not consumers.get(s.id, set()) & {
            "write_content",
            "translate",
        }:
            channel_of[s.id] = "report"
            out.append(Deliverable(step_id=s.id, channel="report"))
    return _unique_keys(out)


def content_of(step_tool: str, output: Any) -> tuple[str | None, str]:
    """(title, text) of a content step's output."""
    text_field, title_field = TEXT_FIELDS.get(step_tool, ("body", "title"))
    if not isinstance(output, dict):
        return None, "" if output is None else str(output)
    text = output.get(text_field)
    title = output.get(title_field) if title_field else None
    return (str(title) if title else None), ("" if text is None else str(text))


def _channel_of_writer(step: WorkflowStep, socials: list[str]) -> str:
    if step.id.startswith("write_") and step.id[6:] in KNOWN_CHANNELS:
        return "blog" if step.id[6:] == "web" else step.id[6:]
    ch = KIND_CHANNEL.get(str(step.inputs.get("kind", "")), "report")
    if ch == "social" and len(socials) == 1:
        return socials[0]
    return ch


def _unique_keys(items: list[Deliverable]) -> list[Deliverable]:
    """Two deliverables of one channel and language get numbered keys (report, report-2)."""
    seen: dict[str, int] = {}
    out = []
    for d in items:
        n = seen.get(d.key, 0) + 1
        seen[d.key] = n
        if n > 1:
            d = d.model_copy(update={"channel": f"{d.channel}-{n}"})
        out.append(d)
    return out


def _topological(steps: list[WorkflowStep]) -> list[WorkflowStep]:
    by_id = {s.id: s for s in steps}
    done: set[str] = set()
    out: list[WorkflowStep] = []

    def visit(s: WorkflowStep, path: frozenset[str]) -> None:
        if s.id in done or s.id in path:
            return
        for d in sorted(s.dependencies):
            if d in by_id:
                visit(by_id[d], path | {s.id})
        done.add(s.id)
        out.append(s)

    for s in steps:
        visit(s, frozenset())
    return out
