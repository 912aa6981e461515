"""Planning evaluation: realistic cases with required, allowed and forbidden tools and orderings.

A case passes when every required tool is planned, no forbidden tool is (the side-effecting
tools are forbidden unless the case requires or allows them), every ordering pair holds and
the plan is a valid DAG; a ``clarify`` case passes when the planner asks instead of planning.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..domain.models import ExecutionPlan
from ..errors import ConfigError, PlanningError
from .validate import step_dependencies

SIDE_EFFECT_TOOLS = frozenset({"send_email", "publish_post", "post_webhook"})


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    category: str
    request: str
    required: list[str] = Field(default_factory=list)
    allowed: list[str] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list)
    order: list[tuple[str, str]] = Field(default_factory=list)
    clarify: bool = False

    @property
    def all_forbidden(self) -> set[str]:
        ok = set(self.required) | set(self.allowed)
        return set(self.forbidden) | (SIDE_EFFECT_TOOLS - ok)


class CaseResult(BaseModel):
    id: str
    category: str
    passed: bool
    problems: list[str]
    tools: list[str]
    forbidden_used: list[str]
    precision: float | None
    latency_ms: float
    clarification: str | None = None


def load_cases(path: Path) -> list[Case]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read eval cases {path}: {exc}", setting="cases") from exc
    cases = [Case.model_validate(c) for c in data["cases"]]
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: duplicate case ids", setting="cases")
    return cases


def _ancestors(plan: ExecutionPlan) -> dict[str, set[str]]:
    deps = {s.id: step_dependencies(s) for s in plan.steps}
    memo: dict[str, set[str]] = {}

    def up(sid: str) -> set[str]:
        if sid not in memo:
            memo[sid] = set()
            for d in deps.get(sid, ()):
                memo[sid] |= {d} | up(d)
        return memo[sid]

    return {sid: up(sid) for sid in deps}


def score(
    case: Case, plan: ExecutionPlan | None, error: str | None, latency_ms: float
) -> CaseResult:
    problems: list[str] = []
    tools = [s.tool for s in plan.steps] if plan else []
    forbidden_used = sorted(set(tools) & case.all_forbidden)
    if error is not None:
        problems.append(f"planning failed: {error}")
    elif plan is None:
        problems.append("no plan")
    elif case.clarify:
        if plan.clarification is None:
            problems.append("expected a clarification question, got a plan")
    elif plan.clarification is not None:
        problems.append(f"asked for clarification: {plan.clarification}")
    else:
        for t in case.required:
            if t not in tools:
                problems.append(f"missing required tool {t}")
        if forbidden_used:
            problems.append(f"forbidden tool(s) {', '.join(forbidden_used)}")
        ancestors = _ancestors(plan)
        tool_of = {s.id: s.tool for s in plan.steps}
        for a, b in case.order:
            b_steps = [sid for sid, t in tool_of.items() if t == b]
            if b_steps and not any(tool_of[x] == a for sid in b_steps for x in ancestors[sid]):
                problems.append(f"ordering {a} → {b} does not hold")
    ok = set(case.required) | set(case.allowed)
    precision = (sum(t in ok for t in tools) / len(tools)) if tools else None
    return CaseResult(
        id=case.id,
        category=case.category,
        passed=not problems,
        problems=problems,
        tools=tools,
        forbidden_used=forbidden_used,
        precision=None if case.clarify else precision,
        latency_ms=round(latency_ms, 1),
        clarification=plan.clarification if plan else None,
    )


PlanFn = Callable[[str], Awaitable[ExecutionPlan]]


async def run_eval(
    plan: PlanFn, cases: list[Case], *, on_result: Callable[[CaseResult], None] | None = None
) -> dict[str, Any]:
    results: list[CaseResult] = []
    for case in cases:
        t0 = time.perf_counter()
        got: ExecutionPlan | None = None
        error = None
        try:
            got = await plan(case.request)
        except PlanningError as exc:
            error = str(exc)
        result = score(case, got, error, (time.perf_counter() - t0) * 1000)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return summarise(results)


def summarise(results: list[CaseResult]) -> dict[str, Any]:
    lat = sorted(r.latency_ms for r in results)
    precisions = [r.precision for r in results if r.precision is not None]
    by_cat: dict[str, list[CaseResult]] = {}
    for r in results:
        by_cat.setdefault(r.category, []).append(r)
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "pass_rate": round(sum(r.passed for r in results) / len(results), 3) if results else 0.0,
        "precision": round(statistics.mean(precisions), 3) if precisions else None,
        "forbidden_tool_uses": sum(len(r.forbidden_used) for r in results),
        "latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
        "latency_ms_p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1) if lat else None,
        "by_category": {
            c: {"cases": len(rs), "passed": sum(r.passed for r in rs)}
            for c, rs in sorted(by_cat.items())
        },
        "results": [r.model_dump() for r in results],
    }
