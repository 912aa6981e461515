"""Deterministic reading of a request: channels, languages, files, recipients, side-effect intent.

Only the user's own words are read here; nothing a tool returns (documents, pages, outputs)
ever reaches this parser, so text inside them cannot add a tool or a recipient.

Side-effect intent is parsed, not keyword-matched: "a LinkedIn post" is a noun, "post it on
LinkedIn" a verb, and "don't post it yet" a negated verb in its clause.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..domain.models import Requirements

CHANNELS: dict[str, tuple[str, ...]] = {
    "blog": ("blog", "blog post", "article"),
    "linkedin": ("linkedin",),
    "twitter": ("twitter", "tweet", "x thread", "x post", "x/twitter"),
    "instagram": ("instagram",),
    "facebook": ("facebook",),
    "newsletter": ("newsletter",),
    "email": ("email", "e-mail", "mail"),
    "report": ("report", "memo", "briefing"),
    "web": ("landing page", "web page", "webpage", "website copy", "product page"),
    "product_description": ("product description",),
}
SOCIAL = {"linkedin", "twitter", "instagram", "facebook"}
WEB = {"blog", "web"}

LANGUAGES = {
    "english": "English", "german": "German", "french": "French", "spanish": "Spanish",
    "italian": "Italian", "portuguese": "Portuguese", "dutch": "Dutch", "polish": "Polish",
    "swedish": "Swedish", "danish": "Danish", "norwegian": "Norwegian", "finnish": "Finnish",
    "czech": "Czech", "greek": "Greek", "turkish": "Turkish", "russian": "Russian",
    "ukrainian": "Ukrainian", "arabic": "Arabic", "hebrew": "Hebrew", "hindi": "Hindi",
    "chinese": "Chinese", "mandarin": "Chinese", "japanese": "Japanese", "korean": "Korean",
    "vietnamese": "Vietnamese", "thai": "Thai", "indonesian": "Indonesian", "romanian": "Romanian",
    "hungarian": "Hungarian", "catalan": "Catalan",
}  # fmt: skip

NEEDS: dict[str, tuple[str, ...]] = {
    "research": (
        "research", "find out", "look up", "according to", "our docs", "knowledge base",
        "sources", "cite", "citations", "competitor", "market trends", "fact-check",
        "what do our documents", "background on",
    ),
    "metrics": (
        "metrics", "kpi", "kpis", "growth", "conversion", "cac", "churn", "roi", "profit",
        "margin", "revenue", "acquisition cost",
    ),
    "chart": ("chart", "graph", "plot", "visualis", "visualiz", "dashboard"),
    "summarize": ("summar", "tl;dr", "tldr", "key points", "digest", "recap", "condense"),
    "extract": ("extract", "pull out", "fields from", "parse the", "invoice number", "line items"),
    "seo": ("seo", "search engine", "meta description", "keywords", "rank on google"),
    "qa": ("proofread", "qa ", "quality check", "check the draft", "review the draft", "fact check"),
    "analysis": ("analy", "break down", "breakdown", "compare", "trend", "by region", "by month",
                 "per month", "per region", "top ", "total", "average", "sum of", "how many", "query"),
}  # fmt: skip
WRITE_WORDS = (
    "write", "draft", "compose", "create a", "prepare a", "put together", "announce",
    "announcement", "copy for", "post about", "teaser", "caption", "thread",
)  # fmt: skip
DATA_SUFFIXES = {".csv", ".tsv", ".xlsx", ".xls", ".parquet", ".json"}
TEXT_SUFFIXES = {".md", ".txt", ".pdf", ".html", ".htm", ".markdown"}

_FILE = re.compile(r"(?<![\w@/.-])((?:[\w-]+/)*[\w-]+\.(?:csv|tsv|xlsx|xls|parquet|json|pdf|md|markdown|txt|html|htm))\b", re.I)  # fmt: skip
_URL = re.compile(r"https?://[^\s<>\"')]+")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_WORDS_N = re.compile(r"\b(\d{2,4})[- ]?words?\b", re.I)
_DATE = re.compile(
    r"\b(?:by|before|on|until|due)\s+((?:next\s+)?(?:monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|tomorrow|tonight|end of (?:day|week|month|quarter))|\d{4}-\d{2}-\d{2}|"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?)\b",
    re.I,
)
_NEGATION = re.compile(
    r"\b(?:don'?t|do not|doesn'?t|never|not|no need to|without|hold off|avoid|shouldn'?t|"
    r"won'?t|can'?t|instead of)\b",
    re.I,
)
_DRAFT_ONLY = re.compile(
    r"\b(?:draft only|only (?:a )?draft|just (?:a )?draft|as a draft|for review|for approval|"
    r"(?:don'?t|do not|not) (?:send|post|publish|share)(?: it| them| anything)?(?: yet)?|"
    r"not yet|hold off)\b",
    re.I,
)
# A verb use needs a verb position: clause start, after a connective or a subject/modal.
_VERB_LEAD = (
    r"(?:^|[,;:.!?]\s*|\b(?:and|then|also|please|to|we|you|i|and then|so|can you|could you|"
    r"will you|let's|lets|pls|kindly)\s+)"
)
_SEND = re.compile(_VERB_LEAD + r"(?:send|e-?mail|mail)\b(?!\s+(?:address|list|campaign|newsletter\s+draft))", re.I)  # fmt: skip
_PUBLISH = re.compile(_VERB_LEAD + r"(?:publish|post|share|tweet|schedule|put)\b(?!\s+(?:about|ideas?|series|draft)\b)", re.I)  # fmt: skip
_WEBHOOK = re.compile(r"\bwebhook\b|\b(?:notify|ping|call)\s+(?:our\s+)?(?:slack|zapier|endpoint|the endpoint|https?://)", re.I)  # fmt: skip
_SAVE = re.compile(_VERB_LEAD + r"(?:save|store|write)\b[^.;]*?\b(?:to|as|into|in)\s+(?:the\s+)?(?:file\s+)?((?:[\w-]+/)*[\w-]+\.(?:md|txt|html|csv|json))", re.I)  # fmt: skip
_AUDIENCE = re.compile(r"\bfor (?:our |the |my )?([a-z][a-z\- ]{2,40}?)(?:\s+(?:in|on|about|with|by|that|who|and)\b|[,.;]|$)", re.I)  # fmt: skip
_TONE = re.compile(r"\b(friendly|formal|casual|playful|professional|upbeat|serious|warm|witty|persuasive|informal|neutral|enthusiastic|urgent)\b", re.I)  # fmt: skip
_SHORT_LEN = {
    "short": 150,
    "brief": 120,
    "quick": 120,
    "long": 900,
    "in-depth": 1200,
    "detailed": 900,
}
_AUDIENCE_STOP = {
    "example",
    "instance",
    "now",
    "sure",
    "me",
    "us",
    "review",
    "approval",
    "the week",
    "today",
}


def clauses(text: str) -> list[str]:
    """The request split into clauses (sentences, semicolons, 'but', 'and then')."""
    parts = re.split(
        r"(?<=[.!?;])\s+|\s+but\s+|\s*\n\s*|,\s*(?:and\s+)?then\s+|,\s*and\s+(?=a |an |the |also )",
        text,
    )
    return [p.strip() for p in parts if p and p.strip()]


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    low = f" {text.lower()} "
    return any(re.search(r"(?<![a-z])" + re.escape(w.strip()), low) for w in words)


def _channels(text: str) -> list[str]:
    low = text.lower()
    found: list[str] = []
    for channel, words in CHANNELS.items():
        for w in words:
            if (
                channel == "twitter"
                and w in ("x thread", "x post")
                and not re.search(rf"\b{w}\b", low)
            ):
                continue
            if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", low):
                found.append(channel)
                break
    if "product_description" in found and "web" in found:
        found.remove("web")
    if "email" in found and "newsletter" in found and not re.search(r"\b(an|the|a) e-?mail\b", low):
        found.remove("email")  # "newsletter email" is one deliverable
    return found


def scoped_channels(request: str, pattern: re.Pattern[str] | str) -> list[str] | None:
    """Channels named in the clauses that match ``pattern`` ("publish the blog" → [blog]),
    or None when those clauses name no channel ("publish it")."""
    found: list[str] = []
    for clause in clauses(" ".join(request.split())):
        if re.search(pattern, clause):
            found += [c for c in _channels(clause) if c not in found]
    return found or None


def _languages(text: str) -> list[str]:
    found: list[str] = []
    for m in re.finditer(
        r"\b(?:in|into|to|and|also|plus|a|an)\s+([A-Z][a-z]+)\b|\b([A-Z][a-z]+)\s+(?:version|translation|copy)\b",
        text,
    ):
        name = (m.group(1) or m.group(2) or "").lower()
        lang = LANGUAGES.get(name)
        if lang and lang not in found:
            found.append(lang)
    for m in re.finditer(r"\btranslat\w*\b[^.;]*", text, re.I):
        for w in re.findall(r"[A-Za-z]+", m.group(0)):
            lang = LANGUAGES.get(w.lower())
            if lang and lang not in found:
                found.append(lang)
    if found == ["English"] or (
        "English" in found
        and not re.search(r"\benglish (version|translation)|translat\w* [^.]*english", text, re.I)
    ):
        found = [f for f in found if f != "English"]
    return found


def _side_effects(text: str) -> tuple[list[str], bool, list[str]]:
    """Actions the request asks for, whether it says draft only, and the constraints seen."""
    wants: list[str] = []
    constraints: list[str] = []
    draft_only = bool(_DRAFT_ONLY.search(text))
    if draft_only:
        constraints.append("draft only: nothing is sent or posted")
    for clause in clauses(text):
        negated = bool(_NEGATION.search(clause))
        if _SEND.search(clause) and not negated:
            wants.append("send_email")
        if _PUBLISH.search(clause) and not negated:
            wants.append("publish")
        if _WEBHOOK.search(clause) and not negated:
            wants.append("webhook")
        if _SAVE.search(clause) and not negated:
            wants.append("save")
    if draft_only:
        wants = [w for w in wants if w == "save"]
    return list(dict.fromkeys(wants)), draft_only, constraints


def workspace_files(workspace: Path | None, limit: int = 500) -> list[str]:
    if workspace is None or not workspace.is_dir():
        return []
    out = []
    for p in sorted(workspace.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.parts):
            rel = p.relative_to(workspace).as_posix()
            if not rel.startswith(("artifacts/", "drafts/")):
                out.append(rel)
        if len(out) >= limit:
            break
    return out


def _files(text: str, available: list[str]) -> list[str]:
    named: list[str] = []
    for m in _FILE.finditer(text):
        name = m.group(1)
        exact = [f for f in available if f == name or f.endswith("/" + name)]
        named.append(exact[0] if exact else name)
    return list(dict.fromkeys(named))


def parse_requirements(request: str, *, workspace: Path | None = None) -> Requirements:
    """What can be read from the words alone (the LLM fills intent/topic/audience/tone after)."""
    text = " ".join(request.split())
    low = text.lower()
    available = workspace_files(workspace)
    files = _files(text, available)
    channels = _channels(text)
    languages = _languages(text)
    wants, draft_only, constraints = _side_effects(text)
    needs = [n for n, words in NEEDS.items() if _mentions(text, words)]
    data_files = [f for f in files if Path(f).suffix.lower() in DATA_SUFFIXES]
    doc_files = [f for f in files if Path(f).suffix.lower() in TEXT_SUFFIXES]
    if data_files or (("metrics" in needs or "chart" in needs) and _data_in(available)):
        needs.append("data")
    if (
        "data" not in needs
        and "analysis" in needs
        and _data_in(available)
        and re.search(r"\b(data|numbers|figures|sales|spreadsheet|table|ledger)\b", low)
    ):
        needs.append("data")
    if languages:
        needs.append("translate")
    urls = _URL.findall(text)
    if urls and "webhook" not in wants:
        needs.append("research")
    if channels or any(w in low for w in WRITE_WORDS):
        needs.append("write")
    if (
        "extract" in needs
        and not doc_files
        and not data_files
        and not _mentions(text, ("from the text", "from this"))
    ):
        pass  # extraction from text given inline is still extraction
    if doc_files and not any(
        n in needs for n in ("summarize", "extract", "translate", "write", "research")
    ):
        needs.append("summarize")  # "what does contract.pdf say" → a summary of it
    recipients = list(dict.fromkeys(_EMAIL.findall(text)))
    length = None
    if m := _WORDS_N.search(text):
        length = int(m.group(1))
    else:
        for word, n in _SHORT_LEN.items():
            if re.search(rf"\b{re.escape(word)}\b", low):
                length = n
                break
    tone = m.group(1).lower() if (m := _TONE.search(text)) else None
    audience = None
    for m in _AUDIENCE.finditer(text):
        cand = m.group(1).strip().lower()
        if cand not in _AUDIENCE_STOP and not any(
            c in cand for c in ("linkedin", "twitter", "blog", "newsletter", "q1", "q2", "q3", "q4")
        ):
            audience = cand
            break
    return Requirements(
        audience=audience,
        tone=tone,
        length_words=length,
        channels=channels,
        languages=languages,
        files=files,
        urls=urls,
        deadlines=[m.group(1) for m in _DATE.finditer(text)],
        recipients=recipients,
        needs=list(dict.fromkeys(needs)),
        side_effects=wants,
        draft_only=draft_only,
        constraints=constraints,
    )


def _data_in(available: list[str]) -> list[str]:
    return [f for f in available if Path(f).suffix.lower() in DATA_SUFFIXES]
