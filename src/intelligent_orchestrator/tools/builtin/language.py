"""LLM-backed built-in tools: research, write_content, summarize, translate, extract,
qa_review and seo_optimize.

Every tool asks the model for a small, schema-constrained answer through the gateway (so the
embedded 0.5B model copes) and does in code what code does better: retrieval (BM25), word
counts, length limits, locating problems in the text, checking citations. Outputs carry
their sources where they have any.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, Field, create_model
from pydantic_ai import StructuredDict

from intelligent_orchestrator.errors import LlmOutputError, ToolInputError
from intelligent_orchestrator.tools.spec import ToolContext, tool

from .knowledge import Bm25, knowledge_passages, workspace_text

logger = logging.getLogger(__name__)

LLM_TIMEOUT = 600.0  # the embedded model writes ~50 tokens/s on two cores
MAX_PROMPT_CHARS = 12_000
_CITE = re.compile(r"\[(\d{1,2})\]")


class Citation(BaseModel):
    """Where a statement comes from."""

    n: int = Field(description="The number used in the text, as [n].")
    document: str = Field(description="Workspace path or URL.")
    passage: str = Field(description="The cited passage (shortened).")
    score: float | None = Field(default=None, description="Retrieval score (BM25).")


def _words(text: str) -> int:
    return len(text.split())


def _clip(text: str, limit: int = MAX_PROMPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " …[truncated]"


def _source_text(ctx: ToolContext, text: str | None, path: str | None) -> str:
    if (text is None) == (path is None):
        raise ToolInputError("give exactly one of 'text' or 'path'")
    if path is not None:
        return workspace_text(ctx.workspace, path)
    assert text is not None
    if not text.strip():
        raise ToolInputError("field 'text': empty")
    return text


def _citations_in(value: Any) -> list[Citation]:
    """Citations carried by an earlier step's output (research findings, a draft's sources)."""
    found: list[Citation] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if {"document", "passage"} <= v.keys():
                found.append(
                    Citation(
                        n=len(found) + 1,
                        document=str(v["document"]),
                        passage=str(v["passage"])[:300],
                        score=v.get("score"),
                    )
                )
                return
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    unique: dict[tuple[str, str], Citation] = {}
    for c in found:
        unique.setdefault((c.document, c.passage), c)
    return [c.model_copy(update={"n": i}) for i, c in enumerate(unique.values(), start=1)]


def _cited(text: str, sources: list[Citation]) -> list[Citation]:
    used = {int(m) for m in _CITE.findall(text)}
    return [c for c in sources if c.n in used]


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# research ----------------------------------------------------------------------------------
class Finding(BaseModel):
    document: str
    passage: str
    score: float
    n: int = Field(description="Citation number.")


class ResearchOutput(BaseModel):
    query: str
    summary: str = Field(description="What the sources say, citing them as [n].")
    key_points: list[str]
    findings: list[Finding]
    citations: list[Citation]
    documents_searched: int
    unreadable: list[str] = Field(default_factory=list)


class _ResearchNotes(BaseModel):
    summary: str = Field(max_length=800)
    key_points: list[str] = Field(max_length=5)


@tool(
    "research",
    name="Research",
    category="research",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def research(
    query: Annotated[str, Field(min_length=2, description="What to find out.")],
    ctx: ToolContext,
    top_k: Annotated[int, Field(ge=1, le=20, description="Passages to return.")] = 5,
    urls: Annotated[
        list[str], Field(max_length=5, description="Pages to fetch and search as well.")
    ] = [],  # noqa: B006  (the @tool schema needs a literal default)
) -> ResearchOutput:
    """Find what the workspace's knowledge/ documents (md, txt, pdf, html) and optional URLs say
    about a question: BM25 retrieval, then a cited summary."""
    items, unreadable = knowledge_passages(ctx.workspace)
    if urls:
        from .http import http_request
        from .knowledge import html_to_text, passages

        for url in urls:
            page = await http_request.invoke({"url": url}, ctx)
            body = page.get("text") or _render(page.get("json"))
            if page.get("ok") and body:
                ctype = page.get("content_type") or ""
                text = html_to_text(body) if "html" in ctype else body
                items += passages(page["url"], text)
            else:
                unreadable.append(f"{url}: HTTP {page.get('status_code')}")
    hits = Bm25(items).search(query, top_k=top_k)
    findings = [
        Finding(document=p.document, passage=p.text, score=round(s, 4), n=i)
        for i, (p, s) in enumerate(hits, start=1)
    ]
    citations = [
        Citation(n=f.n, document=f.document, passage=f.passage[:300], score=f.score)
        for f in findings
    ]
    documents = len({p.document for p in items})
    if not findings:
        return ResearchOutput(
            query=query,
            summary="No document in knowledge/ matches this question.",
            key_points=[],
            findings=[],
            citations=[],
            documents_searched=documents,
            unreadable=unreadable,
        )
    sources = "\n\n".join(f"[{f.n}] ({f.document}) {_clip(f.passage, 1500)}" for f in findings)
    notes = await ctx.require_llm().generate(
        _ResearchNotes,
        purpose="writer",
        instructions=(
            "You summarise sources for a business team. Use only the numbered sources. "
            "Cite each statement with its source number like [1]. Be brief."
        ),
        prompt=f"Question: {query}\n\nSources:\n{sources}\n\n"
        "Answer with a summary (at most 4 sentences) and up to 5 key points.",
        max_tokens=700,
    )
    valid = {f.n for f in findings}
    points = [p for p in notes.key_points if p.strip()]
    return ResearchOutput(
        query=query,
        summary=_drop_unknown_citations(notes.summary, valid),
        key_points=[_drop_unknown_citations(p, valid) for p in points],
        findings=findings,
        citations=citations,
        documents_searched=documents,
        unreadable=unreadable,
    )


def _drop_unknown_citations(text: str, valid: set[int]) -> str:
    """A model may cite [7] when there were 5 sources: remove citations that point nowhere."""
    return _CITE.sub(lambda m: m.group(0) if int(m.group(1)) in valid else "", text).strip()


# write_content -----------------------------------------------------------------------------
ContentKind = Literal[
    "blog_post", "newsletter", "email", "social_post", "product_description", "report"
]


class ContentOutput(BaseModel):
    kind: ContentKind
    title: str
    body: str = Field(description="Markdown.")
    word_count: int
    audience: str
    tone: str
    sources: list[Citation] = Field(description="Sources cited in the body as [n].")


class _Draft(BaseModel):
    title: str = Field(max_length=120)
    body: str


def _bounded(max_chars: int, min_chars: int) -> Any:
    """A text field whose length the JSON grammar of a local model holds between the two.

    The cap is validated too: a small model cannot ramble past it and leave the JSON unclosed
    when it hits max_tokens. The floor is only in the schema the model is shown (a small model
    now and then ends a 60-word post after four words; the grammar makes it go on): what a
    model returns shorter is kept, and the quality checks judge its length.
    """
    return (str, Field(max_length=max_chars, json_schema_extra={"minLength": min_chars}))


@functools.cache
def _draft_type(max_chars: int, min_chars: int) -> type[_Draft]:
    return create_model("_Draft", __base__=_Draft, body=_bounded(max_chars, min_chars))


_LENGTH_BUCKETS = (20, 50, 100, 200, 400, 800, 1600, 3000)


def _length_bucket(words: int) -> tuple[int, int]:
    """The bucket of ``words`` (a few draft types, not one per length): its bounds in words."""
    for low, high in itertools.pairwise(_LENGTH_BUCKETS):
        if words <= high:
            return low, high
    return _LENGTH_BUCKETS[-2], _LENGTH_BUCKETS[-1]


_KIND_HINTS = {
    "blog_post": "a blog post in Markdown with a short intro, 2-4 '## ' sections and a conclusion",
    "newsletter": "a newsletter issue in Markdown with short sections and a call to action",
    "email": "a business email: greeting, short paragraphs, clear ask, sign-off",
    "social_post": "a social media post: hook in the first line, short lines, 2-4 hashtags",
    "product_description": "a product description: benefits first, then key features as a list",
    "report": "a report in Markdown: summary, findings with figures, recommendations",
}


WRITER_INSTRUCTIONS = (
    "You are a careful business writer. Use only facts from the brief and material; "
    "never invent figures. Return the title and the body (Markdown)."
)
# Long pieces are written as an outline, then one call per section (in parallel): a small
# model writes a good 120 words far more reliably than 600 in one go.
SECTIONED_KINDS = {"blog_post", "report", "newsletter"}
SECTIONED_MIN_WORDS = 400
SECTION_WORDS = 130


class _Outline(BaseModel):
    title: str = Field(max_length=120)
    intro: str = Field(max_length=600, description="One or two opening sentences.")
    headings: list[str] = Field(min_length=2, max_length=6)


class _Section(BaseModel):
    text: str


@functools.cache
def _section_type(max_chars: int) -> type[_Section]:
    """A section whose length the JSON grammar caps, within the call's token limit. No floor:
    with one, a section of a long post on the embedded model once ran to its token limit
    without closing the JSON (a single CI-like run; the single-call draft showed nothing of
    the kind in 10 runs)."""
    return create_model("_Section", __base__=_Section, text=(str, Field(max_length=max_chars)))


SHORTEN_ABOVE = 1.5
"""A one-call draft this many times longer than asked is shortened in a second call: a small
model asked for 80 words now and then writes 160, and a refinement round that says so does not
change its habit (the README's main job once parked for review with a 161-word LinkedIn
teaser, rewritten twice at that length)."""


async def _shorten(ctx: ToolContext, draft: _Draft, kind: str, length_words: int) -> _Draft:
    """The draft rewritten to about ``length_words`` (the shorter of the two is kept). The
    rewrite's cap (~6.5 characters a word, half again the length) leaves room to finish a
    sentence: cut off by the grammar, a text would end mid-word. A rewrite that does not fit
    at all leaves the draft as it was."""
    try:
        shorter = await ctx.require_llm().generate(
            _draft_type(int(length_words * SHORTEN_ABOVE * 6.5), length_words * 2),
            purpose="writer",
            instructions=WRITER_INSTRUCTIONS,
            prompt=(
                f"Shorten this {kind.replace('_', ' ')} to at most {length_words} words. Keep "
                "its opening hook, the key facts, the source citations [n] and any hashtags; "
                f"drop the rest and do not add anything.\n\nTitle: {draft.title}\n\n{draft.body}"
            ),
            max_tokens=int(length_words * SHORTEN_ABOVE) * 4 + 200,
        )
    except LlmOutputError as exc:  # (no rewrite that fits: the draft stands, judged as it is)
        logger.info("shortening the draft failed, keeping it: %s", exc)
        return draft
    if not shorter.body.strip() or _words(shorter.body) >= _words(draft.body):
        return draft
    return _Draft(title=shorter.title.strip() or draft.title, body=shorter.body)


async def _write_in_sections(ctx: ToolContext, prompt: str, length_words: int) -> _Draft:
    llm = ctx.require_llm()
    n = max(2, min(6, round(length_words / SECTION_WORDS)))
    outline = await llm.generate(
        _Outline,
        purpose="writer",
        instructions=(
            f"{WRITER_INSTRUCTIONS} First plan the piece: a title, a short intro and exactly "
            f"{n} section headings (a few words each)."
        ),
        prompt=prompt,
        max_tokens=400,
    )
    headings = [h.strip().lstrip("#").strip() for h in outline.headings if h.strip()][:n]
    per = max(60, (length_words - _words(outline.intro)) // max(1, len(headings)))

    async def section(heading: str) -> str:
        out = await llm.generate(
            _section_type(per * 8),  # ~6 characters a word, and room for Markdown
            purpose="writer",
            instructions=(
                f"{WRITER_INSTRUCTIONS} Write one section of the piece below: about {per} "
                "words of Markdown paragraphs (or a short list), without its heading."
            ),
            prompt=f"{prompt}\n\nTitle: {outline.title}\nAll sections: "
            f"{'; '.join(headings)}\n\nWrite the section: {heading}",
            # Room for a token per character of the cap: a small model's lists, line breaks
            # and emoji take more than a token per two characters, and a section cut off by
            # the token limit is not JSON (README command 1's blog post failed so once, in CI).
            max_tokens=per * 8 + 120,
        )
        return f"## {heading}\n\n{out.text.strip()}"

    sections = await asyncio.gather(*(section(h) for h in headings))
    return _Draft(title=outline.title, body="\n\n".join([outline.intro.strip(), *sections]))


@tool(
    "write_content",
    name="Write content",
    category="content",
    estimated_cost=0.004,
    timeout_seconds=LLM_TIMEOUT,
)
async def write_content(
    kind: Annotated[ContentKind, Field(description="What to write.")],
    brief: Annotated[str, Field(min_length=3, description="What to write about.")],
    ctx: ToolContext,
    audience: Annotated[str, Field(description="Who reads it.")] = "business readers",
    tone: Annotated[str, Field(description="e.g. professional, friendly.")] = "professional",
    length_words: Annotated[int, Field(ge=20, le=3000, description="Target length.")] = 300,
    inputs: Annotated[
        Any, Field(description="Material to use: research findings, data, notes.")
    ] = None,
    title: Annotated[str | None, Field(description="A fixed title, if any.")] = None,
) -> ContentOutput:
    """Write a blog post, newsletter, email, social post, product description or report from a
    brief and optional material, citing the material's sources as [n]."""
    sources = _citations_in(inputs)
    material = _clip(_render(inputs)) if inputs is not None else ""
    source_list = "\n".join(f"[{c.n}] {c.document}: {c.passage}" for c in sources)
    prompt = (
        f"Write {_KIND_HINTS[kind]}.\nBrief: {brief}\nAudience: {audience}\nTone: {tone}\n"
        f"Length: about {length_words} words."
    )
    if title:
        prompt += f"\nTitle: {title}"
    if material:
        prompt += f"\n\nMaterial:\n{material}"
    if sources:
        prompt += f"\n\nSources (cite as [n] where you use them):\n{source_list}"
    if kind in SECTIONED_KINDS and length_words >= SECTIONED_MIN_WORDS:
        draft = await _write_in_sections(ctx, prompt, length_words)
    else:
        low, high = _length_bucket(length_words)
        draft = await ctx.require_llm().generate(
            # ~6 characters a word, with room to spare; at least a third of the bucket's least
            _draft_type(high * 9, low * 2),
            purpose="writer",
            instructions=WRITER_INSTRUCTIONS,
            prompt=prompt,
            max_tokens=high * 4 + 200,
        )
        if _words(draft.body) > length_words * SHORTEN_ABOVE:
            draft = await _shorten(ctx, draft, kind, length_words)
    body = draft.body.strip()
    return ContentOutput(
        kind=kind,
        title=(title or draft.title).strip(),
        body=body,
        word_count=_words(body),
        audience=audience,
        tone=tone,
        sources=_cited(body, sources),
    )


