"""Check a plan against the registry before anything runs; list every problem."""

from __future__ import annotations

import math
from typing import Any

from ..domain.models import ExecutionPlan, WorkflowStep
from ..domain.refs import REF_PATTERN, Reference, find_references
from ..errors import ToolNotFoundError, WorkflowValidationError
from ..tools.registry import ToolRegistry
from ..tools.spec import schema_errors

_WHOLE_REF_MARK = "\x00ref\x00"


def step_dependencies(step: WorkflowStep) -> set[str]:
    """Explicit ``depends_on`` plus every step referenced by the inputs."""
    return step.dependencies


def validate_plan(plan: ExecutionPlan, registry: ToolRegistry) -> None:
    """Raise :class:`WorkflowValidationError` listing every problem, or return if the plan is sound."""
    problems: list[str] = []
    if plan.clarification is not None:
        problems.append(f"the plan has no steps; it needs clarification: {plan.clarification}")
    if plan.pending:
        problems.append("the plan is pending: a request's task plans it when it runs")
    ids = [s.id for s in plan.steps]
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            problems.append(f"step {sid!r} is defined more than once")
        seen.add(sid)
    known = set(ids)
    deps: dict[str, set[str]] = {}

    for step in plan.steps:
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(f"step {step.id!r} depends on itself")
            elif dep not in known:
                problems.append(f"step {step.id!r} depends on unknown step {dep!r}")
        refs = list(find_references(step.inputs))
        deps[step.id] = set(step.depends_on) | {r.step for r in refs}  # (step.dependencies)
        if _non_finite(step.inputs):
            problems.append(
                f"step {step.id!r}: an input holds NaN or Infinity, which JSON (and so the "
                "step's record) has no number for"
            )
        for ref in refs:
            if ref.step == step.id:
                problems.append(f"step {step.id!r}: {ref} refers to the step's own output")
            elif ref.step not in known:
                problems.append(f"step {step.id!r}: {ref} refers to unknown step {ref.step!r}")
        try:
            tool = registry.get(step.tool)
        except ToolNotFoundError:
            hint = ", ".join(sorted(s.tool_id for s in registry.specs()))
            problems.append(f"step {step.id!r}: unknown tool {step.tool!r} (registered: {hint})")
            continue
        problems.extend(_check_inputs(step, tool.spec.input_schema, has_refs=bool(refs)))
        for ref in refs:
            if ref.step in known and ref.step != step.id:
                problems.extend(_check_ref_path(step, ref, plan, registry))

    cycle = _find_cycle(plan, deps)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(repr(s) for s in cycle))
    if problems:
        raise WorkflowValidationError(problems)


def _non_finite(value: Any) -> bool:
    """Whether a JSON-like value holds a float JSON cannot write (NaN, ±Infinity). (Loops,
    not ``any`` over generators: this walks every input of a plan before it runs.)"""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        for v in value.values():
            if _non_finite(v):
                return True
    elif isinstance(value, list | tuple):
        for v in value:
            if _non_finite(v):
                return True
    return False


def execution_order(plan: ExecutionPlan, deps: dict[str, set[str]] | None = None) -> list[str]:
    """A topological order of the step ids, stable with respect to the file's order
    (``deps``: each step's dependencies, if the caller has them already)."""
    if deps is None:
        deps = {s.id: step_dependencies(s) for s in plan.steps}
    order: list[str] = []
    done: set[str] = set()
    remaining = [s.id for s in plan.steps]
    while remaining:
        progressed = False
        for sid in list(remaining):
            if deps[sid] <= done:
                order.append(sid)
                done.add(sid)
                remaining.remove(sid)
                progressed = True
        if not progressed:
            raise WorkflowValidationError(
                ["dependency cycle among " + ", ".join(repr(s) for s in remaining)]
            )
    return order


def _check_inputs(step: WorkflowStep, schema: dict[str, Any], *, has_refs: bool) -> list[str]:
    ref_keys: set[str] = set()
    probe = dict(step.inputs) if has_refs else step.inputs  # only top-level values are replaced
    for key, value in step.inputs.items() if has_refs else ():
        if isinstance(value, str) and REF_PATTERN.fullmatch(value.strip()):
            ref_keys.add(key)
            probe[key] = _WHOLE_REF_MARK
        elif any(True for _ in find_references(value)):
            # A reference nested in a list/dict/longer string: its type is only known at run time.
            ref_keys.add(key)
    problems: list[str] = []
    for err in schema_errors(schema, probe):
        path = [str(p) for p in err.absolute_path]
        if path and path[0] in ref_keys:
            continue
        if err.validator == "required":
            problems.append(
                f"step {step.id!r} (tool {step.tool!r}): missing required input: {err.message}"
            )
        elif err.validator == "additionalProperties":
            problems.append(f"step {step.id!r} (tool {step.tool!r}): unknown input: {err.message}")
        else:
            where = ".".join(path) or "(inputs)"
            problems.append(
                f"step {step.id!r} (tool {step.tool!r}): input {where!r}: {err.message}"
            )
    return problems


def _check_ref_path(
    step: WorkflowStep, ref: Reference, plan: ExecutionPlan, registry: ToolRegistry
) -> list[str]:
    if not ref.path or not isinstance(ref.path[0], str):
        return []
    target = plan.step(ref.step)
    if target.tool not in registry:
        return []
    schema = registry.get(target.tool).spec.output_schema
    schema = _deref(schema, schema)
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return []
    if ref.path[0] not in props:
        fields = ", ".join(sorted(props)) or "none"  # pyright: ignore[reportUnknownArgumentType]  # JSON schema
        return [
            f"step {step.id!r}: {ref} — tool {target.tool!r} output has no field {ref.path[0]!r} (fields: {fields})"
        ]
    return []


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict):
            return target  # pyright: ignore[reportUnknownVariableType]  # JSON schema
    return node


def _find_cycle(plan: ExecutionPlan, step_deps: dict[str, set[str]]) -> list[str] | None:
    known = {s.id for s in plan.steps}
    if _acyclic(step_deps, known):
        return None  # (the common case, without the search for a cycle's path below)
    deps = {sid: sorted(d & known - {sid}) for sid, d in step_deps.items()}
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for d in deps[n]:
            if color.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if color.get(d) is None:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for sid in deps:
        if color.get(sid) is None:
            found = visit(sid)
            if found:
                return found
    return None


def _acyclic(step_deps: dict[str, set[str]], known: set[str]) -> bool:
    """Whether the steps can be ordered (Kahn's algorithm; references to unknown steps and to
    the step itself are reported elsewhere)."""
    waiting: dict[str, int] = {}
    dependants: dict[str, list[str]] = {}
    ready: list[str] = []
    for sid, deps in step_deps.items():
        n = 0
        for d in deps:
            if d in known and d != sid:
                n += 1
                dependants.setdefault(d, []).append(sid)
        if n:
            waiting[sid] = n
        else:
            ready.append(sid)
    ordered = 0
    while ready:
        sid = ready.pop()
        ordered += 1
        for later in dependants.get(sid, ()):
            waiting[later] -= 1
            if not waiting[later]:
                ready.append(later)
    return ordered == len(step_deps)
