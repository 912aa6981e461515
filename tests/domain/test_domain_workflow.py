from __future__ import annotations

import json
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import SCHEMA_VERSION, ExecutionPlan
from intelligent_orchestrator.domain.workflow import load_workflow_file, parse_workflow
from intelligent_orchestrator.errors import WorkflowValidationError

YAML_DOC = """\
name: sales-report
description: Monthly figures
requires_approval: true
max_concurrency: 2
steps:
  - id: load
    tool: query_data
    inputs:
      sql: SELECT 1
  - id: chart_1
    tool: chart
    depends_on: [load]
    inputs:
      rows: ${steps.load.output.rows}
    retries: 2
    timeout_seconds: 5
  - id: notify-me
    tool: noop
    inputs:
"""

JSON_DOC = {
    "name": "sales-report",
    "description": "Monthly figures",
    "requires_approval": True,
    "max_concurrency": 2,
    "steps": [
        {"id": "load", "tool": "query_data", "inputs": {"sql": "SELECT 1"}},
        {
            "id": "chart_1",
            "tool": "chart",
            "depends_on": ["load"],
            "inputs": {"rows": "${steps.load.output.rows}"},
            "retries": 2,
            "timeout_seconds": 5,
        },
        {"id": "notify-me", "tool": "noop", "inputs": None},
    ],
}


def _check_sales_plan(plan: ExecutionPlan) -> None:
    assert plan.name == "sales-report"
    assert plan.description == "Monthly figures"
    assert plan.requires_approval is True
    assert plan.max_concurrency == 2
    assert plan.schema_version == SCHEMA_VERSION
    assert [s.id for s in plan.steps] == ["load", "chart_1", "notify-me"]
    chart = plan.step("chart_1")
    assert chart.tool == "chart"
    assert chart.depends_on == ["load"]
    assert chart.inputs == {"rows": "${steps.load.output.rows}"}
    assert chart.retries == 2
    assert chart.timeout_seconds == 5
    # `inputs:` left empty (null) becomes an empty mapping
    assert plan.step("notify-me").inputs == {}
    assert plan.step("load").depends_on == []


def test_parse_yaml() -> None:
    _check_sales_plan(parse_workflow(YAML_DOC))


def test_parse_json_detected_from_the_text() -> None:
    _check_sales_plan(parse_workflow(json.dumps(JSON_DOC, indent=2)))


def test_parse_json_with_explicit_format() -> None:
    _check_sales_plan(parse_workflow("\n\n" + json.dumps(JSON_DOC), fmt="json"))


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    for name, text in [
        ("wf.yaml", YAML_DOC),
        ("wf.yml", YAML_DOC),
        ("wf.json", json.dumps(JSON_DOC)),
        ("wf.JSON", json.dumps(JSON_DOC)),
    ]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        _check_sales_plan(load_workflow_file(path))


def test_plan_step_lookup_of_an_unknown_id_raises_key_error() -> None:
    plan = parse_workflow(YAML_DOC)
    with pytest.raises(KeyError):
        plan.step("nope")


def test_every_problem_is_listed_with_its_step() -> None:
    doc = """\
steps:
  - id: 1bad
    tool: noop
    extra: 1
  - tool: noop
    retries: -1
  - id: ok
    tool: noop
    timeout_seconds: 0
unknown_top: 1
"""
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(doc, source="flow.yaml")
    problems = exc.value.problems
    assert len(problems) == 6, problems
    assert all(p.startswith("flow.yaml: ") for p in problems)
    joined = "\n".join(problems)
    assert "step '1bad' field 'id': String should match pattern" in joined
    assert "step '1bad' field 'extra': Extra inputs are not permitted" in joined
    assert "steps[1] field 'id': Field required" in joined
    assert "steps[1] field 'retries': Input should be greater than or equal to 0" in joined
    assert "step 'ok' field 'timeout_seconds': Input should be greater than 0" in joined
    assert "field 'unknown_top': Extra inputs are not permitted" in joined
    # the exception text lists them all too
    assert "6 problem(s)" in str(exc.value)
    for p in problems:
        assert p in str(exc.value)


