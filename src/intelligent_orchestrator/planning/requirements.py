"""Deterministic reading of a request: channels, languages, files, recipients, side-effect intent.

Only the user's own words are read here; nothing a tool returns (documents, pages, outputs)
ever reaches this parser, so text inside them cannot add a tool or a recipient.

Side-effect intent is parsed, not keyword-matched: "a LinkedIn post" is a noun, "post it on
LinkedIn" a verb, and "don't post it yet" a negated verb in its clause.
"""

from __future__ import annotations

import csv
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
    "social": ("social post", "social media post", "social media", "socials"),
}
SOCIAL = {"linkedin", "twitter", "instagram", "facebook", "social"}
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
        "what do our documents", "background on", "conflict", "contradict", "where each",
        "what does our", "what do our", "is it true", "consistent with", "search our",
        "our documents", "what it says", "where it says", "look through our",
    ),
    "metrics": (
        "metrics", "kpi", "kpis", "growth", "conversion", "cac", "churn", "roi", "profit",
        "margin", "revenue", "acquisition cost",
    ),
    "chart": ("chart", "graph", "plot", "visualis", "visualiz", "dashboard"),
    "summarize": ("summar", "tl;dr", "tldr", "key points", "digest", "recap", "condense", "gist",
                  "in a nutshell", "main points", "short version"),
    "extract": ("extract", "pull out", "fields from", "parse the", "invoice number", "line items",
                "as json", "get me the", "list the", "what are the", "who the parties", "the parties",
                "separate fields", "seperate fields", "as fields", "into fields", "for my spreadsheet",
                "structured form", "structured data", "in a structured", "key terms out of"),
    "seo": ("seo", "search engine", "meta description", "keywords", "rank on google"),
    "qa": ("proofread", "qa ", "quality check", "check the draft", "review the draft", "fact check",
           "check that it", "check it for", "make sure it doesn", "doesn't use the phrase",
           "does not use the phrase", "banned phrase", "avoid the phrase", "check the tone",
           "check for typos", "spell-check", "spellcheck", "grammar", "spelling mistakes"),
    "analysis": ("analy", "break down", "breakdown", "compare", "trend", "by region", "by month",
                 "per month", "per region", "top ", "total", "average", "sum of", "how many", "query"),
}  # fmt: skip
WRITE_WORDS = (
    "write", "draft", "compose", "put together", "announce",
    "announcement", "copy for", "post about", "teaser", "caption", "thread",
    "tidy up", "rewrite", "rephrase", "reword", "polish", "shorten", "clean up", "edit",
    "blurb", "blurbs", "tagline", "slogan",
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
_SELF_DONE = re.compile(
    r"\b(?:i'?ll|i will|we'?ll|we will)\s+(?:post|send|publish|share|mail|email)\b", re.I
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
_PUBLISH = re.compile(
    _VERB_LEAD + r"(?:publish|post|share|tweet|schedule|(?:announce|put|go live)(?=[^.;]*\bon\s+"
    r"(?:our\s+|the\s+)?(?:blog|linkedin|twitter|x|facebook|instagram|website)\b))\b"
    r"(?!\s+(?:ideas?|series|draft)\b)(?![^.;,]*\b(?:slack|webhook|teams|discord)\b)"
    r"(?!\s+about\b(?![^.;,]*\b(?:on|to)\s+(?:our\s+|the\s+)?(?:linkedin|twitter|x|facebook|instagram|blog|website)\b))",
    re.I,
)
_WEBHOOK = re.compile(r"\bwebhook\b|\b(?:notify|ping|call)\s+(?:our\s+)?(?:slack|zapier|endpoint|the endpoint|https?://)", re.I)  # fmt: skip
_SAVE = re.compile(_VERB_LEAD + r"(?:(?:save|store|put|place|keep)\b[^.;]*?\b(?:to|as|into|in)|write\b[^.;]*?\b(?:it|them|this|that)\s+(?:to|into))\s+(?:the\s+|a\s+)?(?:[\w ]{0,20}\s)?(?:file\s+|folder\s+)?((?:[\w-]+/)*[\w-]+\.(?:md|txt|html|csv|json)|drafts(?:\s+folder|/)?)", re.I)  # fmt: skip
_EXTRACT_SHAPE = re.compile(
    r"\b(?:pull|get|take|grab)\b[^.;]{3,120}?\b(?:out of|from)\b|\blist (?:every|all|each)\b",
    re.I,
)
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


def _near(a: str, b: str) -> bool:
    """One edit apart (a typo), for words of 7 letters or more."""
    if min(len(a), len(b)) < 7 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _fuzzy_in(phrase: str, low: str) -> bool:
    """``phrase`` in ``low`` allowing one typo per long word ("product descriptons")."""
    want = phrase.split()
    words = re.findall(r"[a-z]+", low)
    for i in range(len(words) - len(want) + 1):
        if all(
            w == x or _near(w, x) or _near(w + "s", x)
            for w, x in zip(want, words[i:], strict=False)
        ):
            return any(len(w) >= 7 for w in want)
    return False


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
            hit = re.search(rf"(?<![a-z]){re.escape(w)}s?(?![a-z])", low)
            if hit and re.search(r"\b(this|these|that|following)\s+$", low[: hit.start()]):
                continue  # "this email": the content given, not a deliverable
            if hit or _fuzzy_in(w, low):
                found.append(channel)
                break
    if "product_description" in found and "web" in found:
        found.remove("web")
    if "email" in found and "newsletter" in found and not re.search(r"\b(an|the|a) e-?mail\b", low):
        found.remove("email")  # "newsletter email" is one deliverable
    return found


VAGUE = re.compile(
    r"\b(the usual|as usual|same as (?:last|before)|you know|do something|something with|"
    r"some content|something out|sort (?:it|that|this) out|sort it|make it better|improve it|"
    r"the thing|that thing|with something|help (?:us|me) with|help (?:us|me) out|"
    r"isn'?t our thing)\b",
    re.I,
)


def is_vague(text: str, req: Requirements) -> bool:
    """Nothing specific to act on: vague words and no named deliverable, file, URL or address."""
    specific = req.channels or req.files or req.urls or req.recipients or req.languages
    if "send_email" in req.side_effects and not req.recipients and not specific:
        return True  # "send the update to everyone": to whom, and what?
    if specific:
        return False
    if VAGUE.search(text):
        return True
    content = [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _GENERIC_WORDS]
    return len(content) < 2


_GENERIC_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "them",
        "to",
        "for",
        "of",
        "on",
        "in",
        "at",
        "by",
        "with",
        "and",
        "or",
        "but",
        "please",
        "pls",
        "can",
        "could",
        "would",
        "you",
        "we",
        "i",
        "me",
        "my",
        "our",
        "us",
        "need",
        "needs",
        "want",
        "do",
        "does",
        "make",
        "get",
        "give",
        "send",
        "write",
        "create",
        "post",
        "help",
        "something",
        "anything",
        "thing",
        "things",
        "stuff",
        "some",
        "all",
        "any",
        "just",
        "now",
        "next",
        "week",
        "today",
        "tomorrow",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "team",
        "everyone",
    ]
)


