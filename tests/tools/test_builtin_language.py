"""The LLM-backed tools with scripted models: prompts, outputs, citations, checks done in code."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from intelligent_orchestrator.errors import ToolError, ToolInputError
from intelligent_orchestrator.llm import BoundLlm, CallScope, ModelGateway
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.tools.builtin import (
    extract,
    qa_review,
    research,
    seo_optimize,
    summarize,
    translate,
    write_content,
)
from intelligent_orchestrator.tools.builtin.knowledge import Bm25, html_to_text, passages
from intelligent_orchestrator.tools.spec import ToolContext
from tests.support.models import Script, scripted

SALE = """# Spring sale

Our spring sale runs from March 20 to April 10. All garden furniture is 25% off.

# Delivery

Customers who spend over 200 EUR get free delivery within Germany.
"""

RETURNS = (
    "<html><body><h1>Returns</h1><p>Sale items can be returned within 30 days.</p>"
    "<script>var tracking = 1;</script></body></html>"
)


@pytest.fixture
def knowledge(workspace: Path) -> Path:
    k = workspace / "knowledge"
    k.mkdir()
    (k / "sale.md").write_text(SALE)
    (k / "returns.html").write_text(RETURNS)
    (k / "ignored.bin").write_bytes(b"\x00\x01")
    return k


def with_model(ctx: ToolContext, script: Script) -> ToolContext:
    gateway = ModelGateway(
        Settings(home=ctx.workspace.parent / "home"), models={"local": script.model}
    )
    ctx.llm = BoundLlm(gateway, CallScope(task_id=ctx.task_id, step_id=ctx.step_id))
    return ctx


async def run(tool: Any, ctx: ToolContext, **args: Any) -> dict[str, Any]:
    return await tool.invoke(args, ctx)


# knowledge ---------------------------------------------------------------------------------
def test_html_text_drops_scripts_and_keeps_blocks() -> None:
    assert html_to_text(RETURNS) == "Returns\n\nSale items can be returned within 30 days."


def test_bm25_ranks_the_passage_that_matches() -> None:
    items = passages("a.md", SALE, target_words=15) + passages("b.md", "Delivery is slow.")
    hits = Bm25(items).search("free delivery over 200 EUR", top_k=2)
    assert "Customers who spend over 200 EUR" in hits[0][0].text
    assert hits[0][1] > hits[1][1] > 0
    assert Bm25(items).search("unrelated zebra", top_k=3) == []


# research ----------------------------------------------------------------------------------
async def test_research_cites_what_it_found(ctx: ToolContext, knowledge: Path) -> None:
    script = scripted(
        {
            "summary": "Free delivery above 200 EUR [1]; returns in 30 days [2] [9].",
            "key_points": ["Delivery is free over 200 EUR [1]"],
        }
    )
    out = await run(research, with_model(ctx, script), query="delivery and returns of sale items")
    docs = [f["document"] for f in out["findings"]]
    assert set(docs) == {"knowledge/sale.md", "knowledge/returns.html"}
    assert [c["n"] for c in out["citations"]] == [1, 2]
    assert out["documents_searched"] == 2
    assert "[9]" not in out["summary"]  # a citation of a source that does not exist is dropped
    assert "[1]" in out["summary"]
    assert "[1] (knowledge/" in script.prompts[0]
    assert "Question: delivery and returns of sale items" in script.prompts[0]


async def test_research_with_no_match_asks_no_model(ctx: ToolContext, knowledge: Path) -> None:
    script = scripted("unused")
    out = await run(research, with_model(ctx, script), query="quantum zebra migration")
    assert out["findings"] == []
    assert "No document" in out["summary"]
    assert script.prompts == []


async def test_research_reads_pdfs(ctx: ToolContext, knowledge: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.text(0.1, 0.5, "Quarterly revenue grew 12 percent in Berlin")
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    (knowledge / "q3.pdf").write_bytes(buf.getvalue())
    (knowledge / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    out = await run(
        research,
        with_model(ctx, scripted({"summary": "Up 12% [1].", "key_points": []})),
        query="Berlin revenue",
    )
    assert out["findings"][0]["document"] == "knowledge/q3.pdf"
    assert any("broken.pdf" in u for u in out["unreadable"])


# write_content -----------------------------------------------------------------------------
async def test_write_content_uses_brief_material_and_cites_sources(ctx: ToolContext) -> None:
    script = scripted({"title": "Spring sale", "body": "Save 25% [1] on furniture.\n\nSee you!"})
    material = {
        "findings": [
            {
                "document": "knowledge/sale.md",
                "passage": "All garden furniture is 25% off.",
                "score": 2.0,
            },
            {"document": "knowledge/x.md", "passage": "Other", "score": 1.0},
        ]
    }
    out = await run(
        write_content,
        with_model(ctx, script),
        kind="newsletter",
        brief="Announce the spring sale",
        audience="gardeners",
        tone="friendly",
        length_words=120,
        inputs=material,
    )
    assert out["title"] == "Spring sale"
    assert out["word_count"] == 7
    assert [s["document"] for s in out["sources"]] == ["knowledge/sale.md"]  # only the cited one
    prompt = script.prompts[0]
    for part in (
        "newsletter",
        "Announce the spring sale",
        "gardeners",
        "friendly",
        "about 120 words",
        "[1] knowledge/sale.md",
    ):
        assert part in prompt


async def test_write_content_without_a_model_is_a_clear_error(ctx: ToolContext) -> None:
    with pytest.raises(ToolError, match="needs a model"):
        await run(write_content, ctx, kind="email", brief="Say hello")


async def test_write_content_rejects_unknown_kind(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="kind"):
        await run(write_content, ctx, kind="poem", brief="Say hello")


# summarize / translate ---------------------------------------------------------------------
async def test_summarize_a_workspace_document_within_the_word_limit(
    ctx: ToolContext, knowledge: Path
) -> None:
    long = " ".join(["word"] * 30)
    script = scripted({"summary": long})
    out = await run(summarize, with_model(ctx, script), path="knowledge/returns.html", max_words=10)
    assert out["word_count"] == 10
    assert out["summary"].endswith("…")
    assert out["sources"][0]["document"] == "knowledge/returns.html"
    assert "returned within 30 days" in script.prompts[0]
    assert "<script>" not in script.prompts[0]


async def test_summarize_needs_exactly_one_source(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="exactly one"):
        await run(summarize, with_model(ctx, scripted("x")), text="a", path="b.md")
    with pytest.raises(ToolInputError, match="exactly one"):
        await run(summarize, with_model(ctx, scripted("x")))


async def test_translate_keeps_the_given_source_language(ctx: ToolContext) -> None:
    script = scripted(
        {"translation": "Unser Verkauf beginnt am 20. März.", "source_language": "French"}
    )
    out = await run(
        translate,
        with_model(ctx, script),
        text="Our sale starts on March 20.",
        target_language="German",
        source_language="English",
    )
    assert out == {
        "translation": "Unser Verkauf beginnt am 20. März.",
        "target_language": "German",
        "source_language": "English",
    }
    assert "Translate into German from English" in script.prompts[0]


# extract -----------------------------------------------------------------------------------
FIELDS = {
    "type": "object",
    "properties": {
        "start": {"type": "string"},
        "discount": {"type": "number", "maximum": 100},
        "city": {"type": "string"},
    },
    "required": ["start", "discount", "city"],
}


async def test_extract_reports_missing_and_invalid_fields(
    ctx: ToolContext, knowledge: Path
) -> None:
    script = scripted({"start": "March 20", "discount": 250, "city": None})
    out = await run(extract, with_model(ctx, script), fields=FIELDS, path="knowledge/sale.md")
    assert out["data"] == {"start": "March 20", "discount": 250}
    assert out["missing"] == ["city"]
    assert out["valid"] is False
    assert any("250" in e for e in out["errors"])


async def test_extract_refuses_a_schema_that_is_not_an_object(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="object with properties"):
        await run(extract, with_model(ctx, scripted("{}")), fields={"type": "string"}, text="x")
    with pytest.raises(ToolInputError, match="not a valid JSON schema"):
        await run(
            extract,
            with_model(ctx, scripted("{}")),
            fields={"type": "object", "properties": {"a": {"type": 5}}},
            text="x",
        )


# qa_review ---------------------------------------------------------------------------------
TEXT = "Our sale is great.\nIt is the BEST SALE EVER and revenue grew 18%.\nThanks for reading [1]."


async def test_qa_review_locates_problems_and_drops_invented_quotes(ctx: ToolContext) -> None:
    script = scripted(
        {
            "problems": [
                {"check": "tone", "excerpt": "Our sale is great", "message": "vague"},
                {"check": "grammar", "excerpt": "words that are not there", "message": "invented"},
            ]
        }
    )
    out = await run(
        qa_review,
        with_model(ctx, script),
        text=TEXT,
        banned_phrases=["best sale ever"],
        require_citations=True,
        max_words=10,
        tone="formal",
    )
    by_check = {p["check"]: p for p in out["problems"]}
    assert by_check["banned_phrase"]["location"] == {
        "line": 2,
        "column": 11,
        "excerpt": "best sale ever",
    }
    assert by_check["citation"]["location"]["line"] == 2
    assert by_check["length"]["message"] == "18 words, more than 10"
    assert by_check["tone"]["location"]["line"] == 1
    assert "grammar" not in by_check
    assert out["passed"] is False
    assert "Expected tone: formal" in script.prompts[0]


async def test_qa_review_passes_a_clean_text(ctx: ToolContext) -> None:
    out = await run(
        qa_review,
        with_model(ctx, scripted({"problems": []})),
        text="Revenue grew 18% [1].",
        require_citations=True,
    )
    assert out["passed"] is True
    assert out["problems"] == []


# seo_optimize ------------------------------------------------------------------------------
async def test_seo_limits_are_enforced_whatever_the_model_says(ctx: ToolContext) -> None:
    script = scripted(
        {
            "title": "Spring Sale: Twenty-Five Percent Off Every Piece of Garden Furniture!",
            "meta_description": "x" * 20,
            "keywords": ["garden furniture", "spring sale"],
            "headings": ["## Why now", "Delivery"],
        }
    )
    out = await run(seo_optimize, with_model(ctx, script), text=SALE, keywords=["garden sale"])
    assert len(out["title"]) <= 60
    assert out["title"].startswith("Spring Sale")
    assert out["meta_description"].startswith("Our spring sale runs")  # model's was too thin
    assert len(out["meta_description"]) <= 155
    assert out["keywords"] == ["garden sale", "garden furniture", "spring sale"]
    assert out["headings"] == ["Why now", "Delivery"]
    assert out["keyword_counts"]["garden furniture"] == 1
    assert out["slug"] == "spring-sale-twenty-five-percent-off-every-piece-of-garden"


def test_every_language_tool_output_is_json(ctx: ToolContext) -> None:
    for t in (research, write_content, summarize, translate, extract, qa_review, seo_optimize):
        assert t.spec.output_schema["type"] == "object"
        assert json.dumps(t.spec.input_schema)


async def test_research_fetches_urls_and_cites_them(ctx: ToolContext, knowledge: Path) -> None:
    import httpx

    def page(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/pricing":
            html = (
                "<html><body><p>Enterprise pricing starts at 900 EUR per month.</p></body></html>"
            )
            return httpx.Response(200, text=html, headers={"content-type": "text/html"})
        return httpx.Response(404, text="missing")

    ctx.http_transport = httpx.MockTransport(page)
    script = scripted({"summary": "Enterprise starts at 900 EUR [1].", "key_points": []})
    out = await run(
        research,
        with_model(ctx, script),
        query="enterprise pricing per month",
        urls=["https://example.com/pricing", "https://example.com/gone"],
    )
    assert out["findings"][0]["document"] == "https://example.com/pricing"
    assert out["findings"][0]["passage"] == "Enterprise pricing starts at 900 EUR per month."
    assert any("gone" in u and "404" in u for u in out["unreadable"])


async def test_a_long_piece_is_written_as_an_outline_then_sections(ctx: ToolContext) -> None:
    """A small model writes 130 words well and 600 badly: a long post is planned, then
    each section is written in its own call."""

    def answer(prompt: str) -> dict[str, Any]:
        if "Write the section:" in prompt:
            heading = prompt.rsplit("Write the section:", 1)[1].strip()
            return {"text": f"Text about {heading.lower()}. " * 20}
        return {
            "title": "Spring sale",
            "intro": "Our garden sale starts soon.",
            "headings": ["Chairs", "Tables", "Parasols", "Delivery", "Extra"],
        }

    script = scripted(answer)
    out = await run(
        write_content,
        with_model(ctx, script),
        kind="blog_post",
        brief="our spring sale",
        length_words=600,
    )
    # 600 words / 130 per section -> 5 sections asked for: an outline call, then one per section
    assert len(script.prompts) == 1 + 5
    assert "exactly 5 section headings" in (script.instructions[0] or "")
    assert out["body"].startswith("Our garden sale starts soon.\n\n## Chairs\n\nText about chairs.")
    assert [line for line in out["body"].splitlines() if line.startswith("## ")] == [
        "## Chairs",
        "## Tables",
        "## Parasols",
        "## Delivery",
        "## Extra",
    ]
    assert out["title"] == "Spring sale"
    assert out["word_count"] == len(out["body"].split()) > 5 * 60  # every section is kept
    # each section call was told its share of the length and the other sections
    assert all("about 119 words" in (i or "") for i in script.instructions[1:])
    # room for a token per character of the section's cap (119 words * 8): a small model's
    # lists, line breaks and emoji take more than one token per two characters, and a
    # section cut off by the token limit is not JSON (it failed the whole task once)
    assert all(s["max_tokens"] >= 119 * 8 for s in script.settings[1:])
    assert "All sections: Chairs; Tables; Parasols; Delivery; Extra" in script.prompts[1]


async def test_the_draft_length_is_bounded_in_the_schema_the_model_is_shown(
    ctx: ToolContext,
) -> None:
    """A small local model now and then ends a 60-word post after four words: the schema
    (a local model's JSON grammar) asks for at least a third of the length. The floor is not
    validated: a shorter reply is kept, and the quality checks judge it."""
    schemas: list[dict[str, Any]] = []

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        output = info.model_request_parameters.output_object
        assert output is not None
        schemas.append(output.json_schema)
        return ModelResponse(parts=[TextPart('{"title": "Sale", "body": "25% off!"}')])

    gateway = ModelGateway(
        Settings(home=ctx.workspace.parent / "home"), models={"local": FunctionModel(answer)}
    )
    ctx.llm = BoundLlm(gateway, CallScope(task_id=ctx.task_id, step_id=ctx.step_id))
    out = await run(write_content, ctx, kind="social_post", brief="sale", length_words=60)
    assert out["body"] == "25% off!"
    body = schemas[0]["properties"]["body"]
    assert (body["minLength"], body["maxLength"]) == (100, 900)  # the 51-100 words bucket
    await run(write_content, ctx, kind="email", brief="sale", length_words=300)
    body = schemas[1]["properties"]["body"]
    assert (body["minLength"], body["maxLength"]) == (400, 3600)  # 201-400 words


async def test_a_short_piece_is_one_call(ctx: ToolContext) -> None:
    script = scripted({"title": "Sale", "body": "Garden chairs are cheaper this week."})
    out = await run(
        write_content, with_model(ctx, script), kind="blog_post", brief="sale", length_words=200
    )
    assert len(script.prompts) == 1
    assert out["body"] == "Garden chairs are cheaper this week."


async def test_a_draft_far_longer_than_asked_is_shortened_once(ctx: ToolContext) -> None:
    """A small model asked for 80 words now and then writes 160: a second call rewrites it to
    the length, and the shorter of the two is kept."""
    long = " ".join(["Big sale!"] * 80)  # 160 words, within the first call's 900 characters
    short = "Spring sale: garden chairs and tables 25% off until Sunday. #garden #sale"
    script = scripted({"title": "Sale", "body": long}, {"title": "Spring sale", "body": short})
    out = await run(
        write_content, with_model(ctx, script), kind="social_post", brief="sale", length_words=80
    )
    assert (out["title"], out["body"], out["word_count"]) == ("Spring sale", short, 12)
    assert len(script.prompts) == 2
    assert "Shorten this social post to at most 80 words" in script.prompts[1]
    assert long in script.prompts[1]

    # A rewrite that is no shorter is dropped, and so is one that never fits its cap (the
    # draft stands, judged as it is); a draft within half again the length is kept as it is,
    # in one call.
    no_shorter = " ".join(["Go!"] * 161)
    script = scripted({"title": "Sale", "body": long}, {"title": "Sale", "body": no_shorter})
    out = await run(
        write_content, with_model(ctx, script), kind="social_post", brief="sale", length_words=80
    )
    assert (out["body"], len(script.prompts)) == (long, 2)
    script = scripted({"title": "Sale", "body": long}, {"title": "Sale", "body": "x " * 500})
    out = await run(
        write_content, with_model(ctx, script), kind="social_post", brief="sale", length_words=80
    )
    assert out["body"] == long
    assert len(script.prompts) > 2  # (the rewrite was asked again, then given up)
    script = scripted({"title": "Sale", "body": long})
    out = await run(
        write_content, with_model(ctx, script), kind="social_post", brief="sale", length_words=110
    )
    assert (out["word_count"], len(script.prompts)) == (160, 1)


async def test_the_rewrite_is_capped_below_the_first_draft(ctx: ToolContext) -> None:
    schemas: list[dict[str, Any]] = []
    long = " ".join(["wd"] * 200)

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        output = info.model_request_parameters.output_object
        assert output is not None
        schemas.append(output.json_schema)
        body = long if len(schemas) == 1 else "A short post."
        return ModelResponse(parts=[TextPart(json.dumps({"title": "Sale", "body": body}))])

    gateway = ModelGateway(
        Settings(home=ctx.workspace.parent / "home"), models={"local": FunctionModel(answer)}
    )
    ctx.llm = BoundLlm(gateway, CallScope(task_id=ctx.task_id, step_id=ctx.step_id))
    out = await run(write_content, ctx, kind="social_post", brief="sale", length_words=80)
    assert out["body"] == "A short post."
    first, rewrite = (s["properties"]["body"] for s in schemas)
    assert (first["minLength"], first["maxLength"]) == (100, 900)
    assert (rewrite["minLength"], rewrite["maxLength"]) == (160, 780)
