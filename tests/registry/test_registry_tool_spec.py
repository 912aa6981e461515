import dataclasses
import uuid
from pathlib import Path
from typing import Annotated, Any

import fastjsonschema
import pytest
from pydantic import BaseModel, Field

from intelligent_orchestrator.domain.models import ToolSpecification
from intelligent_orchestrator.errors import ConfigError, ToolInputError, ToolNotFoundError
from intelligent_orchestrator.tools import Tool, ToolContext, ToolRegistry, tool
from intelligent_orchestrator.tools import spec as spec_module


class Summary(BaseModel):
    """What ``summarise`` returns."""

    total: int
    label: str = "sum"


@tool("summarise", category="math", estimated_cost=0.25, success_rate=0.9, timeout_seconds=12)
async def summarise(
    context: ToolContext,
    numbers: Annotated[list[int], Field(description="Numbers to add.", min_length=1)],
    factor: Annotated[int, Field(description="Multiplier.", ge=1, le=10)] = 1,
    label: str = "sum",
) -> Summary:
    """Add numbers and scale the sum.

    This second paragraph is not part of the description.
    """
    return Summary(total=sum(numbers) * factor, label=f"{label}@{context.step_id}")


@tool()
async def plain_echo(text: str, times: int = 1) -> dict[str, str]:
    return {"text": text * times}


@tool("untyped_result", description="Explicit description.", name="Untyped!")
async def untyped_result(value: int):  # no return annotation on purpose
    """Docstring that loses against the explicit description."""
    return value


@tool("sender", side_effects=True)
async def sender(to: str) -> dict[str, str]:
    """Send something."""
    return {"sent": to}


def _ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(task_id="t1", step_id="s1", workspace=tmp_path, idempotency_key="t1:s1")


def test_input_schema_from_type_hints() -> None:
    schema = summarise.spec.input_schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["numbers"]
    assert set(schema["properties"]) == {
        "numbers",
        "factor",
        "label",
    }  # the context is not an input
    numbers = schema["properties"]["numbers"]
    assert numbers["type"] == "array"
    assert numbers["items"] == {"type": "integer"}
    assert numbers["description"] == "Numbers to add."
    assert numbers["minItems"] == 1
    factor = schema["properties"]["factor"]
    assert factor == {
        "default": 1,
        "description": "Multiplier.",
        "maximum": 10,
        "minimum": 1,
        "title": "Factor",
        "type": "integer",
    }
    assert schema["properties"]["label"]["default"] == "sum"


def test_output_schema_from_the_return_type() -> None:
    out = summarise.spec.output_schema
    assert out["type"] == "object"
    assert set(out["properties"]) == {"total", "label"}
    assert out["required"] == ["total"]
    assert plain_echo.spec.output_schema == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    assert untyped_result.spec.output_schema == {}


def test_specification_fields() -> None:
    spec = summarise.spec
    assert spec.tool_id == "summarise"
    assert spec.name == "Summarise"
    assert spec.description == "Add numbers and scale the sum."
    assert spec.category == "math"
    assert spec.estimated_cost == 0.25
    assert spec.success_rate == 0.9
    assert spec.timeout_seconds == 12
    assert spec.source == "builtin"
    assert spec.side_effects is False


def test_defaults_for_id_name_and_description() -> None:
    assert plain_echo.tool_id == "plain_echo"
    assert plain_echo.spec.name == "Plain echo"
    assert plain_echo.spec.description == "plain_echo"  # no docstring: the id
    assert plain_echo.spec.category == "general"
    assert untyped_result.spec.name == "Untyped!"
    assert untyped_result.spec.description == "Explicit description."


def test_a_sync_function_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:

        @tool("sync_tool")
        def sync_tool(x: int) -> int:  # pragma: no cover - never called
            return x

    assert exc.value.setting == "tools"
    assert "'sync_tool' must be an async function" in str(exc.value)


async def test_invoke_validates_passes_the_context_and_returns_json(tmp_path: Path) -> None:
    result = await summarise.invoke({"numbers": [1, 2, 3], "factor": 2}, _ctx(tmp_path))
    assert result == {"total": 12, "label": "sum@s1"}
    assert await plain_echo.invoke({"text": "ab", "times": 2}, _ctx(tmp_path)) == {"text": "abab"}


async def test_invoke_refuses_bad_input_before_running(tmp_path: Path) -> None:
    with pytest.raises(ToolInputError) as exc:
        await summarise.invoke({"numbers": [], "factor": 2}, _ctx(tmp_path))
    assert exc.value.tool_id == "summarise"
    assert "field 'numbers'" in str(exc.value)


