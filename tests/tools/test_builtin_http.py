from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jsonschema
import pytest

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError, ToolTimeoutError
from intelligent_orchestrator.tools.builtin import http_request
from intelligent_orchestrator.tools.spec import ToolContext


def with_handler(ctx: ToolContext, handler: object) -> ToolContext:
    return dataclasses.replace(ctx, http_transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


async def test_json_response_is_parsed(ctx: ToolContext) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [1, 2, 3], "next": None})

    out = await http_request.invoke(
        {"url": "https://api.example.com/items", "params": {"page": 2, "tag": ["a", "b"]}},
        with_handler(ctx, handler),
    )
    assert out["status_code"] == 200
    assert out["ok"] is True
    assert out["json"] == {"items": [1, 2, 3], "next": None}
    assert out["text"] is None
    assert out["content_type"] == "application/json"
    assert out["size"] == len(b'{"items":[1,2,3],"next":null}')
    assert out["headers"]["content-type"] == "application/json"
    assert str(seen[0].url) == "https://api.example.com/items?page=2&tag=a&tag=b"
    assert seen[0].method == "GET"
    jsonschema.validate(out, http_request.spec.output_schema)


async def test_text_response_and_json_request_body(ctx: ToolContext) -> None:
    seen: list[tuple[str, bytes, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.content, request.headers.get("x-trace")))
        return httpx.Response(
            201, text="créé", headers={"content-type": "text/plain; charset=utf-8"}
        )

    out = await http_request.invoke(
        {
            "url": "http://example.com/things",
            "method": "POST",
            "json_body": {"name": "spring"},
            "headers": {"X-Trace": "abc"},
        },
        with_handler(ctx, handler),
    )
    assert out["status_code"] == 201
    assert out["text"] == "créé"
    assert out["json"] is None
    assert seen == [("POST", b'{"name":"spring"}', "abc")]


async def test_404_is_returned_not_raised(ctx: ToolContext) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "no such page"})

    out = await http_request.invoke(
        {"url": "https://example.com/missing"}, with_handler(ctx, handler)
    )
    assert out["status_code"] == 404
    assert out["ok"] is False
    assert out["json"] == {"error": "no such page"}


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_5xx_and_429_are_transient_errors(ctx: ToolContext, status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="busy, come back later", headers={"retry-after": "7"})

    with pytest.raises(ToolExecutionError, match=f"answered {status}.*retry after 7.*busy") as info:
        await http_request.invoke({"url": "https://example.com/x"}, with_handler(ctx, handler))
    assert info.value.transient is True
    assert info.value.tool_id == "http_request"


async def test_oversized_body_with_content_length_is_aborted(ctx: ToolContext) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (ctx.http_max_bytes + 1))

    with pytest.raises(ToolExecutionError, match=f"{ctx.http_max_bytes}-byte cap") as info:
        await http_request.invoke({"url": "https://example.com/big"}, with_handler(ctx, handler))
    assert info.value.transient is False


async def test_oversized_streamed_body_is_aborted_while_reading(ctx: ToolContext) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 x 1000 bytes, cap is 10 000
            sent.append(1)
            yield b"y" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())  # no content-length: chunked

    with pytest.raises(ToolExecutionError, match="exceeds the 10000-byte cap"):
        await http_request.invoke({"url": "https://example.com/stream"}, with_handler(ctx, handler))
    assert len(sent) < 100  # it stopped reading instead of downloading everything


async def test_slow_server_raises_tool_timeout(ctx: ToolContext) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, text="too late")

    with pytest.raises(ToolTimeoutError, match=r"took longer than 0\.2 s") as info:
        await http_request.invoke(
            {"url": "https://example.com/slow", "timeout_seconds": 0.2}, with_handler(ctx, handler)
        )
    assert info.value.transient is True


async def test_httpx_timeout_maps_to_tool_timeout(ctx: ToolContext) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(ToolTimeoutError, match="timed out"):
        await http_request.invoke({"url": "https://example.com/x"}, with_handler(ctx, handler))


async def test_connection_error_is_transient(ctx: ToolContext) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ToolExecutionError, match="ConnectError") as info:
        await http_request.invoke({"url": "https://example.com/x"}, with_handler(ctx, handler))
    assert info.value.transient is True


async def test_timeout_is_capped_by_the_context(ctx: ToolContext) -> None:
    ctx = dataclasses.replace(ctx, http_timeout_seconds=0.2)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    with pytest.raises(ToolTimeoutError, match=r"0\.2 s"):
        await http_request.invoke(
            {"url": "https://example.com/slow", "timeout_seconds": 600}, with_handler(ctx, handler)
        )


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("example.com/no-scheme", "only http and https"),
        ("http://", "no host|invalid URL"),
    ],
)
async def test_only_http_and_https_urls(ctx: ToolContext, url: str, match: str) -> None:
    calls: list[httpx.Request] = []
    with pytest.raises(ToolInputError, match=match):
        await http_request.invoke({"url": url}, with_handler(ctx, calls.append))
    assert calls == []


async def test_json_and_text_body_together_are_refused(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="not both"):
        await http_request.invoke(
            {"url": "https://example.com", "method": "POST", "json_body": {}, "text_body": "x"}, ctx
        )


async def test_unknown_method_is_a_schema_error(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="'method'"):
        await http_request.invoke({"url": "https://example.com", "method": "TRACE"}, ctx)


async def test_header_values_are_never_logged(
    ctx: ToolContext, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Bearer sk-very-secret-token"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == secret
        return httpx.Response(200, json={"ok": True})

    with caplog.at_level(logging.DEBUG):
        out = await http_request.invoke(
            {
                "url": "https://example.com/me?api_key=also-secret",
                "headers": {"Authorization": secret},
            },
            with_handler(ctx, handler),
        )
    assert out["json"] == {"ok": True}
    assert caplog.records, "the tool logs the request"
    everything = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "sk-very-secret-token" not in everything  # nor in httpx's own DEBUG records
    ours = " ".join(
        f"{r.getMessage()} {r.__dict__}"
        for r in caplog.records
        if r.name.startswith("intelligent_orchestrator")
    )
    assert "authorization" in ours.lower()  # the header's name is fine
    assert "also-secret" not in ours  # the query string is not logged by the tool either


@pytest.mark.parametrize(
    ("method", "needs"),
    [
        ("GET", False),
        ("HEAD", False),
        ("get", False),
        ("POST", True),
        ("PUT", True),
        ("PATCH", True),
        ("DELETE", True),
    ],
)
def test_needs_approval_for_non_get_methods(method: str, needs: bool) -> None:
    assert http_request.needs_approval({"url": "https://example.com", "method": method}) is needs


def test_needs_approval_default_method_is_get() -> None:
    assert http_request.needs_approval({"url": "https://example.com"}) is False


# --- one test over a real socket ---------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "agent": self.headers.get("user-agent", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_real_http_server_over_the_default_transport(
    ctx: ToolContext, local_server: str
) -> None:
    assert ctx.http_transport is None
    out = await http_request.invoke(
        {"url": f"{local_server}/hello", "params": {"q": "spring"}}, ctx
    )
    assert out["status_code"] == 200
    assert out["json"]["path"] == "/hello?q=spring"
    assert out["json"]["agent"].startswith("python-httpx/")
    assert out["url"] == f"{local_server}/hello?q=spring"
