"""Turning a deliverable's content into one channel's variant, and checking a variant's limits."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, assert_never, cast

from ..domain.models import ChannelVariant
from . import _text as tx
from ._model import Content, Metadata, channel_family, limits_for

HOOK_MAX_CHARS = 150
REPORT_MAX_TABLE_ROWS = 50
MAX_GENERATED_HASHTAGS = 3
SOURCES_LABEL = "Sources:"
FOOTNOTE_RULE = "--"

# Only these become links: a source like ``javascript://...`` is shown as text.
_URL = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
_POST_NUMBER = re.compile(r"[ \t]*\(\d+/\d+\)[ \t]*$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The content with whitespace normalised and a title repeated as the first heading removed."""

    title: str | None
    body: str
    sources: list[tuple[int, str]]


def format_variant(
    channel: str, deliverable: str, content: Content, meta: Metadata
) -> ChannelVariant:
    """The content formatted for ``channel``: deterministic, and within the channel's limits.

    What had to be cut to fit (at a sentence or word boundary, marked with an ellipsis) is
    recorded in ``variant.limits["cut"]`` as ``{field: {"before": n, "after": m}}``.
    """
    key = channel.strip().lower()
    prepared = _prepare(content)
    family = channel_family(key)
    match family:
        case "blog":
            variant = _blog(key, deliverable, content, prepared)
        case "social":
            variant = _social(key, deliverable, content, prepared)
        case "thread":
            variant = _thread(key, deliverable, content, prepared)
        case "email":
            variant = _email(key, deliverable, content, prepared)
        case "report":
            variant = _report(key, deliverable, content, prepared, meta)
        case _:
            assert_never(family)
    variant.limits = {**variant.limits, **measure(variant)}
    return variant


def variant_problems(variant: ChannelVariant) -> list[str]:
    """Every limit the variant breaks (empty when it meets them all), measured on its fields."""
    channel = variant.channel
    limits = limits_for(channel)
    problems: list[str] = []
    if not variant.text.strip():
        problems.append("the text is empty")
    max_chars = limits.get("max_chars")
    if max_chars is not None and len(variant.text) > max_chars:
        problems.append(f"the text is {len(variant.text)} characters; {channel} allows {max_chars}")
    max_hashtags = limits.get("max_hashtags")
    if max_hashtags is not None:
        count = len(tx.find_hashtags(variant.text))
        if count > max_hashtags:
            problems.append(f"the text has {count} hashtags; {channel} allows {max_hashtags}")
    per_post = limits.get("max_chars_per_post")
    if per_post is not None:
        if variant.parts and "\n\n".join(variant.parts) != variant.text:
            problems.append("the thread's posts (parts) do not match its text")
        for index, post in enumerate(thread_posts(variant), start=1):
            if len(post) > per_post:
                problems.append(
                    f"post {index} is {len(post)} characters; {channel} allows {per_post} per post"
                )
    fields = (
        ("title", variant.title, "max_title_chars"),
        ("meta description", variant.meta_description, "max_meta_chars"),
        ("subject", variant.subject, "max_subject_chars"),
        ("preheader", variant.preheader, "max_preheader_chars"),
    )
    for label, value, limit_key in fields:
        limit = limits.get(limit_key)
        if limit is None:
            continue
        if label == "subject" and not (value or "").strip():
            problems.append("the subject is empty")
        elif value is not None and len(value) > limit:
            problems.append(f"the {label} is {len(value)} characters; {channel} allows {limit}")
    return problems


def measure(variant: ChannelVariant) -> dict[str, Any]:
    """The channel's limits and the variant's figures, as stored in ``variant.limits``."""
    figures: dict[str, Any] = {**limits_for(variant.channel), "chars": len(variant.text)}
    family = channel_family(variant.channel)
    match family:
        case "blog":
            figures["title_chars"] = len(variant.title or "")
            figures["meta_chars"] = len(variant.meta_description or "")
        case "social":
            figures["hashtags"] = len(variant.hashtags)
        case "thread":
            posts = thread_posts(variant)
            figures["posts"] = len(posts)
            figures["longest_post"] = max((len(p) for p in posts), default=0)
        case "email":
            figures["subject_chars"] = len(variant.subject or "")
            figures["preheader_chars"] = len(variant.preheader or "")
        case "report":
            pass
        case _:
            assert_never(family)
    return figures