def scoped_channels(request: str, pattern: re.Pattern[str] | str) -> list[str] | None:
    """Channels named in the clauses that match ``pattern`` ("publish the blog" → [blog]),
    or None when those clauses name no channel ("publish it")."""
    found: list[str] = []
    for clause in clauses(" ".join(request.split())):
        if re.search(pattern, clause):
            found += [c for c in _channels(clause) if c not in found]
    return found or None


def _languages(text: str, *, has_content: bool = False) -> list[str]:
    found: list[str] = []
    for m in re.finditer(
        r"\b(?:in|into|to|and|also|plus|a|an)\s+(?=([a-z]+)\b)|\b([a-z]+)\s+(?:version|translation|copy)\b",
        text,
        re.I,
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
    explicit_english = re.search(
        r"\benglish (version|translation)|translat\w* [^.]*english|(?:say|mean|means) in english",
        text,
        re.I,
    ) or (has_content and re.search(r"\bin english\b", text, re.I))
    if "English" in found and not explicit_english:
        found = [f for f in found if f != "English"]
    return found


def _side_effects(text: str) -> tuple[list[str], bool, list[str]]:
    """Actions the request asks for, whether it says draft only, and the constraints seen."""
    wants: list[str] = []
    constraints: list[str] = []
    draft_only = False
    for clause in clauses(text):
        if _DRAFT_ONLY.search(clause) or _SELF_DONE.search(clause):
            draft_only = True  # this clause's deliverable stays a draft
            continue
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
        constraints.append(
            "draft only: nothing is sent or posted"
            if not wants
            else "part of it stays a draft: only what the user asked to send or post goes out"
        )
    draft_only = draft_only and not [w for w in wants if w != "save"]
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


_QUOTES = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![A-Za-z])'[^']{3,}'(?![A-Za-z])")
_CONTENT_COLON = re.compile(
    r"\b(?:this|these|following|message|text|paragraph|email|review|note|ticket|comment|"
    r"sentence|copy|draft|reply|translate|proofread|summari[sz]e|transcript|sign|quote)\b"
    r"[^:.]{0,80}(:\s+\S.*)$",
    re.I | re.S,
)


def inline_content(request: str) -> str | None:
    """Text the request carries as material: after "...this message:" or in quotes."""
    if (m := _CONTENT_COLON.search(request)) and not re.match(r":\s*[\"“]", m.group(1)):
        return m.group(1)[1:].strip().strip("\"“”'").strip() or None
    m = re.search(r"[\"“](.{20,}?)[\"”]", request, re.S)
    return m.group(1).strip() if m else None


def instructions_only(text: str) -> str:
    """The request without the content it carries (quoted text, text after "this message:"):
    words inside a message to translate or proofread are material, never instructions."""
    if (m := _CONTENT_COLON.search(text)) and not re.match(r":\s*[\"“]", m.group(1)):
        text = text[: m.start(1)]
    return " ".join(_QUOTES.sub(" ", text).split()).rstrip(" :")


