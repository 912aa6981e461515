"""``http_request``: one HTTP call with a size cap, a timeout and retry-aware errors."""

from __future__ import annotations

import asyncio
import base64
import codecs
import dataclasses
import json
import logging
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError, ToolTimeoutError
from intelligent_orchestrator.tools.spec import Tool, ToolContext, tool

logger = logging.getLogger(__name__)

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
SAFE_METHODS = frozenset({"GET", "HEAD"})
"""Methods that change nothing on the server: they need no approval."""

_TOOL_ID = "http_request"
_ERROR_SNIPPET_CHARS = 300
_TEXT_TYPES = (
    "text/",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)

ParamValue = str | int | float | bool | list[str]


class HttpResponseOutput(BaseModel):
    """What ``http_request`` returns (also for 4xx answers: check ``status_code``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    url: str = Field(description="Final URL, after redirects.")
    status_code: int
    ok: bool = Field(description="True for a 2xx/3xx status.")
    headers: dict[str, str] = Field(description="Response headers; repeated ones joined with ', '.")
    content_type: str | None
    size: int = Field(description="Body size in bytes (decoded).")
    text: str | None = Field(
        default=None, description="The body as text, unless it was JSON or binary."
    )
    json_: Any = Field(default=None, alias="json", description="The parsed body when it was JSON.")
    content_base64: str | None = Field(
        default=None, description="The body in base64 when it was binary."
    )


@tool(
    _TOOL_ID,
    name="HTTP request",
    category="network",
    estimated_cost=0.0,
    # GET/HEAD only read: the approval predicate below decides per call, by method.
    side_effects=False,
    timeout_seconds=60.0,
)
async def _http_request(
    url: Annotated[str, Field(description="Absolute http:// or https:// URL.")],
    method: Annotated[
        HttpMethod, Field(description="HTTP method; anything but GET/HEAD needs approval.")
    ] = "GET",
    headers: Annotated[dict[str, str] | None, Field(description="Request headers.")] = None,
    params: Annotated[dict[str, ParamValue] | None, Field(description="Query parameters.")] = None,
    json_body: Annotated[
        Any, Field(description="A JSON request body (not with text_body).")
    ] = None,
    text_body: Annotated[
        str | None, Field(description="A text request body (not with json_body).")
    ] = None,
    timeout_seconds: Annotated[
        float | None,
        Field(gt=0, description="Timeout for the whole call; capped by the operator's limit."),
    ] = None,
    *,
    ctx: ToolContext,
) -> HttpResponseOutput:
    """Make an HTTP request and return status, headers and body (JSON parsed); 4xx are returned, 5xx/429 raise."""
    target = _check_url(url)
    if json_body is not None and text_body is not None:
        raise ToolInputError("give json_body or text_body, not both", tool_id=_TOOL_ID)
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ToolInputError("field 'timeout_seconds': must be greater than 0", tool_id=_TOOL_ID)
    timeout = min(timeout_seconds or ctx.http_timeout_seconds, ctx.http_timeout_seconds)
    cap = ctx.http_max_bytes
    log = {"task_id": ctx.task_id, "step_id": ctx.step_id, "method": method, "host": target.host}
    # Header values may carry credentials: only their names are ever logged.
    logger.info("http request", extra={**log, "header_names": sorted(headers or {})})

    try:
        async with asyncio.timeout(timeout):
            async with (
                httpx.AsyncClient(
                    transport=ctx.http_transport, timeout=timeout, follow_redirects=True
                ) as client,
                client.stream(
                    method,
                    target,
                    headers=headers,
                    params=params,
                    json=json_body,
                    content=text_body,
                ) as response,
            ):
                body = await _read_capped(response, cap=cap, method=method)
    except TimeoutError:
        raise ToolTimeoutError(
            f"{method} {_safe_url(target)} took longer than {timeout:g} s", tool_id=_TOOL_ID
        ) from None
    except httpx.TimeoutException as exc:
        raise ToolTimeoutError(
            f"{method} {_safe_url(target)} timed out after {timeout:g} s ({type(exc).__name__})",
            tool_id=_TOOL_ID,
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise ToolExecutionError(
            f"{method} {_safe_url(target)}: too many redirects", tool_id=_TOOL_ID
        ) from exc
    except httpx.DecodingError as exc:
        raise ToolExecutionError(
            f"{method} {_safe_url(target)}: cannot decode the body: {exc}", tool_id=_TOOL_ID
        ) from exc
    except httpx.RequestError as exc:
        raise ToolExecutionError(
            f"{method} {_safe_url(target)} failed: {type(exc).__name__}: {exc}",
            tool_id=_TOOL_ID,
            transient=True,
        ) from exc

    status = response.status_code
    logger.info("http response", extra={**log, "status": status, "size": len(body)})
    if status >= 500 or status == 429:
        retry_after = response.headers.get("retry-after")
        hint = f" (retry after {retry_after})" if retry_after else ""
        snippet = body[:_ERROR_SNIPPET_CHARS].decode("utf-8", errors="replace")
        raise ToolExecutionError(
            f"{method} {_safe_url(target)} answered {status} {response.reason_phrase}{hint}: {snippet}",
            tool_id=_TOOL_ID,
            transient=True,
        )
    return _output(response, body)


def _check_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolInputError(f"invalid URL {url!r}: {exc}", tool_id=_TOOL_ID) from exc
    if target.scheme not in ("http", "https"):
        raise ToolInputError(
            f"URL {url!r} has scheme {target.scheme!r}; only http and https are allowed",
            tool_id=_TOOL_ID,
        )
    if not target.host:
        raise ToolInputError(f"URL {url!r} has no host", tool_id=_TOOL_ID)
    return target


def _safe_url(url: httpx.URL) -> str:
    """The URL without credentials or query string, which may hold secrets, for messages."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


