from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from pathlib import Path

import pypdf
import pytest

from intelligent_orchestrator.domain.models import ChannelVariant
from intelligent_orchestrator.errors import PathEscapeError
from intelligent_orchestrator.formatting import (
    CHANNEL_LIMITS,
    Content,
    Metadata,
    apply_edit,
    channel_family,
    format_variant,
    render_artifacts,
    variant_problems,
)

META = Metadata(
    task_id="task-1",
    plan=["write:write_content", "chart:chart"],
    models=["embedded:qwen", "openai:gpt-4o-mini"],
    cost=0.0123,
    quality_score=0.87,
    sources=["https://example.com/study"],
)
SOURCES = [
    {"n": 1, "document": "https://example.com/study", "passage": "Teams lose work."},
    {"n": 2, "document": "data/notes.md", "passage": "Retries double sends."},
]
ARTICLE = """# Durable workflows in practice

Durable workflows keep running when a machine fails. Each step is recorded, so a crash resumes where it stopped [1].

## What breaks without them

- Lost progress on **crashes**
- Duplicate [e-mails](https://example.com/mail) sent twice [2]

## How to start

Wrap each side effect in a step. <script>alert("x")</script> stays text.
"""
POST_NUMBER = re.compile(r" \((\d+)/(\d+)\)$")


def content(**changes: object) -> Content:
    base = Content(
        title="Durable workflows in practice",
        body=ARTICLE,
        sources=[dict(s) for s in SOURCES],
        topic="durable workflows",
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def sentences(count: int) -> str:
    """Distinct sentences of roughly 90 characters, in paragraphs of three."""
    lines = [
        f"Sentence number {i} explains one more detail about reliable automation for careful teams."
        for i in range(count)
    ]
    return "\n\n".join(" ".join(lines[i : i + 3]) for i in range(0, count, 3))


def write_png(path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1.5), dpi=50)
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([1, 2, 3], [3, 1, 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "out.pdf"
    path.write_bytes(data)
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)


# --- families and limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "family"),
    [
        ("blog", "blog"),
        ("web", "blog"),
        ("product_description", "blog"),
        ("LinkedIn", "social"),
        ("facebook", "social"),
        ("instagram", "social"),
        ("social", "social"),
        ("twitter", "thread"),
        ("x", "thread"),
        ("email", "email"),
        ("newsletter", "email"),
        ("report", "report"),
        ("podcast_notes", "blog"),
    ],
)
def test_channel_family(channel: str, family: str) -> None:
    assert channel_family(channel) == family


@pytest.mark.parametrize("channel", [*CHANNEL_LIMITS, "podcast_notes"])
def test_every_channel_formats_within_its_limits(channel: str) -> None:
    long = content(body=ARTICLE + "\n\n" + sentences(120), title="T" * 90 + " and more words")
    variant = format_variant(channel, "write", long, META)
    assert variant_problems(variant) == []
    assert variant.sources == SOURCES
    assert variant.channel == channel
    assert variant.limits["chars"] == len(variant.text)
    for name, limit in CHANNEL_LIMITS.get(channel, CHANNEL_LIMITS["blog"]).items():
        assert variant.limits[name] == limit


# --- social ---------------------------------------------------------------------------------


def test_linkedin_long_body_is_cut_under_3000_with_hashtags_intact() -> None:
    body = sentences(60) + "\n\n#Automation #Reliability"
    variant = format_variant("linkedin", "write", content(body=body, sources=[]), META)

    assert len(body) > 5000
    assert len(variant.text) <= 3000
    assert variant.hashtags == ["#Automation", "#Reliability"]
    assert variant.text.endswith("\n\n#Automation #Reliability")
    body_part = variant.text.removesuffix("\n\n#Automation #Reliability")
    assert body_part.endswith("…")
    assert "#Automation" not in body_part
    cut = variant.limits["cut"]["text"]
    assert cut["after"] < cut["before"]
    assert variant.limits["chars"] == len(variant.text)


