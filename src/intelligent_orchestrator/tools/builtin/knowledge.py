"""Documents as text (md, txt, pdf, html) and a BM25 index over the workspace's ``knowledge/``.

Used by ``research`` (which cites the passages it found) and by the tools that accept a
workspace file instead of text (``summarize``, ``extract``).
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError
from intelligent_orchestrator.tools.workspace import resolve_in_workspace

KNOWLEDGE_DIR = "knowledge"
DOCUMENT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".pdf", ".html", ".htm"}
MAX_DOCUMENT_BYTES = 20_000_000

_WORD = re.compile(r"[0-9a-zA-Z\u00c0-\u024f]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "we",
        "our",
        "you",
        "your",
        "they",
        "their",
        "what",
        "which",
        "who",
        "how",
        "why",
        "when",
        "where",
        "do",
        "does",
        "can",
        "about",
        "into",
        "than",
        "then",
        "so",
        "if",
        "not",
        "no",
    ]
)


def tokens(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP]


class _HtmlText(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "svg"}
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def document_text(path: Path) -> str:
    """The text of a md/txt/pdf/html file; a clear error for anything else or unreadable."""
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        raise ToolInputError(
            f"{path.name}: unsupported document type {suffix or '(none)'} "
            f"(supported: {', '.join(sorted(DOCUMENT_SUFFIXES))})"
        )
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ToolInputError(f"{path.name}: larger than {MAX_DOCUMENT_BYTES} bytes")
    data = path.read_bytes()
    if suffix == ".pdf":
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(data))
            return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
        except (PdfReadError, ValueError, KeyError) as exc:
            raise ToolExecutionError(f"{path.name}: cannot read the PDF: {exc}") from exc
    text = data.decode("utf-8", errors="replace")
    return html_to_text(text) if suffix in {".html", ".htm"} else text


def workspace_text(workspace: Path, relative: str) -> str:
    return document_text(resolve_in_workspace(workspace, relative, must_exist=True))


@dataclass(frozen=True, slots=True)
class Passage:
    document: str  # path relative to the workspace
    index: int  # passage number within the document, from 1
    text: str


def passages(document: str, text: str, *, target_words: int = 120) -> list[Passage]:
    """Split a text into passages of whole paragraphs of about ``target_words`` words."""
    out: list[Passage] = []
    current: list[str] = []
    count = 0
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        words = len(para.split())
        if current and count + words > target_words:
            out.append(Passage(document, len(out) + 1, "\n\n".join(current)))
            current, count = [], 0
        current.append(para)
        count += words
    if current:
        out.append(Passage(document, len(out) + 1, "\n\n".join(current)))
    return out


class Bm25:
    """Okapi BM25 over passages (k1 1.5, b 0.75)."""

    def __init__(self, items: list[Passage], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.items = items
        self.k1, self.b = k1, b
        self.freqs = [Counter(tokens(p.text)) for p in items]
        self.lengths = [sum(f.values()) for f in self.freqs]
        self.avg = (sum(self.lengths) / len(items)) if items else 0.0
        df: Counter[str] = Counter()
        for f in self.freqs:
            df.update(f.keys())
        n = len(items)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def search(self, query: str, *, top_k: int) -> list[tuple[Passage, float]]:
        terms = set(tokens(query))
        scored = []
        for i, f in enumerate(self.freqs):
            score = 0.0
            for t in terms:
                tf = f.get(t)
                if not tf:
                    continue
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[i] / (self.avg or 1))
                score += self.idf[t] * tf * (self.k1 + 1) / norm
            if score > 0:
                scored.append((self.items[i], score))
        scored.sort(key=lambda x: (-x[1], x[0].document, x[0].index))
        return scored[:top_k]


def knowledge_passages(workspace: Path) -> tuple[list[Passage], list[str]]:
    """Every passage of every document under ``knowledge/``, and the files it could not read."""
    root = workspace / KNOWLEDGE_DIR
    found: list[Passage] = []
    unreadable: list[str] = []
    if not root.is_dir():
        return found, unreadable
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in DOCUMENT_SUFFIXES:
            continue
        rel = path.relative_to(workspace).as_posix()
        try:
            resolve_in_workspace(workspace, rel, must_exist=True)  # no symlinks out
            found += passages(rel, document_text(path))
        except (ToolInputError, ToolExecutionError, OSError) as exc:
            unreadable.append(f"{rel}: {exc}")
    return found, unreadable
