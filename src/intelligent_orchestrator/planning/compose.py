"""Typed composition: the steps a request needs, linked by what each consumes and produces.

A chart needs a table (query_data), a translation needs a text (write_content, read_file), a
publish needs a written post. One write per channel runs in its own parallel branch; web
channels get qa_review and seo_optimize after writing. Side-effecting steps appear only for
actions the request's own words asked for (see requirements.py).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.models import Requirements, WorkflowStep
from .requirements import _PUBLISH as _PUBLISH_VERB
from .requirements import _SAVE as _SAVE_TARGET
from .requirements import (
    DATA_SUFFIXES,
    SOCIAL,
    TEXT_SUFFIXES,
    WEB,
    inline_content,
    instructions_only,
    scoped_channels,
    table_header,
    workspace_files,
)

KIND_FOR_CHANNEL = {
    "blog": "blog_post",
    "web": "blog_post",
    "linkedin": "social_post",
    "twitter": "social_post",
    "instagram": "social_post",
    "facebook": "social_post",
    "newsletter": "newsletter",
    "email": "email",
    "report": "report",
    "product_description": "product_description",
    "social": "social_post",
}
DEFAULT_LENGTH = {
    "blog_post": 600,
    "social_post": 80,
    "newsletter": 350,
    "email": 180,
    "report": 400,
    "product_description": 150,
}
PUBLISHABLE = SOCIAL | WEB | {"newsletter"}
_TIME_WORDS = ("month", "date", "week", "day", "quarter", "year", "period")


@dataclass(slots=True)
class Slots:
    """What a model fills in (or the request itself, when no model answers)."""

    intent: str
    topic: str
    brief: str
    audience: str | None = None
    tone: str | None = None


@dataclass(slots=True)
class Composition:
    steps: list[WorkflowStep] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, step_id: str, tool: str, why: str, **inputs: Any) -> str:
        self.steps.append(
            WorkflowStep(
                id=step_id, tool=tool, inputs={k: v for k, v in inputs.items() if v is not None}
            )
        )
        self.reasoning.append(f"{step_id} ({tool}): {why}")
        return step_id


def ref(step: str, path: str = "") -> str:
    return "${steps." + step + ".output" + (f".{path}" if path else "") + "}"


def _years_not_in(request: str, path: Path) -> list[str]:
    """Years the request asks about that the data file never mentions."""
    years = sorted(set(re.findall(r"\b(20\d\d)\b", request)))
    if not years or path.suffix.lower() not in {".csv", ".tsv"} or not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [y for y in years if y not in text]


def _data_span(path: Path) -> str:
    found = sorted(set(re.findall(r"\b20\d\d-\d\d(?:-\d\d)?\b", path.read_text(errors="replace"))))
    return f"it covers {found[0]} to {found[-1]}" if found else "its dates are unknown"


def _numeric_columns(path: Path, header: list[str]) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        row = next(reader, None) or {}
    out = []
    for col in header:
        try:
            float(str(row.get(col, "")).replace(",", ""))
            out.append(col)
        except ValueError:
            continue
    return out


_METRIC_WORDS = {
    "roi": "roi_pct", "return on investment": "roi_pct", "churn": "churn_rate_pct",
    "cac": "cac", "acquisition cost": "cac", "conversion": "conversion_rate_pct",
    "growth": "revenue_growth_pct", "profit": "profit", "margin": "profit",
}  # fmt: skip


def _banned_phrases(request: str) -> list[str]:
    """Quoted phrases the request says must not be used."""
    out: list[str] = []
    for clause in re.split(r"(?<=[.!?;])\s+", request):
        if re.search(
            r"\b(phrases?|words?|avoid|banned|never say|doesn'?t use|not use)\b", clause, re.I
        ):
            out += [a or b for a, b in re.findall(r"\"([^\"]{2,60})\"|“([^”]{2,60})”", clause)]
    return list(dict.fromkeys(out))


def _metric_asked(low: str) -> str | None:
    for word, field_name in _METRIC_WORDS.items():
        if re.search(rf"\b{word}\b", low):
            return field_name
    return None


def _extract_fields(request: str) -> dict[str, Any]:
    """The fields named after 'extract'/'pull out', as a JSON schema of strings/numbers."""
    m = re.search(
        r"\b(?:extract|pull out|get|find)\s+(?:the\s+)?(.+?)\s+(?:from|out of|in)\b", request, re.I
    ) or re.search(r"\b(?:extract|pull out|pull|get|need)\b[^:]{0,40}:\s*([^.]+)", request, re.I)
    if m is None:
        m = re.search(r"(?:form|fields?|terms)\s*[-\u2013:]\s*([^.]+)", request, re.I)
    names: list[str] = []
    if m:
        for part in re.split(r",\s*|\s+and\s+|\s*&\s*", m.group(1)):
            words = re.sub(r"[^a-z0-9 ]", " ", part.lower()).split()
            words = [w for w in words if w not in {"the", "a", "an", "all", "each", "its", "their"}]
            if words and len(words) <= 4:
                names.append("_".join(words))
    names = list(dict.fromkeys(names))[:12] or ["summary"]
    numeric = (
        "total",
        "amount",
        "price",
        "count",
        "number_of",
        "quantity",
        "revenue",
        "cost",
        "vat",
        "tax",
    )
    props = {
        n: {
            "type": "number"
            if any(n.startswith(k) or n.endswith(k) for k in numeric)
            and n.split("_")[-1] != "number"
            else "string"
        }
        for n in names
    }
    return {"type": "object", "properties": props, "required": names}


def compose(
    request: str, req: Requirements, slots: Slots, *, workspace: Path | None, tools: set[str]
) -> Composition:
    """Steps for ``req``; tools missing from the registry are left out with a warning."""
    c = Composition()
    files = req.files
    data_files = [f for f in files if Path(f).suffix.lower() in DATA_SUFFIXES]
    doc_files = [f for f in files if Path(f).suffix.lower() in TEXT_SUFFIXES]
    material: dict[str, str] = {}
    if "write" in req.needs and (given := _inline_text(request)):
        material["text"] = given  # "tidy up this review: ..." — the text to work from
    low = request.lower()

    # Data: query, metrics, chart --------------------------------------------------------
    if "data" in req.needs:
        if not data_files and workspace is not None:
            candidates = [
                f for f in workspace_files(workspace) if Path(f).suffix.lower() in DATA_SUFFIXES
            ]
            words = set(re.findall(r"[a-z]+", low))
            candidates.sort(key=lambda f: -len(words & set(re.findall(r"[a-z]+", f.lower()))))
            data_files = candidates[:1]
            if data_files:
                c.reasoning.append(f"data: no file named; using {data_files[0]} from the workspace")
        missing_years = (
            _years_not_in(request, workspace / data_files[0]) if data_files and workspace else []
        )
        if missing_years and workspace is not None:
            c.warnings.append(
                f"{data_files[0]} has no data for {', '.join(missing_years)}"
                f" ({_data_span(workspace / data_files[0])})"
            )
            data_files = []
        if data_files:
            file = data_files[0]
            header = table_header(workspace / file) if workspace else []
            numeric = _numeric_columns(workspace / file, header) if workspace and header else []
            group = next(
                (
                    h
                    for h in header
                    if h.lower() not in (n.lower() for n in numeric)
                    and re.search(rf"\b(by|per|each)\s+{re.escape(h.lower())}", low)
                ),
                None,
            )
            if group is None:
                group = next((h for h in header if h.lower() in low and h not in numeric), None)
            if group and numeric:
                sums = ", ".join(f'SUM("{n}") AS "{n}"' for n in numeric if n != group)
                sql = f'SELECT "{group}", {sums} FROM data GROUP BY "{group}" ORDER BY "{group}"'
            else:
                sql = "SELECT * FROM data"
            c.add(
                "data",
                "query_data",
                f"the request needs figures from {file}",
                sql=sql,
                tables={"data": file},
            )
            material["data"] = ref("data", "rows")
            metric = _metric_asked(low)
            if "metrics" in req.needs:
                period = group or next(
                    (h for h in header if h.lower() in ("month", "date", "period", "quarter")),
                    None,
                )
                c.add(
                    "metrics",
                    "business_metrics",
                    "it asks for business metrics",
                    rows=ref("data", "rows"),
                    columns={"period": period} if period else None,
                )
                material["metrics"] = ref("metrics", "totals")
            if "chart" in req.needs and "metrics" in req.needs and metric is not None:
                c.add(
                    "chart",
                    "chart",
                    f"it asks for a chart of {metric}",
                    rows=ref("metrics", "periods"),
                    x="period",
                    y=metric,
                    kind="bar",
                    title=slots.topic[:80] or None,
                )
            elif "chart" in req.needs:
                x = (
                    group
                    or next((h for h in header if h not in numeric), None)
                    or (header[0] if header else "x")
                )
                y = [n for n in numeric if n != x][:2] or ["value"]
                kind = "line" if any(t in x.lower() for t in _TIME_WORDS) else "bar"
                kind = "pie" if "pie" in low else kind
                c.add(
                    "chart",
                    "chart",
                    "it asks for a chart of the data",
                    rows=ref("data", "rows"),
                    x=x,
                    y=y if len(y) > 1 else y[0],
                    kind=kind,
                    title=slots.topic[:80] or None,
                )
        else:
            c.warnings.append(
                "the request needs data, but no data file was named or found in the workspace"
            )

    # Sources: research, documents, extraction -------------------------------------------
    if "research" in req.needs:
        c.add(
            "research",
            "research",
            "it asks for facts from sources",
            query=slots.topic or request[:200],
            urls=req.urls[:5] or None,
        )
        material["research"] = ref("research")
    if "extract" in req.needs:
        target = doc_files[0] if doc_files else None
        text = None if target else _inline_text(request)
        if target or text:
            c.add(
                "extract",
                "extract",
                "it asks for specific fields",
                fields=_extract_fields(request),
                path=target,
                text=text,
            )
            material["extracted"] = ref("extract", "data")
        else:
            c.warnings.append("extraction asked for, but no document or text to extract from")
    summary_step = None
    if "summarize" in req.needs:
        target = doc_files[0] if doc_files else None
        text = None if target else _inline_text(request)
        if target or text:
            summary_step = c.add(
                "summary",
                "summarize",
                "it asks for a summary",
                path=target,
                text=text,
                max_words=req.length_words or 150,
            )
            material["summary"] = ref("summary", "summary")
        elif "research" in material:
            material["summary"] = ref("research", "summary")

    if "qa" in req.needs and "write" not in req.needs:
        text = _inline_text(request)
        if text:
            c.add(
                "review",
                "qa_review",
                "it asks for a review of the text it gives",
                text=text,
                tone=req.tone,
            )
        elif doc_files:
            read = c.add(
                "read", "read_file", f"{doc_files[0]} is the text to review", path=doc_files[0]
            )
            c.add(
                "review",
                "qa_review",
                "it asks for a review of a document",
                text=ref(read, "content"),
                tone=req.tone,
            )

    if (
        "write" in req.needs
        and doc_files
        and not {"summarize", "extract", "translate"} & set(req.needs)
        and "research" not in material
    ):
        read = c.add(
            "read", "read_file", f"{doc_files[0]} is the material to write from", path=doc_files[0]
        )
        material["document"] = ref(read, "content")

    # Writing, one branch per channel ----------------------------------------------------
    deliverables = list(req.channels)
    if "send_email" in req.side_effects and "email" in deliverables and len(deliverables) > 1:
        deliverables.remove("email")  # email is how it is delivered, not another text
    if "write" in req.needs and not deliverables:
        deliverables = (
            ["email"]
            if "send_email" in req.side_effects
            else ["blog"]
            if re.search(r"\bpost\b", low)
            else ["report"]
        )
    written: dict[str, str] = {}
    inputs = dict(material) or None
    teaser = bool(re.search(r"\b(teaser|promote|promoting|snippet|tease)\b", low))
    if teaser:  # write the long piece first; the short ones tease it
        deliverables.sort(key=lambda ch: ch not in WEB and ch != "newsletter")
    for ch in deliverables:
        main_piece = next((written[w] for w in written if w in WEB or w == "newsletter"), None)
        if teaser and main_piece and ch in SOCIAL:
            inputs = {**(material or {}), "article": ref(main_piece, "body")}
        kind = KIND_FOR_CHANNEL.get(ch, "blog_post")
        sid = f"write_{ch}"
        written[ch] = c.add(
            sid,
            "write_content",
            f"a {kind.replace('_', ' ')} for {ch}",
            kind=kind,
            brief=slots.brief,
            audience=req.audience or slots.audience,
            tone=req.tone or slots.tone,
            length_words=req.length_words
            if len(deliverables) == 1 and req.length_words
            else DEFAULT_LENGTH[kind],
            inputs=inputs,
        )
        if ch in WEB or "qa" in req.needs:
            c.add(
                f"qa_{ch}",
                "qa_review",
                "web copy is checked before it goes out",
                text=ref(sid, "body"),
                require_citations="research" in material,
                banned_phrases=_banned_phrases(request) or None,
                max_words=req.length_words if len(deliverables) == 1 else None,
            )
        if ch in WEB or "seo" in req.needs:
            c.add(
                f"seo_{ch}",
                "seo_optimize",
                "web copy gets a search title and description",
                text=ref(sid, "body"),
            )

    # Translation ------------------------------------------------------------------------
    translated: dict[str, str] = {}
    for lang in req.languages:
        code = re.sub(r"[^a-z]", "", lang.lower())[:12]
        scope = scoped_channels(request, rf"\b{lang}\b")
        sources = [(ch, sid) for ch, sid in written.items() if scope is None or ch in scope]
        sources = sources or list(written.items())
        if not sources:
            if summary_step:
                sources = [("summary", summary_step)]
            elif doc_files:
                read = c.add(
                    "read",
                    "read_file",
                    f"{doc_files[0]} is the text to translate",
                    path=doc_files[0],
                )
                sources = [("doc", read)]
            elif text := _inline_text(request):
                c.add(
                    f"translate_{code}",
                    "translate",
                    f"a {lang} version",
                    text=text,
                    target_language=lang,
                )
                continue
            else:
                c.warnings.append(
                    f"a {lang} translation was asked for, but there is no text to translate"
                )
                continue
        for name, sid in sources:
            path = "content" if sid == "read" else "summary" if sid == "summary" else "body"
            tid = f"translate_{name}_{code}" if len(sources) > 1 else f"translate_{code}"
            translated[tid] = c.add(
                tid,
                "translate",
                f"a {lang} version of {name}",
                text=ref(sid, path),
                target_language=lang,
            )

    # Actions the user asked for ---------------------------------------------------------
    def final_text(ch: str) -> str:
        """What goes out for a channel: its translation when exactly one language was asked."""
        if len(req.languages) == 1:
            code = re.sub(r"[^a-z]", "", req.languages[0].lower())[:12]
            for tid in (f"translate_{ch}_{code}", f"translate_{code}" if len(written) == 1 else ""):
                if tid in translated:
                    return ref(tid, "translation")
        return ref(written[ch], "body")

    if "publish" in req.side_effects:
        scope = scoped_channels(request, _PUBLISH_VERB)
        targets = [ch for ch in written if ch in PUBLISHABLE and (scope is None or ch in scope)]
        targets = targets or [ch for ch in written if ch in PUBLISHABLE] or list(written)
        if not targets:
            c.warnings.append("publishing asked for, but nothing is written to publish")
        for ch in targets:
            c.add(
                f"publish_{ch}",
                "publish_post",
                "the request says to publish it",
                channel=ch if ch != "web" else "blog",
                title=ref(written[ch], "title"),
                body=final_text(ch),
            )
            checks = [st.id for st in c.steps if st.id in (f"qa_{ch}", f"seo_{ch}")]
            if checks:  # nothing goes out before its checks have run
                c.steps[-1].depends_on = checks
    if "send_email" in req.side_effects:
        if not req.recipients:
            c.warnings.append(
                "sending asked for, but no recipient address was given: add one (e.g. ana@example.com)"
            )
        else:
            ch = "email" if "email" in written else next(iter(written), None)
            if ch is None:
                c.warnings.append("sending asked for, but nothing is written to send")
            else:
                c.add(
                    "send",
                    "send_email",
                    "the request says to send it",
                    to=req.recipients,
                    subject=ref(written[ch], "title"),
                    body=final_text(ch),
                )
    if "webhook" in req.side_effects:
        if req.urls:
            done_first = [st.id for st in c.steps if st.tool in ("send_email", "publish_post")]
            sent = {sid: ref(sid) for sid in done_first}  # notify once those are done
            payload = (
                {ch: ref(sid) for ch, sid in written.items()} | sent
                or dict(material.items())
                or {"request": slots.intent}
            )
            c.add(
                "notify",
                "post_webhook",
                "the request says to notify an endpoint",
                url=req.urls[0],
                payload=payload,
            )
        else:
            c.warnings.append("a webhook was asked for, but no URL was given")
    if "save" in req.side_effects:
        m = _SAVE_TARGET.search(instructions_only(request))
        path = None
        if m:
            path = m.group(1)
            if not re.search(r"\.\w+$", path):  # a folder: name the file after the topic
                path = f"drafts/{re.sub(r'[^a-z0-9]+', '-', slots.topic.lower()).strip('-') or 'draft'}.md"
        wants_json = bool(path and path.endswith(".json"))
        if (
            not written
            and not translated
            and not summary_step
            and "extracted" in material
            and not wants_json
        ):
            written["report"] = c.add(
                "write_report",
                "write_content",
                "the extracted fields are written up before they are saved",
                kind="report",
                brief=slots.brief,
                inputs={"extracted": material["extracted"]},
                length_words=150,
            )
        content = None
        if written:
            content = final_text(next(iter(written)))
        elif len(translated) == 1:
            content = ref(next(iter(translated.values())), "translation")
        elif summary_step:
            content = ref(summary_step, "summary")
        elif "extracted" in material and path and path.endswith(".json"):
            content = ref("extract", "as_json")
        elif "data" in material:
            content = ref("data", "csv")
            if path and path.endswith(".md") and re.search(r"\bcsv\b", low):
                path = path[:-3] + ".csv"
        if path and content:
            c.add(
                "save",
                "write_file",
                "the request says to save it",
                path=path,
                content=content,
            )

    missing = sorted({s.tool for s in c.steps} - tools)
    if missing:
        c.warnings.append(
            f"tools not available here: {', '.join(missing)}; their steps are left out"
        )
        c.steps = [s for s in c.steps if s.tool in tools]
    return c


def _inline_text(request: str) -> str | None:
    return inline_content(request)