def thread_posts(variant: ChannelVariant) -> list[str]:
    """A thread's posts: its parts, or the blocks of its text when it has none."""
    if variant.parts:
        return list(variant.parts)
    return [p for p in _BLANK_LINES.split(variant.text) if p.strip()]


# --- shared ---------------------------------------------------------------------------------


def _prepare(content: Content) -> _Prepared:
    body = tx.normalize_newlines(content.body).strip()
    title = tx.squash(content.title) if content.title and content.title.strip() else None
    seo_title = _seo_str(content, "title")
    lead = tx.leading_h1(body)
    if lead is not None and (
        title is None
        or tx.same_text(lead.text, title)
        or (seo_title is not None and tx.same_text(lead.text, seo_title))
    ):
        title = title or lead.text or None
        body = lead.rest
    return _Prepared(title=title, body=body, sources=numbered_sources(content.sources))


def numbered_sources(sources: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(n, document)`` for each source that names a document, ordered by ``n``."""
    found: list[tuple[int, str]] = []
    for index, source in enumerate(sources, start=1):
        document = str(source.get("document") or source.get("url") or "").strip()
        if not document:
            continue
        n = source.get("n")
        found.append((n if isinstance(n, int) and not isinstance(n, bool) else index, document))
    return sorted(found, key=lambda item: item[0])


def is_url(document: str) -> bool:
    return bool(_URL.match(document))


def _seo_str(content: Content, name: str) -> str | None:
    value = (content.seo or {}).get(name)
    return tx.squash(value) if isinstance(value, str) and value.strip() else None


def _seo_keywords(content: Content) -> list[str]:
    value: object = (content.seo or {}).get("keywords")
    if not isinstance(value, list):
        return []
    return [k for k in cast(list[object], value) if isinstance(k, str)]


def _fit(value: str, limit: int, name: str, cut: dict[str, dict[str, int]]) -> str:
    short = tx.shorten(value, limit)
    if short != value:
        cut[name] = {"before": len(value), "after": len(short)}
    return short


def _base(key: str, deliverable: str, content: Content) -> ChannelVariant:
    return ChannelVariant(
        channel=key,
        deliverable=deliverable,
        language=content.language,
        text="",
        sources=[dict(s) for s in content.sources],
    )


def md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_link_target(document: str) -> str:
    return "<" + document.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E") + ">"


def _md_code(text: str) -> str:
    return f"`{text}`" if "`" not in text else md_escape(text)


def sources_markdown(sources: list[tuple[int, str]]) -> str:
    """A ``## Sources`` section: numbered links (URLs) or code spans (workspace paths)."""
    refs = [
        (n, f"[{md_escape(doc)}]({_md_link_target(doc)})" if is_url(doc) else _md_code(doc))
        for n, doc in sources
    ]
    # A Markdown list renumbers its items, so numbers that skip are written out instead.
    if [n for n, _ in refs] == list(range(1, len(refs) + 1)):
        items = "\n".join(f"{n}. {ref}" for n, ref in refs)
    else:
        items = "\n\n".join(f"\\[{n}\\] {ref}" for n, ref in refs)
    return f"## Sources\n\n{items}"


def _meta_from_body(body: str, limit: int) -> str:
    """The first sentence(s) of the body's paragraphs that fit in ``limit``."""
    chosen = ""
    for paragraph in tx.paragraphs(body):
        for sentence in tx.sentences(paragraph):
            candidate = f"{chosen} {sentence}".strip()
            if len(candidate) > limit:
                return chosen or tx.shorten(sentence, limit)
            chosen = candidate
        if chosen:
            return chosen
    return chosen


def _fallback_title(body: str) -> str | None:
    plain = tx.markdown_to_plain(body)
    first = tx.first_sentence(plain)
    return tx.squash(first).rstrip(".") or None


# --- blog -----------------------------------------------------------------------------------


def _blog(key: str, deliverable: str, content: Content, prep: _Prepared) -> ChannelVariant:
    limits = limits_for(key)
    cut: dict[str, dict[str, int]] = {}
    heading = prep.title or _seo_str(content, "title") or _fallback_title(prep.body) or ""
    title = _fit(_seo_str(content, "title") or heading, limits["max_title_chars"], "title", cut)
    seo_meta = _seo_str(content, "meta_description")
    meta_limit = limits["max_meta_chars"]
    meta = (
        _fit(seo_meta, meta_limit, "meta_description", cut)
        if seo_meta
        else _meta_from_body(prep.body, meta_limit)
    )
    blocks = [f"# {heading}" if heading else "", prep.body]
    if prep.sources:
        blocks.append(sources_markdown(prep.sources))
    text = "\n\n".join(b for b in blocks if b.strip())
    seo_slug = _seo_str(content, "slug")
    variant = _base(key, deliverable, content)
    variant.title = title or None
    variant.text = text
    variant.html = tx.render_html(text)
    variant.meta_description = meta or None
    variant.headings = tx.headings(prep.body)
    variant.slug = tx.slugify(seo_slug or heading) or None
    variant.limits = {"cut": cut} if cut else {}
    return variant


def blog_headings(text: str, *, has_sources: bool) -> list[str]:
    """The ``##`` headings of a blog text, without the Sources section formatting added."""
    found = tx.headings(text)
    if has_sources and found and found[-1] == "Sources":
        found.pop()
    return found


# --- social ---------------------------------------------------------------------------------


def _strip_hashtag_lines(plain: str) -> str:
    lines = [line for line in plain.split("\n") if not tx.is_hashtag_line(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _hashtags(content: Content, plain: str) -> list[str]:
    written = tx.find_hashtags(plain)
    if written:
        return written
    return tx.make_hashtags(_seo_keywords(content), content.topic, limit=MAX_GENERATED_HASHTAGS)


def _hook(plain: str) -> str:
    """The text with its first sentence alone on the first line, at most HOOK_MAX_CHARS long."""
    if not plain:
        return plain
    first_line, _, after = plain.partition("\n")
    first = tx.first_sentence(first_line)
    if not first or not first_line.lstrip().startswith(first):
        return plain
    remainder = first_line.lstrip()[len(first) :].strip()
    hook = tx.shorten(first, HOOK_MAX_CHARS)
    if hook != first:
        kept = hook.removesuffix(tx.ELLIPSIS)
        remainder = (
            tx.ELLIPSIS + first[len(kept) :].lstrip(" ,;:") + (" " + remainder if remainder else "")
        )
    # ``after`` starts with the break that followed the first line (a blank line between
    # paragraphs), which is kept.
    rest = remainder + ("\n" + after if after else "") if remainder else after.lstrip("\n")
    return f"{hook}\n\n{rest}" if rest else hook


def _social(key: str, deliverable: str, content: Content, prep: _Prepared) -> ChannelVariant:
    limit = limits_for(key)["max_chars"]
    cut: dict[str, dict[str, int]] = {}
    plain = tx.markdown_to_plain(prep.body)
    hashtags = _hashtags(content, plain)
    main = _hook(_strip_hashtag_lines(plain))
    # Hashtags are never cut to make room for the body; only an absurd number of them is.
    kept = list(hashtags)
    while kept and len(" ".join(kept)) > limit // 4:
        kept.pop()
    if len(kept) < len(hashtags):
        cut["hashtags"] = {"before": len(hashtags), "after": len(kept)}
        hashtags = kept
    tag_line = " ".join(hashtags)
    sources_line = (
        f"{SOURCES_LABEL} " + ", ".join(doc for _, doc in prep.sources) if prep.sources else ""
    )
    # The sources line may take at most a quarter of the post.
    sources_line = _fit(sources_line, limit // 4, "sources", cut) if sources_line else ""
    reserve = sum(len(t) + 2 for t in (sources_line, tag_line) if t)
    budget = max(limit - reserve, 0)
    if len(main) > budget:
        short = tx.cut_text(main, budget)
        cut["text"] = {"before": len(main), "after": len(short)}
        main = short
    inline = {t.casefold() for t in tx.find_hashtags(main)}
    trailing = " ".join(t for t in hashtags if t.casefold() not in inline)
    variant = _base(key, deliverable, content)
    variant.title = prep.title
    variant.text = "\n\n".join(p for p in (main, sources_line, trailing) if p)
    variant.hashtags = hashtags
    variant.limits = {"cut": cut} if cut else {}
    return variant


# --- thread ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thread:
    parts: list[str]
    cut: dict[str, dict[str, int]]


def build_thread(
    body_plain: str, *, hashtags: list[str], sources: list[str], max_chars: int
) -> Thread:
    """Posts of at most ``max_chars`` each, numbered `` (i/n)`` when there are several.

    The first sentence stands alone, the following sentences are packed in order (a sentence
    too long for a post is split at words), sources get posts of their own at the end and the
    hashtags go on the last post.
    """
    units: list[tuple[str, int]] = []
    for number, line in enumerate(body_plain.strip().split("\n")):
        units.extend((s, number) for s in tx.sentences(line))
    inline = {t.casefold() for t in tx.find_hashtags(body_plain)}
    trailing = [t for t in hashtags if t.casefold() not in inline]

    single = _pack(units, sources, trailing, width=max_chars)
    if len(single.parts) <= 1:
        return single
    digits = 1
    while True:
        widest = "9" * digits
        thread = _pack(units, sources, trailing, width=max_chars - len(f" ({widest}/{widest})"))
        if len(thread.parts) < 10**digits:
            break
        digits += 1
    total = len(thread.parts)
    numbered = [f"{post} ({i}/{total})" for i, post in enumerate(thread.parts, start=1)]
    return Thread(parts=numbered, cut=thread.cut)


def _pack(
    units: list[tuple[str, int]], sources: list[str], tags: list[str], *, width: int
) -> Thread:
    cut: dict[str, dict[str, int]] = {}
    posts: list[str] = []
    current = ""
    line = -1
    for index, (unit, number) in enumerate(units):
        for piece in [unit] if len(unit) <= width else tx.split_words(unit, width):
            separator = " " if number == line else "\n"
            if current and len(current) + len(separator) + len(piece) <= width:
                current += separator + piece
            else:
                if current:
                    posts.append(current)
                current = piece
            line = number
        if index == 0:  # the hook stands alone
            posts.append(current)
            current = ""
    if current:
        posts.append(current)

    if sources:
        block = SOURCES_LABEL
        for document in sources:
            entry = tx.shorten(document, width - len(SOURCES_LABEL) - 1)
            if entry != document:
                cut.setdefault("sources", {"before": 0, "after": 0})
                cut["sources"]["before"] += len(document)
                cut["sources"]["after"] += len(entry)
            if len(block) + 1 + len(entry) <= width:
                block += "\n" + entry
            else:
                posts.append(block)
                block = f"{SOURCES_LABEL}\n{entry}"
        posts.append(block)

    kept = list(tags)
    while kept and len(" ".join(kept)) > width:
        kept.pop()
    if len(kept) < len(tags):
        cut["hashtags"] = {"before": len(tags), "after": len(kept)}
    if kept:
        tag_line = " ".join(kept)
        if posts and len(posts[-1]) + 1 + len(tag_line) <= width:
            posts[-1] += "\n" + tag_line
        else:
            posts.append(tag_line)
    return Thread(parts=posts, cut=cut)


def split_thread_text(text: str) -> tuple[str, list[str], list[str]]:
    """A thread's text taken apart: (body, hashtags on their own lines, source documents)."""
    body_blocks: list[str] = []
    tags: list[str] = []
    sources: list[str] = []
    for block in _BLANK_LINES.split(_POST_NUMBER.sub("", tx.normalize_newlines(text))):
        lines = block.strip().split("\n")
        is_sources = lines[0].strip().startswith(SOURCES_LABEL)
        if is_sources:
            lines[0] = lines[0].strip()[len(SOURCES_LABEL) :]
        kept: list[str] = []
        for line in lines:
            if tx.is_hashtag_line(line):
                tags.extend(tx.find_hashtags(line))
            elif line.strip():
                kept.append(line.strip())
        if is_sources:
            sources.extend(d.strip() for k in kept for d in k.split(", ") if d.strip())
        elif kept:
            body_blocks.append("\n".join(kept))
    return "\n\n".join(body_blocks), tags, sources


def _thread(key: str, deliverable: str, content: Content, prep: _Prepared) -> ChannelVariant:
    plain = tx.markdown_to_plain(prep.body)
    hashtags = _hashtags(content, plain)
    thread = build_thread(
        _strip_hashtag_lines(plain),
        hashtags=hashtags,
        sources=[doc for _, doc in prep.sources],
        max_chars=limits_for(key)["max_chars_per_post"],
    )
    variant = _base(key, deliverable, content)
    variant.title = prep.title
    variant.parts = thread.parts
    variant.text = "\n\n".join(thread.parts)
    variant.hashtags = tx.find_hashtags(variant.text)
    variant.limits = {"cut": thread.cut} if thread.cut else {}
    return variant


# --- email ----------------------------------------------------------------------------------


def email_document(
    *,
    body_html: str,
    subject: str,
    preheader: str | None,
    language: str | None,
    sources_html: str = "",
) -> str:
    """A complete HTML e-mail document around an already escaped body."""
    lang = f' lang="{html.escape(language, quote=True)}"' if language else ""
    hidden = (
        f'<div style="display:none;max-height:0;overflow:hidden">{html.escape(preheader)}</div>\n'
        if preheader
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html{lang}>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(subject)}</title>\n</head>\n<body>\n{hidden}"
        f"{body_html}{sources_html}</body>\n</html>\n"
    )


def _sources_html(sources: list[tuple[int, str]]) -> str:
    if not sources:
        return ""
    items: list[str] = []
    for n, doc in sources:
        label = html.escape(doc)
        ref = (
            f'<a href="{html.escape(doc, quote=True)}">{label}</a>'
            if is_url(doc)
            else f"<code>{label}</code>"
        )
        items.append(f'<li value="{n}">{ref}</li>')
    return "<h2>Sources</h2>\n<ol>\n" + "\n".join(items) + "\n</ol>\n"


def footnotes(sources: list[tuple[int, str]]) -> str:
    return "\n".join(f"[{n}] {doc}" for n, doc in sources)


def _email(key: str, deliverable: str, content: Content, prep: _Prepared) -> ChannelVariant:
    limits = limits_for(key)
    cut: dict[str, dict[str, int]] = {}
    plain = tx.markdown_to_plain(prep.body)
    opening = tx.paragraphs(prep.body)
    first = opening[0] if opening else tx.squash(plain)
    subject = _fit(
        tx.squash(prep.title or _fallback_title(prep.body) or ""),
        limits["max_subject_chars"],
        "subject",
        cut,
    )
    preheader = tx.shorten(tx.first_sentence(first), limits["max_preheader_chars"])
    text = plain
    if prep.sources:
        text = f"{plain}\n\n{FOOTNOTE_RULE}\n{footnotes(prep.sources)}".lstrip("\n")
    variant = _base(key, deliverable, content)
    variant.title = prep.title
    variant.subject = subject
    variant.preheader = preheader or None
    variant.text = text
    variant.html = email_document(
        body_html=tx.render_html(prep.body),
        subject=subject,
        preheader=variant.preheader,
        language=content.language,
        sources_html=_sources_html(prep.sources),
    )
    variant.limits = {"cut": cut} if cut else {}
    return variant


def plain_email_html(variant: ChannelVariant) -> str:
    """The HTML part rebuilt from a plain-text e-mail (after a person edited the text)."""
    lines = tx.normalize_newlines(variant.text).split("\n")
    body_lines, notes = lines, []
    if FOOTNOTE_RULE in (line.strip() for line in lines):
        rule = max(i for i, line in enumerate(lines) if line.strip() == FOOTNOTE_RULE)
        body_lines, notes = lines[:rule], lines[rule + 1 :]
    blocks: list[str] = []
    for block in _BLANK_LINES.split("\n".join(body_lines).strip()):
        rows = [r for r in block.split("\n") if r.strip()]
        if not rows:
            continue
        if all(r.startswith(f"{tx.BULLET} ") for r in rows):
            items = "".join(f"<li>{html.escape(r[2:])}</li>" for r in rows)
            blocks.append(f"<ul>{items}</ul>")
        else:
            blocks.append("<p>" + "<br>\n".join(html.escape(r) for r in rows) + "</p>")
    sources: list[tuple[int, str]] = []
    for note in notes:
        match = re.match(r"\s*\[(\d+)\]\s+(.+)", note)
        if match:
            sources.append((int(match.group(1)), match.group(2).strip()))
    return email_document(
        body_html="\n".join(blocks) + "\n",
        subject=variant.subject or "",
        preheader=variant.preheader,
        language=variant.language,
        sources_html=_sources_html(sources),
    )


# --- report ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = format(value, ".10g") if isinstance(value, float) else str(value)
    return md_escape(tx.squash(text))


def table_markdown(rows: list[dict[str, Any]], *, max_rows: int = REPORT_MAX_TABLE_ROWS) -> str:
    """Rows as a Markdown table (pipes escaped), with a note of the rows left out."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    if not columns:
        return "(no rows)"
    shown = rows[:max_rows]
    lines = [
        "| " + " | ".join(md_escape(str(c)) for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines.extend("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in shown)
    table = "\n".join(lines)
    if len(rows) > max_rows:
        table += f"\n\n({len(rows) - max_rows} more rows)"
    return table


def image_markdown(path: str) -> str:
    target = _md_link_target(path) if any(c in path for c in " ()<>") else path
    return f"![chart]({target})"


def _report(
    key: str, deliverable: str, content: Content, prep: _Prepared, meta: Metadata
) -> ChannelVariant:
    title = prep.title or (tx.squash(content.topic) if content.topic else None) or "Report"
    blocks = [f"# {title}", prep.body]
    if content.tables:
        blocks.append("## Data")
        for index, rows in enumerate(content.tables, start=1):
            if len(content.tables) > 1:
                blocks.append(f"### Table {index}")
            blocks.append(table_markdown(rows))
    if content.charts:
        blocks.append("## Charts")
        blocks.extend(image_markdown(path) for path in content.charts)
    if prep.sources:
        blocks.append(sources_markdown(prep.sources))
    quality = "not assessed" if meta.quality_score is None else f"{meta.quality_score:.2f}"
    blocks.append(
        "## About this report\n\n"
        f"- Task: {_md_code(meta.task_id)}\n"
        f"- Models: {md_escape(', '.join(meta.models)) or 'none'}\n"
        f"- Cost: ${meta.cost:.4f}\n"
        f"- Quality score: {quality}"
    )
    text = "\n\n".join(b for b in blocks if b.strip())
    variant = _base(key, deliverable, content)
    variant.title = title
    variant.text = text
    variant.html = tx.render_html(text)
    variant.headings = tx.headings(prep.body)
    variant.limits = {
        "tables": len(content.tables),
        "charts": len(content.charts),
        "max_table_rows": REPORT_MAX_TABLE_ROWS,
    }
    total = sum(len(rows) for rows in content.tables)
    shown = sum(min(len(rows), REPORT_MAX_TABLE_ROWS) for rows in content.tables)
    if total > shown:
        variant.limits["cut"] = {"table_rows": {"before": total, "after": shown}}
    return variant
