"""Built-in tools: files, HTTP, data queries, business metrics, charts, email, publishing,
webhooks, and the LLM-backed research, writing, translation, extraction, QA and SEO tools."""

from __future__ import annotations

from intelligent_orchestrator.tools.spec import Tool

from .chart import chart
from .data import business_metrics, query_data
from .effects import post_webhook, publish_post, send_email
from .files import read_file, write_file
from .http import http_request
from .language import (
    extract,
    qa_review,
    research,
    seo_optimize,
    summarize,
    translate,
    write_content,
)

__all__ = [
    "builtin_tools",
    "business_metrics",
    "chart",
    "extract",
    "http_request",
    "post_webhook",
    "publish_post",
    "qa_review",
    "query_data",
    "read_file",
    "research",
    "send_email",
    "seo_optimize",
    "summarize",
    "translate",
    "write_content",
    "write_file",
]


def builtin_tools() -> list[Tool]:
    """Every built-in tool of this package, in a new list on each call."""
    return [
        research,
        http_request,
        write_content,
        summarize,
        translate,
        extract,
        qa_review,
        seo_optimize,
        read_file,
        write_file,
        query_data,
        business_metrics,
        chart,
        send_email,
        publish_post,
        post_webhook,
    ]