async def _read_capped(response: httpx.Response, *, cap: int, method: str) -> bytes:
    if method == "HEAD":
        return b""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ToolExecutionError(
            f"response body is {int(declared)} bytes, over the {cap}-byte cap (http_max_bytes)",
            tool_id=_TOOL_ID,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise ToolExecutionError(
                f"response body exceeds the {cap}-byte cap (http_max_bytes); download aborted",
                tool_id=_TOOL_ID,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _output(response: httpx.Response, body: bytes) -> HttpResponseOutput:
    content_type = response.headers.get("content-type")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    headers = {name: ", ".join(response.headers.get_list(name)) for name in response.headers}
    base: dict[str, Any] = {
        "url": str(response.url),
        "status_code": response.status_code,
        "ok": response.status_code < 400,
        "headers": headers,
        "content_type": content_type,
        "size": len(body),
    }
    if not body:
        return HttpResponseOutput(**base, text="")
    text = _decode(body, response.charset_encoding)
    if (mime == "application/json" or mime.endswith("+json")) and text is not None:
        try:
            return HttpResponseOutput(**base, json=json.loads(text))
        except json.JSONDecodeError:
            logger.debug("body labelled JSON is not JSON", extra={"content_type": mime})
    is_texty = mime.startswith(_TEXT_TYPES) or mime.endswith(("+xml", "/json")) or not mime
    if text is not None and (is_texty or b"\x00" not in body[:1024]) and not _binary_type(mime):
        return HttpResponseOutput(**base, text=text)
    return HttpResponseOutput(**base, content_base64=base64.b64encode(body).decode("ascii"))


def _binary_type(mime: str) -> bool:
    return mime.startswith(("image/", "audio/", "video/", "font/")) or mime in (
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
    )


def _decode(body: bytes, charset: str | None) -> str | None:
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            encoding = "utf-8"
    try:
        return body.decode(encoding)
    except UnicodeDecodeError:
        return None if b"\x00" in body[:1024] else body.decode(encoding, errors="replace")


def request_needs_approval(args: dict[str, Any]) -> bool:
    """GET and HEAD read; any other method may change something and needs approval."""
    method = args.get("method", "GET")
    return not (isinstance(method, str) and method.upper() in SAFE_METHODS)


http_request: Tool = dataclasses.replace(_http_request, approval_predicate=request_needs_approval)