def test_validate_input_fills_defaults() -> None:
    assert summarise.validate_input({"numbers": [1]}) == {
        "numbers": [1],
        "factor": 1,
        "label": "sum",
    }


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ({}, ["field 'numbers': Field required"]),
        (
            {"numbers": [1], "factor": 11},
            ["field 'factor': Input should be less than or equal to 10"],
        ),
        (
            {"numbers": [1], "factor": 0},
            ["field 'factor': Input should be greater than or equal to 1"],
        ),
        ({"numbers": ["x"]}, ["field 'numbers.0': Input should be a valid integer"]),
        (
            {"numbers": [1], "colour": "red", "factor": "lots"},
            [
                "field 'factor': Input should be a valid integer",
                "field 'colour': Extra inputs are not permitted",
            ],
        ),
    ],
)
def test_validate_input_names_every_bad_field(args: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ToolInputError) as exc:
        summarise.validate_input(args)
    message = str(exc.value)
    assert message.startswith("invalid input for tool 'summarise': ")
    for fragment in fragments:
        assert fragment in message


RAW_SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 1},
        "opts": {"type": "object", "properties": {"mode": {"type": "string", "enum": ["a", "b"]}}},
    },
    "required": ["n"],
    "additionalProperties": False,
}


async def _raw_impl(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"got": args, "step": ctx.step_id}


def _raw_registry() -> tuple[ToolRegistry, Tool]:
    registry = ToolRegistry()
    spec = ToolSpecification(
        tool_id="raw_tool", name="Raw", description="A raw one.", input_schema=RAW_SCHEMA
    )
    return registry, registry.register_tool(spec, _raw_impl)


def test_register_tool_with_a_raw_schema_validates_with_jsonschema() -> None:
    _, raw = _raw_registry()
    assert raw.input_model is None
    assert raw.validate_input({"n": 2, "opts": {"mode": "a"}}) == {"n": 2, "opts": {"mode": "a"}}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ({}, ["'n' is a required property"]),
        ({"n": 0}, ["field 'n': 0 is less than the minimum of 1"]),
        ({"n": "two"}, ["field 'n': 'two' is not of type 'integer'"]),
        ({"n": 1, "opts": {"mode": "c"}}, ["field 'opts.mode': 'c' is not one of ['a', 'b']"]),
        (
            {"n": 0, "extra": True},
            [
                "field 'n': 0 is less than the minimum of 1",
                "Additional properties are not allowed ('extra' was unexpected)",
            ],
        ),
    ],
)
def test_raw_schema_errors_name_the_field(args: dict[str, Any], fragments: list[str]) -> None:
    _, raw = _raw_registry()
    with pytest.raises(ToolInputError) as exc:
        raw.validate_input(args)
    assert exc.value.tool_id == "raw_tool"
    assert str(exc.value).startswith("invalid input for tool 'raw_tool': ")
    for fragment in fragments:
        assert fragment in str(exc.value)


async def test_raw_tool_invoke(tmp_path: Path) -> None:
    registry, _ = _raw_registry()
    result = await registry.get("raw_tool").invoke({"n": 3}, _ctx(tmp_path))
    assert result == {"got": {"n": 3}, "step": "s1"}


def test_registry_lookup_and_listing() -> None:
    registry = ToolRegistry([summarise, plain_echo])
    assert len(registry) == 2
    assert "summarise" in registry
    assert "nope" not in registry
    assert registry.get("plain_echo") is plain_echo
    assert [s.tool_id for s in registry.specs()] == ["plain_echo", "summarise"]
    with pytest.raises(ToolNotFoundError) as exc:
        registry.get("nope")
    assert exc.value.tool_id == "nope"
    assert "unknown tool 'nope'" in str(exc.value)


def test_a_duplicate_id_is_refused_unless_replace() -> None:
    registry = ToolRegistry([summarise])
    other = dataclasses.replace(
        summarise, spec=summarise.spec.model_copy(update={"source": "plugin:x"})
    )
    with pytest.raises(ConfigError) as exc:
        registry.register(other)
    assert exc.value.setting == "tools"
    assert "tool id 'summarise' is already registered (source 'builtin')" in str(exc.value)
    assert registry.get("summarise") is summarise

    assert registry.register(other, replace=True) is other
    assert registry.get("summarise").spec.source == "plugin:x"
    assert len(registry) == 1


def test_a_duplicate_raw_registration_is_refused_unless_replace() -> None:
    registry, first = _raw_registry()
    with pytest.raises(ConfigError):
        registry.register_tool(first.spec, _raw_impl)
    replaced = registry.register_tool(
        first.spec.model_copy(update={"name": "Raw 2"}), _raw_impl, replace=True
    )
    assert registry.get("raw_tool") is replaced
    assert registry.get("raw_tool").spec.name == "Raw 2"


