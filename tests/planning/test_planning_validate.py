from __future__ import annotations

from typing import Any

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, ToolSpecification
from intelligent_orchestrator.domain.workflow import load_workflow_file
from intelligent_orchestrator.errors import WorkflowValidationError
from intelligent_orchestrator.examples import example_names, example_path
from intelligent_orchestrator.planning import execution_order, validate_plan
from intelligent_orchestrator.planning.validate import step_dependencies
from intelligent_orchestrator.tools.builtin import builtin_tools
from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import ToolContext, tool
from tests.support.tools import TEST_TOOLS


@pytest.fixture
def tools() -> ToolRegistry:
    return ToolRegistry([*builtin_tools(), *TEST_TOOLS])


def plan(*steps: dict[str, Any]) -> ExecutionPlan:
    return ExecutionPlan.model_validate({"name": "p", "steps": list(steps)})


def problems(p: ExecutionPlan, registry: ToolRegistry) -> list[str]:
    with pytest.raises(WorkflowValidationError) as exc:
        validate_plan(p, registry)
    return exc.value.problems


def test_a_sound_plan_passes(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "load", "tool": "query_data", "inputs": {"sql": "SELECT 1 AS a"}},
        {"id": "count", "tool": "add", "inputs": {"a": "${steps.load.output.row_count}", "b": 1}},
        {
            "id": "draw",
            "tool": "chart",
            "inputs": {"x": "a", "y": "a", "rows": "${steps.load.output.rows}", "kind": "bar"},
        },
        {"id": "done", "tool": "noop", "depends_on": ["count", "draw"]},
    )
    assert validate_plan(p, tools) is None
    assert execution_order(p) == ["load", "count", "draw", "done"]


def test_an_input_that_json_cannot_hold_is_refused(tools: ToolRegistry) -> None:
    """A workflow file may spell NaN or Infinity (YAML's .nan, Python's json): the step's
    record could not keep it (Postgres refuses it, orjson writes null), so the plan is
    refused with the step named."""

    @tool("anything", category="test")
    async def anything(ctx: ToolContext, value: Any = None) -> Any:
        """Takes any value."""
        return value

    tools.register(anything)
    p = plan(
        {"id": "a", "tool": "anything", "inputs": {"value": float("nan")}},
        {"id": "b", "tool": "anything", "inputs": {"value": {"deep": [1, float("-inf")]}}},
        {"id": "c", "tool": "anything", "inputs": {"value": [1.5, {"x": 2e300}]}},
    )
    found = problems(p, tools)
    assert [x.split(":")[0] for x in found] == ["step 'a'", "step 'b'"]
    assert all("NaN or Infinity" in x for x in found)


def test_every_problem_is_listed_at_once(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "a", "tool": "add", "inputs": {"a": 1}},
        {"id": "a", "tool": "add", "inputs": {"a": 2}},
        {"id": "b", "tool": "no_such_tool"},
        {"id": "c", "tool": "add", "inputs": {"a": 1}, "depends_on": ["c", "ghost"]},
        {
            "id": "d",
            "tool": "add",
            "inputs": {"a": "${steps.d.output.value}", "b": "${steps.q.output.value}"},
        },
        {"id": "e", "tool": "add", "inputs": {"b": 1}},
        {"id": "f", "tool": "add", "inputs": {"a": 1, "c": 2}},
        {"id": "g", "tool": "add", "inputs": {"a": "one"}},
        {"id": "h", "tool": "query_data", "inputs": {"sql": "select 1"}},
        {"id": "i", "tool": "noop", "inputs": {"value": "${steps.h.output.nope}"}},
    )
    registered = ", ".join(sorted(t.tool_id for t in [*builtin_tools(), *TEST_TOOLS]))
    assert problems(p, tools) == [
        "step 'a' is defined more than once",
        f"step 'b': unknown tool 'no_such_tool' (registered: {registered})",
        "step 'c' depends on itself",
        "step 'c' depends on unknown step 'ghost'",
        "step 'd': ${steps.d.output.value} refers to the step's own output",
        "step 'd': ${steps.q.output.value} refers to unknown step 'q'",
        "step 'e' (tool 'add'): missing required input: 'a' is a required property",
        "step 'f' (tool 'add'): unknown input: Additional properties are not allowed ('c' was unexpected)",
        "step 'g' (tool 'add'): input 'a': 'one' is not of type 'integer'",
        "step 'i': ${steps.h.output.nope} — tool 'query_data' output has no field 'nope' "
        "(fields: column_types, columns, csv, row_count, rows, truncated)",
    ]