@pytest.mark.parametrize(
    "step_id",
    ["a", "A1", "load_data", "load-data", "x" * 64],
)
def test_valid_step_ids(step_id: str) -> None:
    plan = parse_workflow(json.dumps({"steps": [{"id": step_id, "tool": "noop"}]}))
    assert plan.steps[0].id == step_id


@pytest.mark.parametrize(
    "step_id",
    ["1a", "_a", "-a", "a b", "a.b", "a$", "", "x" * 65, "é"],
)
def test_invalid_step_ids(step_id: str) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(json.dumps({"steps": [{"id": step_id, "tool": "noop"}]}))
    assert len(exc.value.problems) == 1
    assert "field 'id': String should match pattern" in exc.value.problems[0]


@pytest.mark.parametrize("doc", ["steps: []", '{"steps": []}'])
def test_a_workflow_needs_steps(doc: str) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(doc)
    assert exc.value.problems == [
        "<workflow>: field 'steps': Value error, a workflow needs at least one step"
    ]


def test_a_workflow_without_a_steps_key_is_refused() -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow("name: x\n", source="w.yaml")
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith("w.yaml: field 'steps': ")


@pytest.mark.parametrize("doc", ["", "- a\n- b\n", "[1, 2]", "just text", "42"])
def test_the_document_must_be_a_mapping(doc: str) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(doc, source="w.yaml")
    assert exc.value.problems == ["w.yaml: the document must be a mapping with a 'steps' list"]


def test_steps_must_be_a_list_of_mappings() -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow("steps: 3")
    assert exc.value.problems == ["<workflow>: field 'steps': Input should be a valid list"]
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow("steps: [hello]")
    assert exc.value.problems == ["<workflow>: steps[0] must be a mapping"]


def test_a_non_mapping_step_does_not_hide_the_other_problems() -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow("steps:\n  - hello\n  - {id: 1bad, tool: noop}\n")
    joined = "\n".join(exc.value.problems)
    assert "steps[0]" in joined
    assert "'1bad'" in joined


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ("name: x\n\tsteps: []\n", "invalid YAML at line 2, column 1"),
        (
            "steps:\n  - id: a\n    tool: noop\n    inputs: {x: 1\n  - id: b\n",
            "invalid YAML at line 5, column 7",
        ),
    ],
)
def test_malformed_yaml_reports_the_line(doc: str, where: str) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(doc, source="bad.yaml")
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"bad.yaml: {where}: ")


def test_malformed_json_reports_line_and_column() -> None:
    doc = '{\n  "steps": [\n    {"id": "a", "tool": }\n  ]\n}'
    with pytest.raises(WorkflowValidationError) as exc:
        parse_workflow(doc, source="bad.json")
    assert exc.value.problems == ["bad.json: invalid JSON at line 3, column 25: Expecting value"]


def test_json_file_is_parsed_as_json_even_if_yaml_would_accept_it(tmp_path: Path) -> None:
    # valid YAML, invalid JSON: a .json file must be rejected as JSON
    path = tmp_path / "flow.json"
    path.write_text("steps:\n  - id: a\n    tool: noop\n", encoding="utf-8")
    with pytest.raises(WorkflowValidationError) as exc:
        load_workflow_file(path)
    assert exc.value.problems[0].startswith(f"{path}: invalid JSON at line 1, column 1")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(WorkflowValidationError) as exc:
        load_workflow_file(path)
    assert exc.value.problems == [f"{path}: no such file"]


def test_a_directory_is_not_a_workflow_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        load_workflow_file(tmp_path)
    assert exc.value.problems == [f"{tmp_path}: no such file"]


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\nsteps: []\n".encode("latin-1"))
    with pytest.raises(WorkflowValidationError) as exc:
        load_workflow_file(path)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"{path}: not UTF-8 text")


def test_problems_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("steps:\n  - id: a\n", encoding="utf-8")
    with pytest.raises(WorkflowValidationError) as exc:
        load_workflow_file(path)
    assert exc.value.problems == [f"{path}: step 'a' field 'tool': Field required"]