def test_tools_constructor_refuses_duplicates() -> None:
    with pytest.raises(ConfigError):
        ToolRegistry([summarise, summarise])


def test_needs_approval_follows_side_effects_by_default() -> None:
    assert summarise.needs_approval({"numbers": [1]}) is False
    assert sender.needs_approval({"to": "x"}) is True


@pytest.mark.parametrize(
    ("side_effects", "requires_approval", "expected"),
    [
        (False, None, False),
        (True, None, True),
        (True, False, False),
        (False, True, True),
    ],
)
def test_requires_approval_overrides_side_effects(
    side_effects: bool, requires_approval: bool | None, expected: bool
) -> None:
    spec = ToolSpecification(
        tool_id="t",
        name="T",
        description="d",
        side_effects=side_effects,
        requires_approval=requires_approval,
    )
    t = Tool(spec=spec, implementation=_raw_impl)
    assert spec.needs_approval is expected
    assert t.needs_approval({}) is expected


def test_approval_predicate_decides_per_call() -> None:
    seen: list[dict[str, Any]] = []

    def outside_drafts(args: dict[str, Any]) -> bool:
        seen.append(args)
        return not str(args.get("to", "")).startswith("drafts/")

    guarded = dataclasses.replace(sender, approval_predicate=outside_drafts)
    assert guarded.needs_approval({"to": "drafts/a"}) is False
    assert guarded.needs_approval({"to": "customers"}) is True
    assert seen == [{"to": "drafts/a"}, {"to": "customers"}]
    # the predicate wins over the specification
    assert guarded.spec.needs_approval is True


_SCHEMAS: list[dict[str, Any]] = [
    {  # what @tool derives: $defs, $ref with annotation siblings, defaults
        "type": "object",
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "properties": {
            "item": {"$ref": "#/$defs/Item", "description": "one item"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
            "ratio": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        },
        "required": ["item"],
        "additionalProperties": False,
    },
    {  # 2020-12 only: prefixItems (draft 7 would ignore it and pass anything)
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}
        },
    },
    {  # a $ref with a validating sibling: 2020-12 applies both, draft 7 only the $ref
        "type": "object",
        "$defs": {"S": {"type": "string"}},
        "properties": {"code": {"$ref": "#/$defs/S", "maxLength": 3}},
    },
]
_VALUES: list[Any] = [
    {"item": {"n": 1}},
    {"item": {"n": 1}, "tags": ["a"], "ratio": 0.5},
    {"item": {"n": "one"}},
    {"item": {"n": 1}, "ratio": 1},
    {"tags": ["a"]},
    {"item": {}, "extra": True},
    {"pair": [1, "x"]},
    {"pair": ["x", 1]},
    {"code": "abc"},
    {"code": "abcd"},
    {"code": 5},
    "not an object",
]


@pytest.mark.parametrize("schema", _SCHEMAS)
def test_schema_errors_agree_with_jsonschema(schema: dict[str, Any]) -> None:
    """The compiled fast check never calls a value valid that jsonschema (2020-12) refuses,
    the messages are jsonschema's, and checking fills no defaults into the value."""
    import copy

    import jsonschema

    from intelligent_orchestrator.tools.spec import schema_errors

    reference = jsonschema.Draft202012Validator(schema)
    for value in _VALUES:
        before = copy.deepcopy(value)
        got = [e.message for e in schema_errors(schema, value)]
        assert got == [e.message for e in reference.iter_errors(value)], value
        assert value == before


def test_the_fast_check_is_used_only_where_draft7_means_the_same() -> None:
    from intelligent_orchestrator.tools.spec import _fast_check  # pyright: ignore[reportPrivateUsage]

    assert _fast_check(_SCHEMAS[0]) is not None
    assert _fast_check(_SCHEMAS[1]) is None
    assert _fast_check(_SCHEMAS[2]) is None
    assert (
        _fast_check({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}})
        is None
    )


def test_prepare_builds_every_tools_input_check_before_its_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A schema no other test has compiled in this process.
    field = f"f_{uuid.uuid4().hex[:8]}"
    schema = {"type": "object", "properties": {field: {"type": "integer"}}, "required": [field]}
    registry = ToolRegistry()
    registry.register_tool(
        ToolSpecification(tool_id=field, name=field, description="d", input_schema=schema),
        _raw_impl,
    )
    compiled: list[Any] = []
    real = fastjsonschema.compile

    def counting(*a: Any, **k: Any) -> Any:
        compiled.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(fastjsonschema, "compile", counting)
    registry.prepare()
    assert compiled == [schema]
    # the first check of an input uses it: nothing is compiled then
    assert spec_module.schema_errors(schema, {field: 1}) == []
    assert [e.validator for e in spec_module.schema_errors(schema, {field: "x"})] == ["type"]
    assert compiled == [schema]