def test_the_error_message_lists_every_problem(tools: ToolRegistry) -> None:
    p = plan({"id": "a", "tool": "nope"}, {"id": "b", "tool": "add"})
    with pytest.raises(WorkflowValidationError) as exc:
        validate_plan(p, tools)
    text = str(exc.value)
    assert "2 problem(s)" in text
    assert "unknown tool 'nope'" in text
    assert "missing required input" in text


def test_unknown_tool_with_an_empty_registry() -> None:
    assert problems(plan({"id": "a", "tool": "add"}), ToolRegistry()) == [
        "step 'a': unknown tool 'add' (registered: )"
    ]


def test_a_cycle_shows_its_path(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "x", "tool": "add", "inputs": {"a": "${steps.z.output.value}"}},
        {"id": "y", "tool": "add", "inputs": {"a": "${steps.x.output.value}"}},
        {"id": "z", "tool": "add", "inputs": {"a": 1}, "depends_on": ["y"]},
        {"id": "free", "tool": "noop"},
    )
    assert problems(p, tools) == ["dependency cycle: 'x' -> 'z' -> 'y' -> 'x'"]
    with pytest.raises(WorkflowValidationError) as exc:
        execution_order(p)
    assert exc.value.problems == ["dependency cycle among 'x', 'y', 'z'"]


def test_a_two_step_cycle_through_depends_on(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "a", "tool": "noop", "depends_on": ["b"]},
        {"id": "b", "tool": "noop", "depends_on": ["a"]},
    )
    assert problems(p, tools) == ["dependency cycle: 'a' -> 'b' -> 'a'"]


def test_references_skip_type_checks(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "src", "tool": "noop", "inputs": {"value": 3}},
        # a whole reference where an integer is expected, another embedded in a longer string,
        # and one nested in a list: their types are only known at run time
        {
            "id": "use",
            "tool": "add",
            "inputs": {"a": "${steps.src.output.value}", "b": "n=${steps.src.output}"},
        },
        {
            "id": "draw",
            "tool": "chart",
            "inputs": {
                "x": "a",
                "y": ["${steps.src.output.value}"],
                "rows": "${steps.src.output}",
                "kind": "bar",
            },
        },
    )
    assert validate_plan(p, tools) is None


def test_literal_checks_still_apply_next_to_references(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "src", "tool": "noop"},
        {
            "id": "use",
            "tool": "sleep",
            "inputs": {"seconds": "${steps.src.output.value}", "value": "x"},
        },
    )
    assert problems(p, tools) == [
        "step 'use' (tool 'sleep'): input 'value': 'x' is not of type 'integer'"
    ]


def test_an_unknown_input_holding_a_reference_is_still_unknown(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "src", "tool": "noop"},
        {"id": "use", "tool": "noop", "inputs": {"valu": "${steps.src.output.value}"}},
    )
    assert problems(p, tools) == [
        "step 'use' (tool 'noop'): unknown input: Additional properties are not allowed ('valu' was unexpected)"
    ]


def test_literal_bounds_and_enums_are_checked(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "q", "tool": "query_data", "inputs": {"sql": "select 1", "max_rows": 0}},
        {
            "id": "w",
            "tool": "write_file",
            "inputs": {"path": "a.txt", "content": "x", "mode": "shred"},
        },
    )
    found = problems(p, tools)
    assert len(found) == 2
    assert found[0].startswith(
        "step 'q' (tool 'query_data'): input 'max_rows': 0 is less than the minimum of 1"
    )
    assert found[1].startswith("step 'w' (tool 'write_file'): input 'mode': 'shred' is not one of")


def test_reference_to_an_undeclared_output_field(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "read", "tool": "read_file", "inputs": {"path": "a.txt"}},
        {
            "id": "w",
            "tool": "write_file",
            "inputs": {"path": "b.txt", "content": "${steps.read.output.text}"},
        },
    )
    [problem] = problems(p, tools)
    assert problem.startswith(
        "step 'w': ${steps.read.output.text} — tool 'read_file' output has no field 'text' (fields: "
    )
    assert "content" in problem