def parse_requirements(request: str, *, workspace: Path | None = None) -> Requirements:
    """What can be read from the words alone (the LLM fills intent/topic/audience/tone after)."""
    full = " ".join(request.split())
    text = instructions_only(full)
    low = text.lower()
    available = workspace_files(workspace)
    save_targets = {m.group(1) for m in _SAVE.finditer(text)}
    files = [f for f in _files(full, available) if f not in save_targets]
    files = files or _stems_named(text, available)
    by_name = [] if files else _documents_by_name(text, available)
    files = files or by_name
    channels = _channels(text)
    languages = _languages(text, has_content=inline_content(full) is not None)
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
    if "data" not in needs and _asks_about_columns(text, workspace, available):
        needs.append("data")  # "how many new customers did East get in March?"
    if languages:
        needs.append("translate")
    urls = _URL.findall(text)
    if urls and "webhook" not in wants:
        needs.append("research")
    if channels or any(
        re.search(rf"(?<![a-z-]){re.escape(w)}(?![a-z-])", low) for w in WRITE_WORDS
    ):
        needs.append("write")
    if (
        "extract" not in needs
        and _EXTRACT_SHAPE.search(text)
        and (doc_files or _CONTENT_COLON.search(full))
    ):
        needs.append("extract")  # "pull the fee and the term out of contract.md"
    if (
        "extract" not in needs
        and doc_files
        and re.search(
            r"\b(?:what'?s|whats|what is|what are|give me|tell me)\b[^.?]*,[^.?]*\band\b",
            text,
            re.I,
        )
    ):
        needs.append("extract")  # "what's the fee, the term and the notice period in our contract?"
    if "send_email" in wants and "write" not in needs:
        needs.append("write")  # something must be written to be sent
    is_question = re.match(r"(?i)(what|which|who|when|where|why|how)\b", text) or (
        text.rstrip().endswith("?") and not VAGUE.search(text)
    )
    if (
        is_question
        and not set(needs) - {"analysis"}
        and any(f.startswith("knowledge/") for f in available)
    ):
        needs.append("research")  # a question about the business: look in the knowledge base
    if doc_files and not any(
        n in needs for n in ("summarize", "extract", "translate", "write", "research")
    ):
        needs.append("summarize")  # "what does contract.pdf say" → a summary of it
    if (
        by_name
        and all(f.startswith("knowledge/") for f in by_name)
        and not {"summarize", "extract", "translate", "qa"} & set(needs)
    ):
        # "a blog post about our spring sale": the knowledge base has material; research cites it
        files = [f for f in files if f not in by_name]
        if "research" not in needs:
            needs.append("research")
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


def _stems_named(text: str, available: list[str]) -> list[str]:
    """Files named by their exact stem without the extension ("from invoice-1042")."""
    low = text.lower()
    return [
        f
        for f in available
        if len(Path(f).stem) >= 5
        and re.search(r"[\d_-]", Path(f).stem)  # a file-like name, not a plain word
        and re.search(rf"(?<![\w-]){re.escape(Path(f).stem.lower())}(?![\w-])", low)
    ][:1]


def _documents_by_name(text: str, available: list[str]) -> list[str]:
    """Workspace documents the request names by their stem ("our contract" → docs/contract.md);
    a request that only asks questions of them is left to research."""
    low = text.lower()
    found = []
    for f in available:
        p = Path(f)
        if p.suffix.lower() not in TEXT_SUFFIXES:
            continue
        stem = re.sub(r"[-_]?\d+$", "", p.stem.lower()).replace("-", " ").replace("_", " ")
        pattern = rf"\b(?:our|the|my|this)\s+(?:[a-z]+\s+)?{re.escape(stem)}s?\b"
        if len(stem) >= 4 and re.search(pattern, low):
            found.append(f)
    return found[:1]


def _asks_about_columns(text: str, workspace: Path | None, available: list[str]) -> bool:
    """A question or analysis that names a column of a workspace table ("new customers")."""
    if workspace is None or not (
        text.rstrip().endswith("?")
        or re.search(
            r"\b(how many|how much|what was|what were|which|share of|total|per|by)\b", text, re.I
        )
    ):
        return False
    low = text.lower()
    for f in _data_in(available):
        header = table_header(workspace / f)
        names = {h.lower().replace("_", " ") for h in header if len(h) >= 4}
        if any(re.search(rf"\b{re.escape(n)}\b", low) for n in names):
            return True
    return False


def table_header(path: Path) -> list[str]:
    """Column names of a CSV/TSV file in the workspace ([] for other files)."""
    if path.suffix.lower() not in {".csv", ".tsv"} or not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        row = next(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
    return [c.strip() for c in row if c.strip()]


def _data_in(available: list[str]) -> list[str]:
    return [f for f in available if Path(f).suffix.lower() in DATA_SUFFIXES]