def test_social_is_plain_text_with_hook_links_bullets_and_sources_line() -> None:
    variant = format_variant("linkedin", "write", content(title=None), META)
    lines = variant.text.split("\n")

    # The writer's H1 became the title (the content had none); the hook is the first sentence.
    assert variant.title == "Durable workflows in practice"
    assert lines[:3] == [
        "Durable workflows keep running when a machine fails.",
        "",
        "Each step is recorded, so a crash resumes where it stopped [1].",
    ]
    assert "• Lost progress on crashes" in lines
    assert "• Duplicate e-mails (https://example.com/mail) sent twice [2]" in lines
    assert "**" not in variant.text
    assert "#" not in variant.text.replace("#Durable #Workflows", "")
    assert "Sources: https://example.com/study, data/notes.md" in lines
    assert lines[-1] == "#Durable #Workflows"


def test_social_hook_is_first_sentence_at_most_150_chars() -> None:
    first = "This opening sentence goes on " + "and on " * 30 + "until the end."
    variant = format_variant(
        "linkedin", "write", content(title=None, body=first + " Next one."), META
    )
    hook, _, rest = variant.text.partition("\n\n")
    assert len(hook) <= 150
    assert hook.endswith("…")
    assert first.startswith(hook.removesuffix("…"))
    assert rest.startswith("…")
    # Nothing of the sentence is lost: the rest continues where the hook stopped.
    assert (hook.removesuffix("…") + " " + rest.removeprefix("…")).split()[:60] == (
        first + " Next one."
    ).split()[:60]


def test_social_hashtags_from_seo_keywords_camel_case_without_duplicates() -> None:
    seo = {"keywords": ["machine learning", "Machine Learning", "e-commerce", "AI", "data"]}
    variant = format_variant("linkedin", "write", content(seo=seo), META)
    assert variant.hashtags == ["#MachineLearning", "#ECommerce", "#AI"]
    assert variant.text.split("\n")[-1] == "#MachineLearning #ECommerce #AI"


def test_instagram_uses_its_own_limit() -> None:
    variant = format_variant("instagram", "write", content(body=sentences(40)), META)
    assert 2000 < len(variant.text) <= 2200
    assert variant.limits["max_chars"] == 2200


# --- thread ---------------------------------------------------------------------------------


def test_thread_posts_fit_are_numbered_in_order_and_rejoin_to_the_words() -> None:
    body = sentences(25) + " " + "x" * 20 + " word " * 70
    variant = format_variant(
        "twitter", "write", content(title=None, body=body, sources=[], topic=None), META
    )

    total = len(variant.parts)
    assert total > 5
    assert all(len(p) <= 280 for p in variant.parts)
    numbers = [POST_NUMBER.search(p) for p in variant.parts]
    assert [(int(m[1]), int(m[2])) for m in numbers if m] == [
        (i, total) for i in range(1, total + 1)
    ]
    words = " ".join(POST_NUMBER.sub("", p) for p in variant.parts).split()
    assert words == body.split()
    assert (
        variant.parts[0]
        == "Sentence number 0 explains one more detail about reliable automation for careful teams. (1/"
        + f"{total})"
    )
    assert variant.text == "\n\n".join(variant.parts)
    assert variant.limits["posts"] == total


def test_thread_puts_sources_in_a_final_post_with_the_hashtags() -> None:
    variant = format_variant("x", "write", content(body=sentences(6)), META)
    last = POST_NUMBER.sub("", variant.parts[-1]).split("\n")
    assert last == ["Sources:", "https://example.com/study", "data/notes.md", "#Durable #Workflows"]
    assert variant.hashtags == ["#Durable", "#Workflows"]


def test_short_thread_is_one_post_without_number() -> None:
    variant = format_variant(
        "twitter", "write", content(body="Ship it today.", sources=[], topic=None), META
    )
    assert variant.parts == ["Ship it today."]


# --- email ----------------------------------------------------------------------------------


def test_email_subject_from_long_title_is_cut_at_a_word_boundary() -> None:
    title = (
        "Quarterly results for the northern region show strong growth in every segment "
        "we serve and across all our partners today"
    )
    assert len(title) == 120
    variant = format_variant("email", "write", content(title=title), META)

    subject = variant.subject or ""
    assert len(subject) <= 78
    assert subject.endswith("…")
    kept = subject.removesuffix("…")
    assert title.startswith(kept)
    assert title[len(kept)] == " "
    assert variant.limits["cut"]["subject"] == {"before": 120, "after": len(subject)}


