"""Built-in tools that need no LLM: files, HTTP, data queries, business metrics, charts, email, publishing and webhooks."""

from __future__ import annotations

from intelligent_orchestrator.tools.spec import Tool

from .chart import chart
from .data import business_metrics, query_data
from .effects import post_webhook, publish_post, send_email
from .files import read_file, write_file
from .http import http_request

__all__ = [
    "builtin_tools",
    "business_metrics",
    "chart",
    "http_request",
    "post_webhook",
    "publish_post",
    "query_data",
    "read_file",
    "send_email",
    "write_file",
]


def builtin_tools() -> list[Tool]:
    """Every built-in tool of this package, in a new list on each call."""
    return [
        read_file,
        write_file,
        http_request,
        query_data,
        business_metrics,
        chart,
        send_email,
        publish_post,
        post_webhook,
    ]