# summarize ---------------------------------------------------------------------------------
class SummaryOutput(BaseModel):
    summary: str
    word_count: int
    source_words: int
    sources: list[Citation]


class _Summary(BaseModel):
    summary: str


@tool(
    "summarize",
    name="Summarize",
    category="content",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def summarize(
    ctx: ToolContext,
    text: Annotated[str | None, Field(description="Text to summarise.")] = None,
    path: Annotated[str | None, Field(description="Or a workspace file (md/txt/pdf/html).")] = None,
    max_words: Annotated[int, Field(ge=10, le=1000, description="Longest summary.")] = 120,
    style: Annotated[
        Literal["paragraph", "bullets"], Field(description="A paragraph or a bullet list.")
    ] = "paragraph",
) -> SummaryOutput:
    """Summarise a text or a workspace document in at most ``max_words`` words."""
    source = _source_text(ctx, text, path)
    shape = "one paragraph" if style == "paragraph" else "a Markdown list of '- ' bullets"
    result = await ctx.require_llm().generate(
        _Summary,
        purpose="writer",
        instructions="You write faithful, concise summaries. Keep names and figures exact.",
        prompt=f"Summarise in {shape}, at most {max_words} words:\n\n{_clip(source)}",
        max_tokens=max_words * 3 + 120,
    )
    summary = _limit_words(result.summary.strip(), max_words)
    return SummaryOutput(
        summary=summary,
        word_count=_words(summary),
        source_words=_words(source),
        sources=[Citation(n=1, document=path, passage=source[:300])] if path else [],
    )


def _limit_words(text: str, limit: int) -> str:
    words = text.split(" ")
    if len(text.split()) <= limit:
        return text
    return " ".join(words[:limit]).rstrip(",;:") + "…"


# translate ---------------------------------------------------------------------------------
class TranslationOutput(BaseModel):
    translation: str
    target_language: str
    source_language: str


class _Translation(BaseModel):
    translation: str
    source_language: str = Field(max_length=40)


@tool(
    "translate",
    name="Translate",
    category="language",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def translate(
    text: Annotated[str, Field(min_length=1, description="Text to translate.")],
    target_language: Annotated[str, Field(min_length=2, description="e.g. German, fr, es-MX.")],
    ctx: ToolContext,
    source_language: Annotated[
        str | None, Field(description="Language of the text; detected when absent.")
    ] = None,
) -> TranslationOutput:
    """Translate a text, keeping its Markdown formatting, names and figures."""
    result = await ctx.require_llm().generate(
        _Translation,
        purpose="writer",
        instructions=(
            "You are a professional translator. Translate faithfully; keep Markdown, "
            "names, numbers and links unchanged. Name the source language."
        ),
        prompt=(
            f"Translate into {target_language}"
            + (f" from {source_language}" if source_language else "")
            + f":\n\n{_clip(text)}"
        ),
        max_tokens=min(4000, len(text) + 100),
    )
    return TranslationOutput(
        translation=result.translation.strip(),
        target_language=target_language,
        source_language=source_language or result.source_language,
    )


# extract -----------------------------------------------------------------------------------
class ExtractOutput(BaseModel):
    data: dict[str, Any]
    missing: list[str] = Field(description="Required fields the text did not provide.")
    valid: bool = Field(description="True when data matches the schema.")
    errors: list[str]
    sources: list[Citation]
    as_json: str = Field(default="", description="`data` as JSON text (to save as a file).")


@tool(
    "extract",
    name="Extract fields",
    category="data",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def extract(
    fields: Annotated[
        dict[str, Any],
        Field(description="JSON schema of an object whose properties are the fields to extract."),
    ],
    ctx: ToolContext,
    text: Annotated[str | None, Field(description="Text to extract from.")] = None,
    path: Annotated[str | None, Field(description="Or a workspace file (md/txt/pdf/html).")] = None,
) -> ExtractOutput:
    """Extract the fields of a JSON schema from a text or a workspace document."""
    if fields.get("type", "object") != "object" or not isinstance(fields.get("properties"), dict):
        raise ToolInputError("field 'fields': must be a JSON schema of an object with properties")
    try:
        jsonschema.Draft202012Validator.check_schema(fields)
    except jsonschema.SchemaError as exc:
        raise ToolInputError(f"field 'fields': not a valid JSON schema: {exc.message}") from exc
    source = _source_text(ctx, text, path)
    output_type = StructuredDict(
        {**fields, "type": "object"}, name="extracted", description="Fields from the text"
    )
    data = await ctx.require_llm().generate(
        output_type,
        purpose="writer",
        instructions=(
            "Extract the requested fields from the text. Copy values exactly; use null or "
            "leave a field out when the text does not give it. Never guess."
        ),
        prompt=f"Text:\n{_clip(source)}",
        max_tokens=800,
    )
    data = {k: v for k, v in dict(data).items() if v is not None and k in fields["properties"]}
    errors = [
        e.message
        for e in jsonschema.Draft202012Validator(fields).iter_errors(data)
        if e.validator != "required"
    ]
    missing = [f for f in fields.get("required", []) if f not in data]
    return ExtractOutput(
        as_json=json.dumps(data, ensure_ascii=False, indent=2),
        data=data,
        missing=missing,
        valid=not errors and not missing,
        errors=errors,
        sources=[Citation(n=1, document=path, passage=source[:300])] if path else [],
    )


# qa_review ---------------------------------------------------------------------------------
class Location(BaseModel):
    line: int
    column: int
    excerpt: str


class Problem(BaseModel):
    check: Literal["length", "banned_phrase", "citation", "tone", "grammar", "clarity"]
    severity: Literal["error", "warning"]
    message: str
    location: Location | None = None


class QaOutput(BaseModel):
    passed: bool = Field(description="No problem of severity error.")
    problems: list[Problem]
    word_count: int
    checks: list[str] = Field(description="The checks that ran.")


class _LlmProblem(BaseModel):
    check: Literal["tone", "grammar", "clarity"]
    excerpt: str = Field(max_length=200, description="Exact words from the text.")
    message: str = Field(max_length=200)


class _LlmReview(BaseModel):
    problems: list[_LlmProblem] = Field(max_length=5)


def locate(text: str, needle: str, start: int = 0) -> tuple[int, int] | None:
    """(line, column), both from 1, of ``needle`` in ``text`` (case-insensitive)."""
    i = text.lower().find(needle.lower(), start)
    if i < 0:
        return None
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


_CLAIM = re.compile(r"[^.!?\n]*\b\d[\d,.]*\s*(%|percent|per cent|million|billion|x\b)[^.!?\n]*")


@tool(
    "qa_review",
    name="QA review",
    category="quality",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def qa_review(
    text: Annotated[str, Field(min_length=1, description="Text to review.")],
    ctx: ToolContext,
    min_words: Annotated[int | None, Field(ge=0, description="Shortest acceptable.")] = None,
    max_words: Annotated[int | None, Field(ge=1, description="Longest acceptable.")] = None,
    banned_phrases: Annotated[
        list[str], Field(description="Phrases that must not appear (any case).")
    ] = [],  # noqa: B006
    require_citations: Annotated[
        bool, Field(description="Figures (%, millions) must carry a citation [n].")
    ] = False,
    tone: Annotated[str | None, Field(description="Expected tone, e.g. 'friendly'.")] = None,
) -> QaOutput:
    """Check a text: length, banned phrases, claims without citations, then tone, grammar and
    clarity by a model; every problem with its location."""
    problems: list[Problem] = []
    checks = ["length", "banned_phrase"]
    n = _words(text)
    if min_words is not None and n < min_words:
        problems.append(
            Problem(check="length", severity="error", message=f"{n} words, fewer than {min_words}")
        )
    if max_words is not None and n > max_words:
        problems.append(
            Problem(check="length", severity="error", message=f"{n} words, more than {max_words}")
        )
    for phrase in banned_phrases:
        start = 0
        while phrase.strip() and (at := locate(text, phrase, start)) is not None:
            line, col = at
            problems.append(
                Problem(
                    check="banned_phrase",
                    severity="error",
                    message=f"banned phrase {phrase!r}",
                    location=Location(line=line, column=col, excerpt=phrase),
                )
            )
            start = text.lower().find(phrase.lower(), start) + len(phrase)
    if require_citations:
        checks.append("citation")
        for m in _CLAIM.finditer(text):
            claim = m.group(0).strip()
            tail = text[m.end() : m.end() + 6]
            if not _CITE.search(claim) and not _CITE.match(tail.lstrip(" .")):
                line, col = locate(text, claim) or (0, 0)
                problems.append(
                    Problem(
                        check="citation",
                        severity="error",
                        message="a figure without a citation [n]",
                        location=Location(line=line, column=col, excerpt=claim[:200]),
                    )
                )
    checks += ["tone", "grammar", "clarity"]
    review = await ctx.require_llm().generate(
        _LlmReview,
        purpose="judge",
        instructions=(
            "You are an editor. List only real problems (at most 5) of tone, grammar or "
            "clarity, each with the exact words from the text in 'excerpt' and what is wrong "
            "in 'message'. Never list what is good. If nothing is wrong, return an empty list."
        ),
        prompt=(f"Expected tone: {tone}\n\n" if tone else "") + f"Text:\n{_clip(text)}",
        max_tokens=600,
    )
    for p in review.problems:
        at = locate(text, p.excerpt) if p.excerpt.strip() else None
        if at is None:
            continue  # the model quoted words that are not in the text: not a finding
        problems.append(
            Problem(
                check=p.check,
                severity="warning",
                message=p.message,
                location=Location(line=at[0], column=at[1], excerpt=p.excerpt),
            )
        )
    return QaOutput(
        passed=not any(p.severity == "error" for p in problems),
        problems=problems,
        word_count=n,
        checks=checks,
    )


# seo_optimize ------------------------------------------------------------------------------
class SeoOutput(BaseModel):
    title: str = Field(max_length=60)
    meta_description: str = Field(max_length=155)
    keywords: list[str]
    headings: list[str]
    slug: str
    keyword_counts: dict[str, int] = Field(description="How often each keyword occurs in the text.")


class _Seo(BaseModel):
    title: str = Field(max_length=70)
    meta_description: str = Field(max_length=170)
    keywords: list[str] = Field(max_length=8)
    headings: list[str] = Field(max_length=6)


def fit(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "…"


def _lead(text: str) -> str:
    """The first paragraph of prose (not a heading), for a meta description."""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if para and not para.startswith("#"):
            return para
    return " ".join(text.split())


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "page"


@tool(
    "seo_optimize",
    name="SEO optimize",
    category="marketing",
    estimated_cost=0.002,
    timeout_seconds=LLM_TIMEOUT,
)
async def seo_optimize(
    text: Annotated[str, Field(min_length=1, description="The page's text.")],
    ctx: ToolContext,
    keywords: Annotated[list[str], Field(description="Keywords to target, if known.")] = [],  # noqa: B006
    title: Annotated[str | None, Field(description="The current title, if any.")] = None,
) -> SeoOutput:
    """Propose an SEO title (≤ 60 chars), meta description (≤ 155 chars), keywords and headings."""
    seo = await ctx.require_llm().generate(
        _Seo,
        purpose="writer",
        instructions=(
            "You are an SEO editor. Give: a short title for search results; a meta "
            "description, one sentence that tells searchers what the page offers; keywords, "
            "phrases readers would search for; headings, ideas for H2 sections."
        ),
        prompt=(f"Target keywords: {', '.join(keywords)}\n" if keywords else "")
        + (f"Current title: {title}\n" if title else "")
        + f"Text:\n{_clip(text, 6000)}",
        max_tokens=400,
    )
    chosen = list(dict.fromkeys([*keywords, *(k.strip() for k in seo.keywords if k.strip())]))[:10]
    lower = text.lower()
    final_title = fit(seo.title or title or "", 60)
    meta = seo.meta_description.strip()
    if len(meta) < 50 or "character" in meta.lower():  # too thin, or the model echoed the brief
        meta = _lead(text)
    return SeoOutput(
        title=final_title,
        meta_description=fit(meta, 155),
        keywords=chosen,
        headings=[h.strip().lstrip("#").strip() for h in seo.headings if h.strip()],
        slug=slugify(final_title),
        keyword_counts={k: lower.count(k.lower()) for k in chosen},
    )