def test_declared_output_fields_and_untyped_outputs_are_accepted(tools: ToolRegistry) -> None:
    p = plan(
        {"id": "read", "tool": "read_file", "inputs": {"path": "a.txt"}},
        {
            "id": "w",
            "tool": "write_file",
            "inputs": {"path": "b.txt", "content": "${steps.read.output.content}"},
        },
        # noop's output is dict[str, int]: any field may exist
        {"id": "n", "tool": "noop"},
        {"id": "m", "tool": "noop", "inputs": {"value": "${steps.n.output.anything}"}},
        # the whole output and an index path are not checked against fields
        {"id": "o", "tool": "noop", "inputs": {"value": "${steps.read.output}"}},
    )
    assert validate_plan(p, tools) is None


def test_raw_schema_tools_are_checked_too() -> None:
    async def impl(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return args

    registry = ToolRegistry()
    registry.register_tool(
        ToolSpecification(
            tool_id="lookup",
            name="Lookup",
            description="d",
            input_schema={
                "type": "object",
                "properties": {"key": {"type": "string"}},
                "required": ["key"],
            },
            output_schema={"type": "object", "properties": {"found": {"type": "boolean"}}},
        ),
        impl,
    )
    p = plan(
        {
            "id": "a",
            "tool": "lookup",
            "inputs": {"key": 5, "free": "extra inputs are allowed here"},
        },
        {"id": "b", "tool": "lookup", "inputs": {"key": "${steps.a.output.value}"}},
    )
    assert problems(p, registry) == [
        "step 'a' (tool 'lookup'): input 'key': 5 is not of type 'string'",
        "step 'b': ${steps.a.output.value} — tool 'lookup' output has no field 'value' (fields: found)",
    ]


def test_step_dependencies_combine_depends_on_and_references() -> None:
    p = plan(
        {"id": "a", "tool": "noop"},
        {"id": "b", "tool": "noop"},
        {
            "id": "c",
            "tool": "noop",
            "depends_on": ["a"],
            "inputs": {"value": {"x": ["${steps.b.output.v}"]}},
        },
    )
    assert step_dependencies(p.step("c")) == {"a", "b"}
    assert step_dependencies(p.step("a")) == set()


def test_execution_order_is_topological() -> None:
    p = plan(
        {"id": "report", "tool": "noop", "inputs": {"value": "${steps.sum.output.value}"}},
        {"id": "sum", "tool": "add", "inputs": {"a": "${steps.load.output.value}"}},
        {"id": "load", "tool": "noop"},
        {"id": "audit", "tool": "noop", "depends_on": ["report", "load"]},
    )
    order = execution_order(p)
    assert sorted(order) == sorted(s.id for s in p.steps)
    for s in p.steps:
        for dep in step_dependencies(s):
            assert order.index(dep) < order.index(s.id), (dep, s.id)
    assert order == ["load", "sum", "report", "audit"]


def test_execution_order_keeps_the_file_order_where_it_can() -> None:
    ids = ["e", "d", "c", "b", "a"]
    independent = plan(*({"id": i, "tool": "noop"} for i in ids))
    assert execution_order(independent) == ids

    already_sorted = plan(
        {"id": "a", "tool": "noop"},
        {"id": "b", "tool": "noop", "depends_on": ["a"]},
        {"id": "c", "tool": "noop"},
        {"id": "d", "tool": "noop", "depends_on": ["b", "c"]},
        {"id": "e", "tool": "noop"},
    )
    assert execution_order(already_sorted) == ["a", "b", "c", "d", "e"]
    # same input, same output
    assert execution_order(already_sorted) == execution_order(already_sorted.model_copy(deep=True))


def test_bundled_examples_validate_against_the_default_registry(registry: ToolRegistry) -> None:
    # `registry` is the conftest fixture: built-ins plus the test tools, as the engine sees them
    assert example_names()
    for name in example_names():
        p = load_workflow_file(example_path(name))
        assert validate_plan(p, registry) is None
        assert sorted(execution_order(p)) == sorted(s.id for s in p.steps)
