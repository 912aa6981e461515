"""A person's edit of a formatted variant: new revision, derived fields rebuilt, diff kept."""

from __future__ import annotations

import difflib
import re
from typing import Any, assert_never, cast

from ..domain.models import ChannelVariant
from . import _text as tx
from ._channels import (
    blog_headings,
    build_thread,
    email_document,
    measure,
    plain_email_html,
    split_thread_text,
)
from ._model import channel_family, limits_for

EDITABLE_FIELDS = ("text", "title", "subject", "preheader", "meta_description", "parts", "hashtags")
_OPTIONAL_TEXT = ("title", "subject", "preheader", "meta_description")
_COMPARED = ("text", "title", "subject", "preheader", "meta_description", "parts", "hashtags")
_DIFFED = ("text", "title", "subject", "preheader", "meta_description", "hashtags")
_POST_NUMBER = re.compile(r"\s*\(\d+/\d+\)\s*$")
_PREHEADER_DIV = '<div style="display:none;max-height:0;overflow:hidden">'


def apply_edit(
    variant: ChannelVariant, edits: dict[str, Any], *, editor: str | None
) -> ChannelVariant:
    """A new variant with the person's edit applied, ``revision + 1`` and a unified diff.

    Raises:
        ValueError: an edit key that is not editable, a value of the wrong type, or an edit
            that leaves the variant unchanged.
    """
    values = _validated(edits)
    family = channel_family(variant.channel)
    new = variant.model_copy(deep=True)
    for name in _OPTIONAL_TEXT:
        if name in values:
            setattr(new, name, values[name])
    if "parts" in values and family != "thread":
        raise ValueError(f"'parts' can only be edited on a thread, not on {variant.channel!r}")
    if "text" in values:
        new.text = values["text"]
    if "hashtags" in values:
        new.hashtags = values["hashtags"]

    match family:
        case "thread":
            _rethread(new, values)
        case "social":
            if "hashtags" in values:
                new.text = _replace_hashtag_line(new.text, new.hashtags)
            elif "text" in values:
                new.hashtags = tx.find_hashtags(new.text)
        case "blog" | "report":
            if "text" in values:
                new.html = tx.render_html(new.text)
                new.headings = blog_headings(new.text, has_sources=bool(new.sources))
        case "email":
            if "text" in values:
                new.html = plain_email_html(new)
            elif {"subject", "preheader"} & values.keys():
                new.html = _retitle_email(new)
        case _:
            assert_never(family)

    if all(getattr(new, name) == getattr(variant, name) for name in _COMPARED):
        raise ValueError("the edit changes nothing")
    new.revision = variant.revision + 1
    new.edited_by = editor
    new.diff = _diff(variant, new)
    new.limits = {**variant.limits, **measure(new)}
    return new


def _validated(edits: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(edits) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown edit field(s) {', '.join(repr(k) for k in unknown)}; "
            f"editable: {', '.join(EDITABLE_FIELDS)}"
        )
    values: dict[str, Any] = {}
    for name, value in edits.items():
        if name == "text":
            if not isinstance(value, str):
                raise ValueError(f"'text' must be a string, got {type(value).__name__}")
            values[name] = tx.normalize_newlines(value)
        elif name in _OPTIONAL_TEXT:
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name!r} must be a string or null, got {type(value).__name__}")
            text = tx.squash(value) if value is not None else ""
            values[name] = text or None
        else:
            values[name] = _string_list(name, value)
    if "hashtags" in values:
        values["hashtags"] = _hashtags(values["hashtags"])
    return values


def _string_list(name: str, value: object) -> list[str]:
    items = cast(list[object], value) if isinstance(value, list) else None
    strings = [v for v in items or [] if isinstance(v, str)]
    if items is None or len(strings) != len(items):
        raise ValueError(f"{name!r} must be a list of strings")
    return strings


def _hashtags(values: list[str]) -> list[str]:
    tags: list[str] = []
    for value in values:
        raw = value.strip().lstrip("#")
        tag = tx.camel_hashtag(raw) if re.search(r"[\s\W]", raw) else (f"#{raw}" if raw else None)
        if tag is None or not any(c.isalpha() for c in tag):
            raise ValueError(f"{value!r} is not a hashtag")
        if tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    return tags


def _rethread(new: ChannelVariant, values: dict[str, Any]) -> None:
    if "parts" in values:
        posts = [_POST_NUMBER.sub("", p).strip() for p in values["parts"]]
        posts = [p for p in posts if p]
        total = len(posts)
        new.parts = posts if total == 1 else [f"{p} ({i}/{total})" for i, p in enumerate(posts, 1)]
        new.text = "\n\n".join(new.parts)
    elif "text" in values or "hashtags" in values:
        body, tags, sources = split_thread_text(new.text)
        if "hashtags" in values:
            tags = values["hashtags"]
        thread = build_thread(
            body,
            hashtags=tags,
            sources=sources,
            max_chars=limits_for(new.channel)["max_chars_per_post"],
        )
        new.parts = thread.parts
        new.text = "\n\n".join(thread.parts)
    new.hashtags = tx.find_hashtags(new.text)


def _replace_hashtag_line(text: str, hashtags: list[str]) -> str:
    lines = text.rstrip().split("\n")
    while lines and (tx.is_hashtag_line(lines[-1]) or not lines[-1].strip()):
        lines.pop()
    inline = {t.casefold() for t in tx.find_hashtags("\n".join(lines))}
    trailing = " ".join(t for t in hashtags if t.casefold() not in inline)
    body = "\n".join(lines)
    return f"{body}\n\n{trailing}" if trailing else body


def _retitle_email(variant: ChannelVariant) -> str:
    """The e-mail HTML with a new subject or preheader, the rendered body kept."""
    document = variant.html or ""
    start = document.find("<body>\n")
    end = document.rfind("</body>")
    if start < 0 or end < 0:
        return plain_email_html(variant)
    body = document[start + len("<body>\n") : end]
    if body.startswith(_PREHEADER_DIV):
        body = body[body.index("</div>\n") + len("</div>\n") :]
    return email_document(
        body_html=body,
        subject=variant.subject or "",
        preheader=variant.preheader,
        language=variant.language,
    )


def _lines(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else value.split("\n")


def _diff(old: ChannelVariant, new: ChannelVariant) -> str:
    chunks: list[str] = []
    for name in _DIFFED:
        before, after = _lines(getattr(old, name)), _lines(getattr(new, name))
        if before != after:
            chunks.extend(
                difflib.unified_diff(
                    before,
                    after,
                    fromfile=f"{name} (revision {old.revision})",
                    tofile=f"{name} (revision {new.revision})",
                    lineterm="",
                )
            )
    return "\n".join(chunks)
