"""Deterministic checks of a deliverable: they run before the judge and cost nothing.

Each returns the issues it found; every issue names its dimension and the step to re-run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.models import Deliverable, QualityIssue

# What each channel's text must fit before formatting shortens it (formatting cuts; a text
# far over the limit loses content, so the writer should have kept to it).
CHANNEL_MAX_CHARS = {
    "linkedin": 3000,
    "instagram": 2200,
    "facebook": 5000,
    "social": 3000,
    "twitter": 280 * 8,
    "x": 280 * 8,
}
SECTIONED = {"blog": 2, "web": 2, "report": 2, "newsletter": 1}  # least "## " headings
SECTIONED_MIN_WORDS = 250  # shorter pieces need no sections
_PLACEHOLDER = re.compile(
    r"lorem ipsum|\[(?:insert|your|company|name|date|link)[^\]]*\]|\bTODO\b|\bTBD\b|\{\{.*?\}\}",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"(?<![\w.])[$€£]?\d(?:[\d,]*\d)?(?:\.\d+)?\s?(?:%|percent\b|k\b|m\b|bn\b)?", re.I
)
_CITE = re.compile(r"\[(\d{1,3})\]")
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)?", re.UNICODE)

# The commonest function words of the languages a translation is most often asked for.
_STOPWORDS = {
    "english": "the and of to in is that for it with as on are this be by you we our",
    "german": "der die und das ist nicht mit sich des auf für ein eine wir unsere sie zu",
    "french": "le la les et des est une pour que dans qui sur pas nous vous avec du au",
    "spanish": "el la los las y que es en por para una con del se nuestro su lo al",
    "italian": "il lo la gli le che è per una con del della non sono di nostro anche",
    "portuguese": "o os as e que é em para uma com do da não nosso são no na",
    "dutch": "de het een en van is dat op te voor met zijn niet wij ons onze",
}
STOPWORDS = {lang: frozenset(words.split()) for lang, words in _STOPWORDS.items()}
LANGUAGE_CODES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}


@dataclass(slots=True, kw_only=True)
class Subject:
    """A deliverable with everything the checks look at."""

    deliverable: Deliverable
    tool: str
    title: str | None
    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    material: str = ""
    """Every text the step read, the request and the data it used, to check figures against."""
    research: bool = False
    """The step was given research findings, so its claims must cite them."""
    target_words: int | None = None
    qa_problems: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Problems a qa_review step reported: (qa step id, problem)."""
    workspace: Path | None = None
    writer_step: str | None = None
    """The step that wrote the text this deliverable carries (a translation's source)."""

    @property
    def step_id(self) -> str:
        return self.deliverable.step_id

    def issue(self, dimension: str, check: str, message: str, *, severity: str = "error",
              step_id: str | None = None) -> QualityIssue:  # fmt: skip
        return QualityIssue(
            dimension=dimension,
            message=message,
            step_id=step_id or self.step_id,
            deliverable=self.deliverable.key,
            check=check,
            severity="warning" if severity == "warning" else "error",
        )


Check = Callable[[Subject, float], list[QualityIssue]]


def words(text: str) -> int:
    return len(_WORD.findall(text))


def check_not_empty(s: Subject, tolerance: float) -> list[QualityIssue]:
    if words(s.text) < 5:
        return [s.issue("completeness", "not_empty", "the text is empty or almost empty")]
    found = _PLACEHOLDER.search(s.text)
    if found:
        return [
            s.issue(
                "completeness",
                "placeholder",
                f"the text still has a placeholder: {found.group(0)!r}",
            )
        ]
    return []


def check_length(s: Subject, tolerance: float) -> list[QualityIssue]:
    if not s.target_words or s.deliverable.language:
        return []
    n = words(s.text)
    low, high = s.target_words * (1 - tolerance), s.target_words * (1 + tolerance)
    if low <= n <= high:
        return []
    # Far off either way is an error: under half the lower bound, over twice the tolerance.
    far = n < low / 2 or n > s.target_words * (1 + 2 * tolerance)
    return [
        s.issue(
            "completeness",
            "length",
            f"{n} words where about {s.target_words} were asked for",
            severity="error" if far else "warning",
        )
    ]


