"""Markdown and plain-text helpers shared by the channel formatters: pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

ELLIPSIS = "…"
BULLET = "•"

# Raw HTML in a writer's Markdown is shown as text, never passed through.
_MD = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)")
_HASHTAG = re.compile(r"(?<![\w#&/])#(\w*[^\W\d_]\w*)")
_SPACE = re.compile(r"\s+")
_BOUNDARY_PUNCT = " \t\n,;:-\u2013\u2014(/"


def parse(markdown: str) -> SyntaxTreeNode:
    return SyntaxTreeNode(_MD.parse(markdown))


def render_html(markdown: str) -> str:
    """The Markdown as an HTML fragment; raw HTML and unsafe link schemes are escaped."""
    return _MD.render(markdown)


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces, ends stripped."""
    return _SPACE.sub(" ", text).strip()


def same_text(a: str, b: str) -> bool:
    """Equal ignoring case, spacing and punctuation (a title repeated as a heading)."""

    def key(s: str) -> str:
        return "".join(c for c in s.casefold() if c.isalnum())

    return key(a) == key(b)


# --- Markdown structure -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadingHeading:
    text: str
    rest: str  # the Markdown without that heading


def leading_h1(markdown: str) -> LeadingHeading | None:
    """The body's first block when it is a level-1 heading, and the body without it."""
    tokens = _MD.parse(markdown)
    if not tokens or tokens[0].type != "heading_open" or tokens[0].tag != "h1":
        return None
    span = tokens[0].map
    if span is None:
        return None
    inline = SyntaxTreeNode(tokens[:3])
    text = squash(inline_text(inline.children[0].children[0])) if inline.children else ""
    lines = markdown.split("\n")
    rest = "\n".join(lines[: span[0]] + lines[span[1] :]).strip("\n")
    return LeadingHeading(text=text, rest=rest)


def headings(markdown: str, *, level: int = 2) -> list[str]:
    """The text of every heading of ``level`` (``## ...`` for 2), in order."""
    tag = f"h{level}"
    found: list[str] = []
    for node in parse(markdown).walk():
        if node.type == "heading" and node.tag == tag and node.children:
            found.append(squash(inline_text(node.children[0])))
    return found


def inline_text(node: SyntaxTreeNode) -> str:
    """Plain text of an inline node: emphasis dropped, links as ``text (url)``."""
    parts: list[str] = []
    for child in node.children:
        match child.type:
            case "text" | "code_inline" | "html_inline":
                parts.append(child.content)
            case "softbreak" | "hardbreak":
                parts.append("\n")
            case "link":
                label = inline_text(child)
                href = str(child.attrs.get("href", ""))
                bare = href.removeprefix("mailto:")
                parts.append(label if not href or label in (href, bare) else f"{label} ({href})")
            case "image":
                parts.append(inline_text(child))
            case _:
                parts.append(inline_text(child))
    return "".join(parts)


def markdown_to_plain(markdown: str) -> str:
    """Plain text of Markdown: headings as lines, lists as ``• item``, links as ``text (url)``."""
    return "\n\n".join(b for b in _blocks(parse(markdown)) if b.strip())


def paragraphs(markdown: str) -> list[str]:
    """The plain text of each top-level paragraph (not headings, lists or code)."""
    return [
        squash(inline_text(node.children[0]))
        for node in parse(markdown).children
        if node.type == "paragraph" and node.children
    ]


def _blocks(node: SyntaxTreeNode) -> list[str]:
    out: list[str] = []
    for child in node.children:
        match child.type:
            case "heading" | "paragraph":
                out.append(inline_text(child.children[0]).strip() if child.children else "")
            case "bullet_list" | "ordered_list":
                out.append(_list(child))
            case "fence" | "code_block" | "html_block":
                out.append(child.content.rstrip("\n"))
            case "table":
                out.append(_table_plain(child))
            case "hr":
                pass
            case _:
                out.extend(_blocks(child))
    return out


def _list(node: SyntaxTreeNode) -> str:
    start = node.attrs.get("start", 1)
    number = start if isinstance(start, int) else 1
    lines: list[str] = []
    for index, item in enumerate(node.children):
        marker = f"{BULLET} " if node.type == "bullet_list" else f"{number + index}. "
        body = "\n".join(b for b in _blocks(item) if b.strip())
        item_lines = body.split("\n") or [""]
        lines.append(marker + item_lines[0])
        lines.extend("  " + line for line in item_lines[1:])
    return "\n".join(lines)


