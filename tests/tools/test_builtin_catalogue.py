from __future__ import annotations

import pytest

from intelligent_orchestrator.errors import ToolInputError
from intelligent_orchestrator.tools.builtin import builtin_tools
from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import ToolContext

EXPECTED = {
    "read_file": "files",
    "write_file": "files",
    "http_request": "network",
    "query_data": "data",
    "business_metrics": "analysis",
    "chart": "analysis",
    "send_email": "communication",
    "publish_post": "publishing",
    "post_webhook": "network",
    "research": "research",
    "write_content": "content",
    "summarize": "content",
    "translate": "language",
    "extract": "data",
    "qa_review": "quality",
    "seo_optimize": "marketing",
}
LLM_TOOLS = {
    "research",
    "write_content",
    "summarize",
    "translate",
    "extract",
    "qa_review",
    "seo_optimize",
}


def test_catalogue_ids_categories_and_costs() -> None:
    tools = builtin_tools()
    assert {t.tool_id: t.spec.category for t in tools} == EXPECTED
    for t in tools:
        if t.tool_id in LLM_TOOLS:  # model calls cost something and take longer
            assert 0 < t.spec.estimated_cost < 0.01
            assert t.spec.timeout_seconds >= 300
        else:
            assert t.spec.estimated_cost == 0
            assert 0 < t.spec.timeout_seconds <= 120
        assert len(t.spec.description) > 30, t.tool_id
        assert t.spec.input_schema["type"] == "object"
        assert t.spec.output_schema["type"] == "object", t.tool_id
    assert ToolRegistry(tools).specs()[0].tool_id == "business_metrics"
    # DESIGN.md's catalogue, exactly
    assert set(EXPECTED) == {
        "research",
        "http_request",
        "write_content",
        "summarize",
        "translate",
        "extract",
        "qa_review",
        "seo_optimize",
        "query_data",
        "business_metrics",
        "chart",
        "read_file",
        "write_file",
        "send_email",
        "publish_post",
        "post_webhook",
    }


def test_input_schemas_carry_descriptions_and_bounds() -> None:
    tools = {t.tool_id: t for t in builtin_tools()}
    max_rows = tools["query_data"].spec.input_schema["properties"]["max_rows"]
    assert max_rows["minimum"] == 1
    assert "description" in max_rows
    for t in tools.values():
        for name, prop in t.spec.input_schema["properties"].items():
            assert prop.get("description"), f"{t.tool_id}.{name} has no description"


def test_each_call_returns_a_fresh_list() -> None:
    first = builtin_tools()
    first.clear()
    assert len(builtin_tools()) == len(EXPECTED)


def test_only_write_file_and_non_get_requests_need_approval() -> None:
    tools = {t.tool_id: t for t in builtin_tools()}
    assert tools["write_file"].needs_approval({"path": "drafts/a.md", "content": "x"}) is False
    assert tools["write_file"].needs_approval({"path": "out/a.md", "content": "x"}) is True
    assert tools["http_request"].needs_approval({"url": "https://x.test", "method": "GET"}) is False
    assert tools["http_request"].needs_approval({"url": "https://x.test", "method": "POST"}) is True
    for tid in ("read_file", "query_data", "business_metrics", "chart"):
        assert tools[tid].needs_approval({}) is False


@pytest.mark.parametrize(
    ("tool_id", "args", "field"),
    [
        ("query_data", {"tables": {}}, "'sql'"),
        ("read_file", {}, "'path'"),
        ("write_file", {"path": "a.txt", "mode": "truncate", "content": "x"}, "'mode'"),
        ("chart", {"rows": [{"a": 1}], "y": "a"}, "'x'"),
        ("http_request", {"url": "https://x.test", "verb": "GET"}, "'verb'"),
    ],
)
async def test_schema_errors_name_the_field(
    ctx: ToolContext, tool_id: str, args: dict[str, object], field: str
) -> None:
    tool = next(t for t in builtin_tools() if t.tool_id == tool_id)
    with pytest.raises(ToolInputError, match=field) as info:
        await tool.invoke(args, ctx)
    assert info.value.tool_id == tool_id