def check_channel_limit(s: Subject, tolerance: float) -> list[QualityIssue]:
    limit = CHANNEL_MAX_CHARS.get(s.deliverable.channel)
    if limit is None or len(s.text) <= limit:
        return []
    return [
        s.issue(
            "format",
            "channel_limit",
            f"{len(s.text)} characters; {s.deliverable.channel} takes at most {limit}",
            severity="error" if len(s.text) > 1.5 * limit else "warning",
        )
    ]


def check_sections(s: Subject, tolerance: float) -> list[QualityIssue]:
    least = SECTIONED.get(s.deliverable.channel)
    if least is None or s.tool != "write_content" or words(s.text) < SECTIONED_MIN_WORDS:
        return []
    headings = re.findall(r"^#{2,3}\s+\S", s.text, re.MULTILINE)
    if len(headings) >= least:
        return []
    return [
        s.issue(
            "format",
            "sections",
            f"{len(headings)} section heading(s); a {s.deliverable.channel} of this length needs"
            f" at least {least} ('## ' headings)",
            severity="warning",
        )
    ]


def check_citations(s: Subject, tolerance: float) -> list[QualityIssue]:
    cited = {int(n) for n in _CITE.findall(s.text)}
    known = {int(c.get("n", 0)) for c in s.sources}
    issues = []
    unknown = sorted(cited - known) if s.sources or s.research else []
    if unknown:
        issues.append(
            s.issue(
                "accuracy",
                "citations",
                f"cites [{'], ['.join(map(str, unknown))}], which no source has",
            )
        )
    if s.research and not cited and s.tool == "write_content":
        issues.append(
            s.issue(
                "accuracy",
                "citations",
                "the research findings are not cited: cite the sources used as [n]",
            )
        )
    return issues


def check_language(s: Subject, tolerance: float) -> list[QualityIssue]:
    wanted = s.deliverable.language
    if not wanted:
        return []
    name = wanted.lower()
    # A name ("Dutch" is five letters too) or a code ("de", "pt-BR").
    target = name if name in STOPWORDS else LANGUAGE_CODES.get(name[:2]) if len(name) <= 5 else name
    if target not in STOPWORDS:
        return []  # a language we cannot recognise: no verdict
    found = detect_language(s.text)
    if found is None or found == target:
        return []
    return [
        s.issue(
            "completeness",
            "language",
            f"the text reads as {found.title()}, not {target.title()}",
        )
    ]


def check_figures(s: Subject, tolerance: float) -> list[QualityIssue]:
    """Every figure in the text must appear in the material (data, sources, request)."""
    if s.deliverable.language:
        return []  # a translation carries its source's figures, checked there
    allowed = number_forms(s.material)
    unknown = []
    for raw in _NUMBER.findall(_strip_citations(s.text)):
        value = _number(raw)
        if value is None or _harmless(raw, value):
            continue
        if not any(abs(value - a) <= max(0.005 * abs(a), 0.051) for a in allowed):
            unknown.append(raw.strip())
    if not unknown:
        return []
    shown = ", ".join(dict.fromkeys(unknown[:5]))
    return [
        s.issue(
            "accuracy",
            "figures",
            f"figures not found in the data or sources: {shown}; use only the material's figures",
        )
    ]


