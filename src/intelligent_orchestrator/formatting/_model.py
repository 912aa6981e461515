"""What formatting takes in (content, run metadata) and each channel's published limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChannelFamily = Literal["blog", "social", "thread", "email", "report"]


@dataclass(slots=True, kw_only=True)
class Content:
    """What a deliverable step produced, plus what other steps add.

    Attributes:
        title: The deliverable's title, if the writer gave one.
        body: Markdown from the writer (or a translation's text).
        sources: Each ``{"n": int, "document": str (path or URL), "passage": str}``; the body
            cites them as ``[n]``.
        seo: ``seo_optimize`` output: ``title`` (<=60), ``meta_description`` (<=155),
            ``keywords``, ``headings``, ``slug``.
        tables: Row lists from data steps (``query_data`` rows).
        charts: Workspace-relative image paths (PNG or SVG) from chart steps.
        language: Set for a translation.
        topic: Used for hashtags when there are no SEO keywords.
    """

    title: str | None
    body: str
    sources: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    seo: dict[str, Any] | None = None
    tables: list[list[dict[str, Any]]] = field(default_factory=list[list[dict[str, Any]]])
    charts: list[str] = field(default_factory=list[str])
    language: str | None = None
    topic: str | None = None


@dataclass(slots=True, kw_only=True)
class Metadata:
    """The run a variant came from: shown in reports and kept in each variant's JSON sidecar."""

    task_id: str
    plan: list[str]  # "step_id:tool", in plan order
    models: list[str]
    cost: float
    quality_score: float | None
    sources: list[str]


_BLOG = {"max_title_chars": 60, "max_meta_chars": 155}
_EMAIL = {"max_subject_chars": 78, "max_preheader_chars": 100}
_THREAD = {"max_chars_per_post": 280}

CHANNEL_LIMITS: dict[str, dict[str, int]] = {
    "blog": dict(_BLOG),
    "web": dict(_BLOG),
    "product_description": dict(_BLOG),
    "linkedin": {"max_chars": 3000},
    "facebook": {"max_chars": 63206},
    "instagram": {"max_chars": 2200, "max_hashtags": 30},
    "social": {"max_chars": 3000},
    "twitter": dict(_THREAD),
    "x": dict(_THREAD),
    "email": dict(_EMAIL),
    "newsletter": dict(_EMAIL),
    "report": {},
}
"""Each channel's hard limits (characters unless named otherwise)."""

_FAMILY: dict[str, ChannelFamily] = {
    "blog": "blog",
    "web": "blog",
    "product_description": "blog",
    "linkedin": "social",
    "facebook": "social",
    "instagram": "social",
    "social": "social",
    "twitter": "thread",
    "x": "thread",
    "email": "email",
    "newsletter": "email",
    "report": "report",
}


def channel_family(channel: str) -> ChannelFamily:
    """blog|social|thread|email|report; a channel not known is formatted as a blog."""
    return _FAMILY.get(_key(channel), "blog")


def limits_for(channel: str) -> dict[str, int]:
    """The channel's limits; a channel not listed gets a blog's."""
    return dict(CHANNEL_LIMITS.get(_key(channel), _BLOG))


def _key(channel: str) -> str:
    return channel.strip().lower()