def _table_plain(node: SyntaxTreeNode) -> str:
    rows: list[str] = []
    for row in node.walk():
        if row.type == "tr":
            cells = [squash(inline_text(c.children[0])) if c.children else "" for c in row.children]
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --- sentences and cutting ------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    """``text`` split after sentence ends; a lowercase next word means an abbreviation."""
    found: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest and rest[0].islower():
            continue
        piece = text[start : match.end()].strip()
        if piece:
            found.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        found.append(tail)
    return found


def first_sentence(text: str) -> str:
    for line in text.split("\n"):
        found = sentences(line)
        if found:
            return found[0]
    return ""


def shorten(text: str, limit: int) -> str:
    """``text`` when it fits, else cut at a word boundary with an ellipsis (never over ``limit``)."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return text[:limit]
    room = limit - len(ELLIPSIS)
    cut = text[:room]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    # Only back off to a word boundary when that keeps most of the room.
    if space >= room // 2 and not text[room].isspace():
        cut = cut[:space]
    return cut.rstrip(_BOUNDARY_PUNCT) + ELLIPSIS


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` chars: at a paragraph or sentence end if one is near, else a word."""
    if len(text) <= limit:
        return text
    marker = " " + ELLIPSIS
    room = limit - len(marker)
    if room <= 0:
        return shorten(text, limit)
    window = text[:room]
    best = -1
    for boundary in ("\n\n", "\n"):
        best = max(best, window.rfind(boundary))
    for match in _SENTENCE_END.finditer(window + " "):
        best = max(best, match.end())
    if best >= room * 2 // 3:
        return window[:best].rstrip() + marker
    return shorten(text, limit)


def split_words(text: str, width: int) -> list[str]:
    """Greedy lines of at most ``width`` chars; a word longer than that is cut into pieces."""
    chunks: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > width:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(word[:width])
            word = word[width:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width:
            current = candidate
        else:
            chunks.append(current)
            current = word
    if current:
        chunks.append(current)
    return chunks


# --- hashtags and slugs ---------------------------------------------------------------------

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "your",
        "you",
        "about",
        "after",
        "before",
        "over",
        "under",
        "new",
        "using",
        "via",
        "vs",
        "per",
    ]
)


def find_hashtags(text: str) -> list[str]:
    """The hashtags in ``text``, first spelling of each, in order."""
    seen: set[str] = set()
    found: list[str] = []
    for match in _HASHTAG.finditer(text):
        tag = "#" + match.group(1)
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            found.append(tag)
    return found


def is_hashtag_line(line: str) -> bool:
    return bool(line.strip()) and not _HASHTAG.sub("", line).strip()


def camel_hashtag(phrase: str) -> str | None:
    """``"machine learning"`` -> ``"#MachineLearning"``; None when no letter is left."""
    words = re.findall(r"[^\W_]+", phrase)
    tag = "".join(w[:1].upper() + w[1:] for w in words)
    if not tag or not any(c.isalpha() for c in tag):
        return None
    return "#" + tag


def make_hashtags(keywords: Iterable[str], topic: str | None, *, limit: int = 3) -> list[str]:
    """Up to ``limit`` CamelCase hashtags from SEO keywords, else from the topic's words."""
    candidates = [k for k in keywords if k.strip()]
    if not candidates and topic:
        candidates = [
            w
            for w in re.findall(r"[^\W_]+", topic)
            if w.casefold() not in _STOPWORDS and (len(w) >= 3 or w.isupper()) and not w.isdigit()
        ]
    tags: list[str] = []
    seen: set[str] = set()
    for phrase in candidates:
        tag = camel_hashtag(phrase)
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
        if len(tags) == limit:
            break
    return tags


def normalize_hashtag(value: str) -> str | None:
    return camel_hashtag(value.strip().lstrip("#")) if value.strip() else None


def slugify(text: str, *, limit: int = 60) -> str:
    """Lowercase ASCII words joined by hyphens, cut at a hyphen to at most ``limit`` chars."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        cut = slug[: limit + 1]
        slug = cut[: cut.rfind("-")] if "-" in cut else slug[:limit]
    return slug.strip("-")