def check_links(s: Subject, tolerance: float) -> list[QualityIssue]:
    """Links to workspace files must point at files that exist (inside the workspace)."""
    if s.workspace is None:
        return []
    root = s.workspace.resolve()
    broken = []
    for target in _MD_LINK.findall(s.text):
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^//", target, re.IGNORECASE):
            continue
        path = (root / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(root) or not path.exists():
            broken.append(target)
    if not broken:
        return []
    return [
        s.issue(
            "format",
            "links",
            f"links to files that do not exist in the workspace: {', '.join(broken[:5])}",
        )
    ]


_QA_DIMENSION = {
    "length": "completeness",
    "banned_phrase": "tone",
    "banned": "tone",
    "citation": "accuracy",
    "citations": "accuracy",
    "figures": "accuracy",
    "tone": "tone",
    "grammar": "coherence",
    "clarity": "coherence",
}


def check_qa_review(s: Subject, tolerance: float) -> list[QualityIssue]:
    """What a qa_review step of the plan reported about this text."""
    out = []
    for _qa_step, p in s.qa_problems:
        kind = str(p.get("check", "")).lower()
        out.append(
            s.issue(
                _QA_DIMENSION.get(kind, "coherence"),
                f"qa_review:{kind or 'problem'}",
                str(p.get("message", "a problem")),
                severity="error" if p.get("severity") == "error" else "warning",
                step_id=s.writer_step or s.step_id,
            )
        )
    return out


CHECKS: dict[str, Check] = {
    "not_empty": check_not_empty,
    "length": check_length,
    "channel_limit": check_channel_limit,
    "sections": check_sections,
    "citations": check_citations,
    "language": check_language,
    "figures": check_figures,
    "links": check_links,
    "qa_review": check_qa_review,
}


def run_checks(s: Subject, *, tolerance: float) -> tuple[list[str], list[QualityIssue]]:
    issues: list[QualityIssue] = []
    for check in CHECKS.values():
        issues += check(s, tolerance)
    return list(CHECKS), issues


def detect_language(text: str) -> str | None:
    """The language whose function words are commonest in ``text`` (None if too short)."""
    tokens = [w.lower() for w in _WORD.findall(text)]
    if len(tokens) < 8:
        return None
    counts = {lang: sum(t in ws for t in tokens) for lang, ws in STOPWORDS.items()}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] >= max(2, len(tokens) // 25) else None


def number_forms(material: str) -> set[float]:
    """Every number in the material, also as a percentage and rounded (12.3456 -> 12.35, 12.3,
    12; 0.123 -> 12.3 %), so a text may round the data's figures."""
    out: set[float] = set()
    for raw in _NUMBER.findall(material):
        v = _number(raw)
        if v is None:
            continue
        for x in (v, v * 100, v / 100, v / 1000, v / 1_000_000):
            # round() goes half to even (12.5 -> 12); a writer rounds half up (13) too.
            half_up = math.floor(round(x, 6) + 0.5)
            out.update({x, round(x), half_up, round(x, 1), round(x, 2)})
    return out


def material_text(values: Iterable[Any]) -> str:
    """Flatten outputs (dicts, lists, numbers) into text for :func:`number_forms`."""
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)
        elif isinstance(v, bool) or v is None:
            return
        else:
            parts.append(str(v))

    for v in values:
        walk(v)
    return "\n".join(parts)


def _number(raw: str) -> float | None:
    s = raw.strip().lower().lstrip("$€£").replace(",", "")
    mult = 1.0
    for suffix, m in (("percent", 1.0), ("%", 1.0), ("bn", 1e9), ("k", 1e3), ("m", 1e6)):
        if s.endswith(suffix):
            s = s[: -len(suffix)].strip()
            mult = m
            break
    try:
        return float(s) * mult
    except ValueError:
        return None


def _harmless(raw: str, value: float) -> bool:
    """Small counts, list numbers and years are not claims worth checking."""
    plain = raw.strip()
    return plain.isdigit() and (value <= 12 or 1900 <= value <= 2100)


def _strip_citations(text: str) -> str:
    text = _CITE.sub(" ", text)
    text = _MD_LINK.sub(" ", text)
    return re.sub(r"^\s*\d+[.)]\s", " ", text, flags=re.MULTILINE)  # list numbers