def test_email_text_has_footnotes_and_html_is_a_document_with_sources() -> None:
    variant = format_variant("newsletter", "write", content(), META)
    assert variant.text.endswith("\n\n--\n[1] https://example.com/study\n[2] data/notes.md")
    assert variant.preheader == "Durable workflows keep running when a machine fails."
    html = variant.html or ""
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Durable workflows in practice</title>" in html
    assert (
        '<li value="1"><a href="https://example.com/study">https://example.com/study</a></li>'
        in html
    )
    assert "<strong>crashes</strong>" in html
    assert "<script>" not in html


def test_eml_parses_back_as_multipart_alternative(tmp_path: Path) -> None:
    variant = format_variant("email", "write", content(title="Résumé → next steps 😀"), META)
    artifacts = render_artifacts(variant, content(), META, tmp_path, "outputs/task-1")

    eml = next(a for a in artifacts if a.path.endswith(".eml"))
    assert eml.media_type == "message/rfc822"
    message = email.message_from_bytes(
        (tmp_path / eml.path).read_bytes(), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Résumé → next steps 😀"
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    # On the wire (and so in the file) lines end in CRLF.
    assert parts["text/plain"].replace("\r\n", "\n") == variant.text + "\n"
    assert "<strong>crashes</strong>" in parts["text/html"]
    assert sorted(Path(a.path).name for a in artifacts) == [
        "email.eml",
        "email.html",
        "email.json",
        "email.txt",
    ]


def test_only_web_and_mail_sources_become_links() -> None:
    sources = [{"n": 1, "document": "javascript://x%0Aalert(1)", "passage": ""}]
    variant = format_variant("email", "write", content(sources=sources), META)
    assert '<li value="1"><code>javascript://x%0Aalert(1)</code></li>' in (variant.html or "")
    assert 'href="javascript' not in (variant.html or "")


# --- blog -----------------------------------------------------------------------------------


def test_blog_text_html_headings_slug_and_sources() -> None:
    variant = format_variant("blog", "write", content(), META)

    assert variant.text.startswith("# Durable workflows in practice\n\nDurable workflows keep")
    assert variant.text.count("# Durable workflows in practice") == 1  # the writer's H1 dropped
    assert variant.text.endswith(
        "## Sources\n\n1. [https://example.com/study](<https://example.com/study>)\n2. `data/notes.md`"
    )
    assert "crash resumes where it stopped [1]." in variant.text
    assert variant.headings == ["What breaks without them", "How to start"]
    assert variant.slug == "durable-workflows-in-practice"
    assert variant.title == "Durable workflows in practice"
    html = variant.html or ""
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '<a href="https://example.com/study">' in html
    assert "<code>data/notes.md</code>" in html


def test_blog_meta_description_fits_155() -> None:
    long_first = (
        "Durable workflows " + "keep running " * 20 + "when machines fail. Second sentence."
    )
    variant = format_variant("blog", "write", content(body=long_first), META)
    assert len(variant.meta_description or "") <= 155
    assert (variant.meta_description or "").endswith("…")

    short = format_variant("blog", "write", content(), META)
    assert short.meta_description == (
        "Durable workflows keep running when a machine fails. "
        "Each step is recorded, so a crash resumes where it stopped [1]."
    )


def test_blog_seo_values_are_used_and_cut_to_the_limits() -> None:
    seo = {
        "title": "An SEO title that is far too long for a search result page, really it is",
        "meta_description": "Words " * 40,
        "keywords": ["durable execution"],
        "slug": "Durable Workflows: A Guide!",
    }
    variant = format_variant("blog", "write", content(seo=seo), META)
    assert len(variant.title or "") <= 60
    assert (variant.title or "").startswith("An SEO title that is far too long")
    assert len(variant.meta_description or "") <= 155
    assert variant.slug == "durable-workflows-a-guide"
    assert set(variant.limits["cut"]) == {"title", "meta_description"}
    # The page heading stays the article's own title.
    assert variant.text.startswith("# Durable workflows in practice\n")


def test_blog_sources_with_gaps_keep_their_numbers() -> None:
    sources = [
        {"n": 3, "document": "https://a.example/x_y", "passage": ""},
        {"n": 7, "document": "b.csv", "passage": ""},
    ]
    variant = format_variant("blog", "write", content(sources=sources), META)
    assert variant.text.endswith(
        "## Sources\n\n\\[3\\] [https://a.example/x\\_y](<https://a.example/x_y>)\n\n\\[7\\] `b.csv`"
    )
    assert '[3] <a href="https://a.example/x_y">' in (variant.html or "")


# --- report ---------------------------------------------------------------------------------


def test_report_markdown_has_tables_charts_sources_and_metadata() -> None:
    rows = [{"region": f"R|{i}", "revenue": i * 1.5} for i in range(53)]
    variant = format_variant(
        "report", "write", content(tables=[rows], charts=["artifacts/task-1/chart.png"]), META
    )
    text = variant.text
    assert "| region | revenue |\n|---|---|\n| R\\|0 | 0 |\n| R\\|1 | 1.5 |" in text
    assert "| R\\|49 | 73.5 |" in text
    assert "R\\|50" not in text
    assert "(3 more rows)" in text
    assert "![chart](artifacts/task-1/chart.png)" in text
    assert "## Sources\n\n1. [https://example.com/study]" in text
    assert text.endswith(
        "## About this report\n\n- Task: `task-1`\n- Models: embedded:qwen, openai:gpt-4o-mini\n"
        "- Cost: $0.0123\n- Quality score: 0.87"
    )
    assert variant.limits["cut"] == {"table_rows": {"before": 53, "after": 50}}
    assert "<table>" in (variant.html or "")


def test_report_pdf_has_title_table_and_png_chart(tmp_path: Path) -> None:
    write_png(tmp_path / "artifacts/task-1/chart.png")
    charts = ["artifacts/task-1/chart.png", "artifacts/task-1/other.svg"]
    report = content(
        title="Quarterly Revenue Report",
        tables=[[{"region": "North", "revenue": 120}, {"region": "South", "revenue": 80}]],
        charts=charts,
    )
    variant = format_variant("report", "write", report, META)
    artifacts = render_artifacts(variant, report, META, tmp_path, "outputs/task-1")

    by_name = {Path(a.path).name: a for a in artifacts}
    assert list(by_name) == ["report.md", "report.pdf", "report.json"]
    assert by_name["report.pdf"].media_type == "application/pdf"
    data = (tmp_path / "outputs/task-1/report.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    assert by_name["report.pdf"].size == len(data)
    text = pdf_text(data, tmp_path)
    assert "Quarterly Revenue Report" in text
    assert "North" in text
    assert "Chart: artifacts/task-1/other.svg" in text
    reader = pypdf.PdfReader(tmp_path / "outputs/task-1/report.pdf")
    assert sum(len(page.images) for page in reader.pages) == 1
    # The written Markdown links the chart relative to itself.
    markdown = (tmp_path / "outputs/task-1/report.md").read_text()
    assert "![chart](../../artifacts/task-1/chart.png)" in markdown
    assert (tmp_path / "outputs/task-1" / "../../artifacts/task-1/chart.png").resolve().is_file()


def test_pdf_survives_characters_core_fonts_cannot_encode(tmp_path: Path) -> None:
    report = content(
        title="Growth → 2025 😀",
        body="Revenue → up 😀 — “quoted” … done.\n\n| a → b |\n|---|\n| 😀 |",
    )
    variant = format_variant("report", "write", report, META)
    render_artifacts(variant, report, META, tmp_path, "outputs/task-1")

    text = pdf_text((tmp_path / "outputs/task-1/report.pdf").read_bytes(), tmp_path)
    assert "Growth -> 2025 ?" in text
    assert 'Revenue -> up ? - "quoted" ... done.' in text


def test_pdf_does_not_read_images_outside_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    write_png(outside)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    report = content(body="![x](../secret.png)")
    variant = format_variant("report", "write", report, META)
    render_artifacts(variant, report, META, workspace, "outputs/task-1")

    reader = pypdf.PdfReader(workspace / "outputs/task-1/report.pdf")
    assert sum(len(page.images) for page in reader.pages) == 0
    assert "[image not found in the workspace: ../secret.png]" in reader.pages[0].extract_text()


# --- artifacts ------------------------------------------------------------------------------


def test_render_artifacts_writes_files_sidecar_and_overwrites(tmp_path: Path) -> None:
    variant = format_variant("blog", "write", content(language="DE"), META)
    first = render_artifacts(variant, content(), META, tmp_path, "outputs/task-1")

    assert [(a.path, a.media_type) for a in first] == [
        ("outputs/task-1/blog-de.md", "text/markdown"),
        ("outputs/task-1/blog-de.html", "text/html"),
        ("outputs/task-1/blog-de.json", "application/json"),
    ]
    assert variant.artifacts == [a.path for a in first]
    assert (tmp_path / first[0].path).read_text() == variant.text + "\n"
    page = (tmp_path / first[1].path).read_text()
    assert '<html lang="DE">' in page
    assert '<meta name="description" content="Durable workflows keep running' in page
    sidecar = json.loads((tmp_path / first[2].path).read_text())
    assert sidecar["variant"]["text"] == variant.text
    assert sidecar["variant"]["artifacts"] == variant.artifacts
    assert sidecar["metadata"]["task_id"] == "task-1"
    assert sidecar["metadata"]["plan"] == META.plan

    edited = apply_edit(variant, {"text": variant.text + "\n\nA new closing line."}, editor="ana")
    second = render_artifacts(edited, content(), META, tmp_path, "outputs/task-1")
    assert [a.path for a in second] == [a.path for a in first]
    assert (tmp_path / second[0].path).read_text().endswith("A new closing line.\n")
    assert second[0].sha256 != first[0].sha256
    assert sorted(p.name for p in (tmp_path / "outputs/task-1").iterdir()) == [
        "blog-de.html",
        "blog-de.json",
        "blog-de.md",
    ]


@pytest.mark.parametrize("folder", ["../elsewhere", "/tmp/abs", "."])
def test_render_artifacts_refuses_a_folder_outside_the_workspace(
    tmp_path: Path, folder: str
) -> None:
    variant = format_variant("linkedin", "write", content(), META)
    with pytest.raises(PathEscapeError):
        render_artifacts(variant, content(), META, tmp_path / "ws", folder)


# --- human edits ----------------------------------------------------------------------------


def test_apply_edit_bumps_revision_and_stores_a_diff_of_the_changed_line() -> None:
    variant = format_variant("linkedin", "write", content(), META)
    new_text = variant.text.replace("• Lost progress on crashes", "• Lost progress on every crash")
    edited = apply_edit(variant, {"text": new_text, "title": "A better title"}, editor="ana")

    assert edited.revision == 1
    assert edited.edited_by == "ana"
    assert variant.revision == 0  # the original is left alone
    diff = edited.diff or ""
    assert "--- text (revision 0)\n+++ text (revision 1)" in diff
    assert "\n-• Lost progress on crashes\n+• Lost progress on every crash" in diff
    assert "--- title (revision 0)" in diff
    assert "+A better title" in diff
    assert edited.limits["chars"] == len(new_text)


def test_apply_edit_of_thread_text_resplits_it() -> None:
    variant = format_variant(
        "twitter", "write", content(body=sentences(3), sources=[], topic=None), META
    )
    assert len(variant.parts) == 2
    longer = variant.text + "\n\n" + sentences(6)
    edited = apply_edit(variant, {"text": longer}, editor="bo")

    assert len(edited.parts) > 2
    assert all(len(p) <= 280 for p in edited.parts)
    total = len(edited.parts)
    numbers = [m[0] if (m := POST_NUMBER.search(p)) else None for p in edited.parts]
    assert numbers == [f" ({i}/{total})" for i in range(1, total + 1)]
    assert edited.text == "\n\n".join(edited.parts)
    assert (
        " ".join(POST_NUMBER.sub("", p) for p in edited.parts).split()
        == (sentences(3) + " " + sentences(6)).split()
    )


def test_apply_edit_of_thread_parts_renumbers_and_rebuilds_text() -> None:
    variant = format_variant(
        "twitter", "write", content(body=sentences(9), sources=[], topic=None), META
    )
    kept = variant.parts[:2]
    edited = apply_edit(variant, {"parts": kept}, editor=None)
    assert edited.parts == [
        POST_NUMBER.sub("", kept[0]) + " (1/2)",
        POST_NUMBER.sub("", kept[1]) + " (2/2)",
    ]
    assert edited.text == "\n\n".join(edited.parts)


def test_apply_edit_of_hashtags_rewrites_the_last_line() -> None:
    variant = format_variant("linkedin", "write", content(), META)
    edited = apply_edit(variant, {"hashtags": ["#Ops", "site reliability"]}, editor="ana")
    assert edited.hashtags == ["#Ops", "#SiteReliability"]
    assert edited.text.split("\n")[-1] == "#Ops #SiteReliability"
    assert "#Durable" not in edited.text


def test_apply_edit_regenerates_email_html_from_the_new_text() -> None:
    variant = format_variant("email", "write", content(), META)
    edited = apply_edit(
        variant,
        {"text": "Hello <team>,\n\nShort & sweet.\n\n--\n[1] https://example.com/study"},
        editor="ana",
    )
    html = edited.html or ""
    assert "<p>Hello &lt;team&gt;,</p>" in html
    assert "<p>Short &amp; sweet.</p>" in html
    assert '<li value="1"><a href="https://example.com/study">' in html

    retitled = apply_edit(variant, {"subject": "New subject"}, editor="ana")
    assert "<title>New subject</title>" in (retitled.html or "")
    assert "<strong>crashes</strong>" in (retitled.html or "")  # the rendered body is kept


def test_apply_edit_of_blog_text_rerenders_html_and_headings() -> None:
    variant = format_variant("blog", "write", content(), META)
    edited = apply_edit(
        variant,
        {"text": variant.text.replace("## How to start", "## Getting started")},
        editor="ana",
    )
    assert edited.headings == ["What breaks without them", "Getting started"]
    assert "<h2>Getting started</h2>" in (edited.html or "")


def test_variant_problems_reports_an_edited_linkedin_text_over_3000() -> None:
    variant = format_variant("linkedin", "write", content(), META)
    edited = apply_edit(variant, {"text": "word " * 700}, editor="ana")
    assert len(edited.text) == 3500
    assert variant_problems(edited) == ["the text is 3500 characters; linkedin allows 3000"]


def test_variant_problems_reports_each_broken_limit() -> None:
    thread = ChannelVariant(channel="twitter", deliverable="w", text="", parts=["ok", "y" * 281])
    assert variant_problems(thread) == [
        "the text is empty",
        "the thread's posts (parts) do not match its text",
        "post 2 is 281 characters; twitter allows 280 per post",
    ]
    thread.text = "\n\n".join(thread.parts)
    assert variant_problems(thread) == ["post 2 is 281 characters; twitter allows 280 per post"]
    mail = ChannelVariant(
        channel="email", deliverable="w", text="hi", subject="s" * 79, preheader="p" * 101
    )
    assert variant_problems(mail) == [
        "the subject is 79 characters; email allows 78",
        "the preheader is 101 characters; email allows 100",
    ]
    blog = ChannelVariant(
        channel="blog", deliverable="w", text="hi", title="t" * 61, meta_description="m" * 156
    )
    assert variant_problems(blog) == [
        "the title is 61 characters; blog allows 60",
        "the meta description is 156 characters; blog allows 155",
    ]


def test_apply_edit_rejects_unknown_keys_and_no_op_edits() -> None:
    variant = format_variant("linkedin", "write", content(), META)
    with pytest.raises(ValueError, match=r"unknown edit field\(s\) 'body', 'colour'"):
        apply_edit(variant, {"body": "x", "colour": "red", "text": "y"}, editor="ana")
    with pytest.raises(ValueError, match="the edit changes nothing"):
        apply_edit(variant, {"text": variant.text}, editor="ana")
    with pytest.raises(ValueError, match="'parts' can only be edited on a thread"):
        apply_edit(variant, {"parts": ["a"]}, editor="ana")
