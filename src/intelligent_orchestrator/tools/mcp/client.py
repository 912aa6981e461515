"""One MCP server behind a connection manager that a broken server cannot take down with it.

:class:`McpServer` connects lazily (a stdio subprocess or a streamable HTTP session) on first use,
within ``startup_timeout_seconds``. Every await on the server is bounded: the handshake by the
startup timeout, a call by its own timeout (plus a short hard guard for a transport stuck
writing), teardown by the SDK's bounded shutdown (close stdin, SIGTERM, SIGKILL of the process
group) and our own cancel after that.

Failure policy:

- a transport failure (process exited, broken pipe, HTTP error, call timeout) tears the
  connection down in the background and the *next* call reconnects; the failing call raises
  :class:`ToolExecutionError` with ``transient=True`` (or :class:`ToolTimeoutError`);
- a call timeout tears the connection down too: it is the only way to stop the server's work,
  and in-flight calls on the same connection fail (transient) with it;
- an ``isError`` result, a JSON-RPC error answer and a result that does not parse (unknown
  content type, structured content not matching the declared output schema, bad base64) raise
  :class:`ToolExecutionError` with ``transient=False`` and keep the connection;
- a stdio server that writes non-JSON-RPC lines to stdout before the handshake completes
  fails to start after ``_GARBAGE_GRACE`` seconds (the spec forbids it; waiting the whole
  startup timeout would only delay the same error). After start, such lines are logged and
  ignored.

A server's stderr goes to a private temporary file (at most ~1 MB, then restarted) whose tail is
quoted in startup errors. An ``McpServer`` belongs to the event loop it first ran in; ``close()``
it there. ``close()`` disconnects; a later call connects again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any, Literal, cast

import anyio
import anyio.lowlevel
import httpx2
from mcp import Client, MCPError, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from ...errors import ToolError, ToolExecutionError, ToolTimeoutError
from .config import HttpServerConfig, McpServerConfig, StdioServerConfig

logger = logging.getLogger(__name__)

# Worst case of the SDK's stdio shutdown: 0.5 s flush + 2 s stdin-close grace + 2 s SIGTERM + 2 s reap.
_CLOSE_GRACE = 8.0
# How long a server that wrote garbage to stdout still gets to complete the handshake.
_GARBAGE_GRACE = 2.0
# Hard guard past a call's own timeout, for a transport stuck before the SDK's clock starts.
_CALL_GUARD = 2.0
_POLL = 0.05
_ERRLOG_MAX = 1_000_000
_STDERR_TAIL = 1500
_MAX_PAGES = 100
_ERROR_TEXT_MAX = 4000
# JSON-RPC codes the SDK uses for its own transport verdicts (not the server's answers).
_CONNECTION_CLOSED = types.CONNECTION_CLOSED
_REQUEST_TIMEOUT = types.REQUEST_TIMEOUT
# The streamable HTTP transport maps HTTP failures (4xx/5xx, bad body, lost session) to these.
_HTTP_TRANSPORT_CODES = frozenset({types.INTERNAL_ERROR, types.INVALID_REQUEST, types.PARSE_ERROR})


def _client_info() -> types.Implementation:
    try:
        ver = version("intelligent-orchestrator")
    except PackageNotFoundError:  # running from a source tree
        ver = "0"
    return types.Implementation(name="intelligent-orchestrator", version=ver)


@dataclass(frozen=True, slots=True, kw_only=True)
class McpAttachment:
    """A non-text content block of a result: image, audio, embedded resource or resource link."""

    type: Literal["image", "audio", "resource", "resource_link"]
    mime_type: str | None = None
    data: bytes | None = None  # decoded binary payload; None when omitted or not binary
    text: str | None = None  # an embedded text resource
    uri: str | None = None
    name: str | None = None
    size: int = 0  # bytes of data or text before any omission
    omitted: bool = False  # dropped because the result was over max_result_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCallResult:
    """A successful tool result, capped to ``max_result_bytes``.

    The cap counts the structured content (as JSON), the text and the attachments' payloads,
    in that order of priority: what does not fit is cut (text) or dropped (structured content,
    attachments) and ``truncated`` is set.
    """

    text: str
    structured: Any = None
    attachments: tuple[McpAttachment, ...] = ()
    truncated: bool = False
    size_bytes: int = 0  # size before capping


@dataclass(eq=False)
class _Connection:
    """One live (or starting, or dying) session with the server."""

    loop: asyncio.AbstractEventLoop
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    client: Client | None = None
    error: BaseException | None = None
    finished: bool = False
    eof: bool = False
    retired: bool = False
    garbage_count: int = 0
    first_garbage: str | None = None
    first_garbage_at: float | None = None
    errlog: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.client is not None and not (
            self.finished or self.eof or self.retired or self.stop.is_set()
        )

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.garbage_count += 1
            if self.first_garbage is None:
                self.first_garbage = _describe_garbage(message)
                self.first_garbage_at = time.monotonic()
            if self.client is not None and self.garbage_count <= 3:
                logger.warning(
                    "MCP server wrote non-JSON-RPC output: %s", _describe_garbage(message)
                )
        await anyio.lowlevel.checkpoint()

    def stderr_tail(self) -> str:
        if self.errlog is None or self.errlog.closed:
            return ""
        fd = self.errlog.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_TAIL)
        data = os.pread(fd, size - start, start)
        return data.decode("utf-8", "replace").strip()

    def trim_errlog(self) -> None:
        # O_APPEND: after the cut the server's next write lands at the new end (0).
        if self.errlog is not None and not self.errlog.closed:
            fd = self.errlog.fileno()
            if os.fstat(fd).st_size > _ERRLOG_MAX:
                os.ftruncate(fd, 0)

    def close_errlog(self) -> None:
        if self.errlog is not None:
            with suppress(OSError):
                self.errlog.close()


class _WatchedReadStream:
    """The transport's read stream, noting end-of-stream so a dead session is not reused."""

    def __init__(self, inner: Any, conn: _Connection) -> None:
        self._inner = inner
        self._conn = conn

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._conn.eof = True
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _watched(
    inner: AbstractAsyncContextManager[Any], conn: _Connection
) -> AsyncIterator[Any]:
    async with inner as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, conn), write_stream


@asynccontextmanager
async def _http_transport(config: HttpServerConfig, connect_timeout: float) -> AsyncIterator[Any]:
    # Read timeout stays long (the SDK's default): the GET event stream idles; calls have their own.
    timeout = httpx2.Timeout(min(connect_timeout, 30.0), read=300.0)
    async with (
        httpx2.AsyncClient(headers=config.headers, timeout=timeout) as http,
        streamable_http_client(config.url, http_client=http) as streams,
    ):
        yield streams


class McpServer:
    """Connection manager for one configured MCP server (see the module docstring)."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        startup_timeout_seconds: float = 20.0,
        call_timeout_seconds: float = 30.0,
        max_result_bytes: int = 1_000_000,
    ) -> None:
        self.config = config
        self.startup_timeout_seconds = startup_timeout_seconds
        self.call_timeout_seconds = call_timeout_seconds
        self.max_result_bytes = max_result_bytes
        self.connects = 0  # successful handshakes so far; a reconnect adds one
        self.server_info: types.Implementation | None = None
        self.protocol_version: str | None = None
        self._conn: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._teardowns: set[asyncio.Task[None]] = set()
        self._attempts = 0  # finished connection attempts
        self._last_error: ToolError | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return self.config.transport

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.alive

    def __repr__(self) -> str:
        return f"McpServer({self.name!r}, transport={self.transport!r}, connected={self.connected})"

    async def __aenter__(self) -> McpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public operations ---------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect now if not connected (otherwise the first call does it)."""
        await self._ensure(tool_id=None)

    async def list_tools(self, *, timeout: float | None = None) -> list[types.Tool]:
        """Every tool the server lists (following pagination)."""
        limit = timeout if timeout is not None else self.call_timeout_seconds
        conn = await self._ensure(tool_id=None)
        client = cast(Client, conn.client)
        tools: list[types.Tool] = []
        try:
            with anyio.fail_after(limit):
                cursor: str | None = None
                for _ in range(_MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except Exception as exc:
            raise self._failure(
                exc, conn, what="listing tools", timeout=limit, tool_id=None
            ) from exc
        return tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        max_result_bytes: int | None = None,
        tool_id: str | None = None,
    ) -> McpCallResult:
        """Call ``name``; see the module docstring for what each failure raises."""
        limit = timeout if timeout is not None else self.call_timeout_seconds
        conn = await self._ensure(tool_id=tool_id)
        client = cast(Client, conn.client)
        try:
            with anyio.fail_after(limit + _CALL_GUARD):
                result = await client.call_tool(name, arguments or {}, read_timeout_seconds=limit)
        except Exception as exc:
            raise self._failure(
                exc, conn, what=f"tool {name!r}", timeout=limit, tool_id=tool_id
            ) from exc
        finally:
            conn.trim_errlog()
        if result.is_error:
            message = _error_text(result) or "the tool reported an error without a message"
            raise ToolExecutionError(
                f"MCP server {self.name!r} tool {name!r} failed: {message}", tool_id=tool_id
            )
        cap = max_result_bytes if max_result_bytes is not None else self.max_result_bytes
        try:
            return _capped(result, cap)
        except _BadContent as exc:
            raise ToolExecutionError(
                f"MCP server {self.name!r} tool {name!r} returned an invalid result: {exc}",
                tool_id=tool_id,
            ) from exc

    def disconnect(self) -> None:
        """Start tearing the connection down in the background; ``close()`` waits for it."""
        if self._conn is not None and self._loop is asyncio.get_running_loop():
            self._retire(self._conn)

    async def close(self) -> None:
        """Disconnect and wait (bounded) until the server process is gone."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._forget_other_loop()
            return
        if self._conn is not None:
            self._retire(self._conn)
        pending = set(self._teardowns)
        if pending:
            await asyncio.wait(pending, timeout=2 * _CLOSE_GRACE + 1)

    # Connecting ------------------------------------------------------------------------------
    async def _ensure(self, *, tool_id: str | None) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._forget_other_loop()
            self._loop = loop
            self._lock = asyncio.Lock()
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        assert self._lock is not None
        seen = self._attempts
        async with self._lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if self._attempts != seen and self._last_error is not None:
                # We queued behind an attempt that just failed: share its verdict, don't wait again.
                raise _copy_error(self._last_error, tool_id)
            if conn is not None:
                self._retire(conn)
            self._last_error = None
            try:
                conn = await self._start()
            except ToolError as exc:
                self._last_error = exc
                raise _copy_error(exc, tool_id) from exc.__cause__
            finally:
                self._attempts += 1  # counted when finished, so waiters can tell
            self._conn = conn
            return conn

    def _forget_other_loop(self) -> None:
        if self._conn is not None or self._teardowns:
            logger.warning(
                "MCP server %r: connection made in another event loop abandoned; close() it in its own loop",
                self.name,
            )
        self._conn = None
        self._teardowns = set()

    async def _start(self) -> _Connection:
        conn = _Connection(loop=asyncio.get_running_loop())
        conn.task = asyncio.create_task(self._own(conn), name=f"mcp-server:{self.name}")
        started = time.monotonic()
        deadline = started + self.startup_timeout_seconds
        try:
            while True:
                if conn.finished:
                    raise self._startup_failure(conn)
                if conn.client is not None:
                    break
                now = time.monotonic()
                if (
                    conn.first_garbage_at is not None
                    and now - conn.first_garbage_at >= _GARBAGE_GRACE
                ):
                    raise ToolExecutionError(
                        f"MCP server {self.name!r} writes non-JSON-RPC output to stdout "
                        f"(first line: {conn.first_garbage}); a stdio server must write only "
                        f"JSON-RPC messages there{self._stderr_note(conn)}",
                    )
                if now >= deadline:
                    raise ToolTimeoutError(
                        f"MCP server {self.name!r} did not start within {self.startup_timeout_seconds:g} s"
                        f"{self._stderr_note(conn)}"
                    )
                with suppress(TimeoutError):
                    await asyncio.wait_for(conn.ready.wait(), timeout=min(_POLL, deadline - now))
        except BaseException:
            self._retire(conn)
            raise
        self.connects += 1
        client = conn.client
        self.protocol_version = client.protocol_version
        self.server_info = client.server_info
        logger.info(
            "MCP server %r connected in %.2f s (%s, protocol %s)",
            self.name,
            time.monotonic() - started,
            self.transport,
            self.protocol_version,
        )
        return conn

    async def _own(self, conn: _Connection) -> None:
        """Owns the session: entered and exited in this one task, as anyio requires."""
        try:
            transport = _watched(self._transport(conn), conn)
            async with Client(
                transport,
                mode="auto",
                cache=None,
                message_handler=conn.on_message,
                client_info=_client_info(),
            ) as client:
                conn.client = client
                conn.ready.set()
                await conn.stop.wait()
        except asyncio.CancelledError:
            pass  # our own teardown cancelled a stuck start or stop
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # incl. groups mixing cancellation and a transport error
            conn.error = exc
        finally:
            conn.finished = True
            conn.ready.set()

    def _transport(self, conn: _Connection) -> AbstractAsyncContextManager[Any]:
        config = self.config
        if isinstance(config, StdioServerConfig):
            # Append mode: trimming the file cannot leave a hole the server then writes past.
            # Closed by _teardown once the server is gone, not at the end of a block.
            conn.errlog = tempfile.TemporaryFile(  # noqa: SIM115
                mode="a+b", prefix=f"mcp-{_safe(self.name)}-", suffix=".stderr"
            )
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=dict(config.env) or None,
                cwd=config.cwd,
                encoding_error_handler="replace",
            )
            return stdio_client(params, errlog=cast(Any, conn.errlog))
        return _http_transport(config, self.startup_timeout_seconds)

    def _retire(self, conn: _Connection) -> None:
        """Tear ``conn`` down in the background; the next call starts a new one."""
        if self._conn is conn:
            self._conn = None
        if conn.retired:
            return
        conn.retired = True
        task = asyncio.create_task(self._teardown(conn), name=f"mcp-teardown:{self.name}")
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def _teardown(self, conn: _Connection) -> None:
        task = conn.task
        try:
            if task is None:
                return
            if not task.done() and conn.client is not None:
                conn.stop.set()  # graceful: the HTTP session is deleted, stdin closed first
                await asyncio.wait({task}, timeout=_CLOSE_GRACE)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=_CLOSE_GRACE)
            if not task.done():
                logger.warning("MCP server %r did not shut down in time; abandoned", self.name)
        finally:
            conn.close_errlog()

    # Errors ----------------------------------------------------------------------------------
    def _startup_failure(self, conn: _Connection) -> ToolError:
        exc = conn.error
        if isinstance(exc, FileNotFoundError) and isinstance(self.config, StdioServerConfig):
            return ToolExecutionError(
                f"MCP server {self.name!r}: command {self.config.command!r} not found (is it installed and on PATH?)"
            )
        if isinstance(exc, PermissionError) and isinstance(self.config, StdioServerConfig):
            return ToolExecutionError(
                f"MCP server {self.name!r}: command {self.config.command!r} is not executable"
            )
        if conn.first_garbage is not None:
            reason = f"it wrote non-JSON-RPC output to stdout (first line: {conn.first_garbage})"
        elif exc is None or any(
            isinstance(e, MCPError) and e.code == _CONNECTION_CLOSED for e in _leaves(exc)
        ):
            reason = "it closed the connection during the handshake" + (
                " (the process exited)" if self.transport == "stdio" else ""
            )
        else:
            reason = _describe(exc)
        return ToolExecutionError(
            f"MCP server {self.name!r} failed to start: {reason}{self._stderr_note(conn)}",
            transient=True,
        )

    def _stderr_note(self, conn: _Connection) -> str:
        tail = conn.stderr_tail()
        return f"; its stderr ends with: {tail[-_STDERR_TAIL:]!r}" if tail else ""

    def _failure(
        self,
        exc: BaseException,
        conn: _Connection,
        *,
        what: str,
        timeout: float,
        tool_id: str | None,
    ) -> ToolError:
        prefix = f"MCP server {self.name!r} {what}"
        garbage = (
            f" (it wrote {conn.garbage_count} non-JSON-RPC line(s) to stdout, first: {conn.first_garbage})"
            if conn.garbage_count
            else ""
        )
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, MCPError) and exc.code == _REQUEST_TIMEOUT
        ):
            self._retire(conn)
            return ToolTimeoutError(
                f"{prefix}: no answer within {timeout:g} s{garbage}", tool_id=tool_id
            )
        if isinstance(exc, MCPError):
            lost = exc.code == _CONNECTION_CLOSED or (
                self.transport == "http" and exc.code in _HTTP_TRANSPORT_CODES
            )
            if lost or not conn.alive:
                self._retire(conn)
                return ToolExecutionError(
                    f"{prefix}: connection lost ({exc.message}); the next call reconnects{garbage}"
                    f"{self._stderr_note(conn)}",
                    tool_id=tool_id,
                    transient=True,
                )
            return ToolExecutionError(
                f"{prefix}: the server answered with error {exc.code}: {exc.message}",
                tool_id=tool_id,
            )
        if isinstance(exc, ValidationError):
            # The session is intact; the server sent a result we cannot use.
            return ToolExecutionError(
                f"{prefix}: invalid result from the server: {_summarise(exc)}", tool_id=tool_id
            )
        if isinstance(exc, RuntimeError) and conn.alive:
            # The SDK's own checks, e.g. structured content that does not match the outputSchema.
            return ToolExecutionError(
                f"{prefix}: invalid result from the server: {_short(str(exc))}", tool_id=tool_id
            )
        self._retire(conn)
        return ToolExecutionError(
            f"{prefix}: transport failure ({_describe(exc)}); the next call reconnects{garbage}",
            tool_id=tool_id,
            transient=True,
        )


# Results ---------------------------------------------------------------------------------------
class _BadContent(ValueError):
    """A content block we cannot interpret."""


def _capped(result: types.CallToolResult, max_bytes: int) -> McpCallResult:
    texts: list[str] = []
    attachments: list[McpAttachment] = []
    for block in result.content:
        match block:
            case types.TextContent():
                texts.append(block.text)
            case types.ImageContent() | types.AudioContent():
                data = _b64(block.data, block.type)
                attachments.append(
                    McpAttachment(
                        type=block.type, mime_type=block.mime_type, data=data, size=len(data)
                    )
                )
            case types.ResourceLink():
                attachments.append(
                    McpAttachment(
                        type="resource_link",
                        uri=str(block.uri),
                        name=block.name,
                        mime_type=block.mime_type,
                    )
                )
            case types.EmbeddedResource():
                res = block.resource
                if isinstance(res, types.TextResourceContents):
                    size = len(res.text.encode())
                    attachments.append(
                        McpAttachment(
                            type="resource",
                            uri=str(res.uri),
                            mime_type=res.mime_type,
                            text=res.text,
                            size=size,
                        )
                    )
                else:
                    data = _b64(res.blob, "resource")
                    attachments.append(
                        McpAttachment(
                            type="resource",
                            uri=str(res.uri),
                            mime_type=res.mime_type,
                            data=data,
                            size=len(data),
                        )
                    )
            case _:
                raise _BadContent(f"unexpected content block of type {type(block).__name__}")

    structured = result.structured_content
    structured_size = (
        len(json.dumps(structured, ensure_ascii=False).encode()) if structured is not None else 0
    )
    text = "\n".join(texts)
    text_bytes = text.encode()
    total = structured_size + len(text_bytes) + sum(a.size for a in attachments)
    if total <= max_bytes:
        return McpCallResult(
            text=text, structured=structured, attachments=tuple(attachments), size_bytes=total
        )

    budget = max_bytes
    if structured is not None:
        if structured_size <= budget:
            budget -= structured_size
        else:
            structured = None
    if len(text_bytes) > budget:
        text = text_bytes[:budget].decode("utf-8", "ignore")
    budget -= len(text.encode())
    kept: list[McpAttachment] = []
    for att in attachments:
        if att.size <= budget:
            budget -= att.size
            kept.append(att)
        else:
            kept.append(
                McpAttachment(
                    type=att.type,
                    mime_type=att.mime_type,
                    uri=att.uri,
                    name=att.name,
                    size=att.size,
                    omitted=True,
                )
            )
    return McpCallResult(
        text=text, structured=structured, attachments=tuple(kept), truncated=True, size_bytes=total
    )


def _b64(data: str, kind: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _BadContent(f"{kind} content is not valid base64") from exc


def _error_text(result: types.CallToolResult) -> str:
    parts = [b.text for b in result.content if isinstance(b, types.TextContent)]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return _short("\n".join(parts).strip(), _ERROR_TEXT_MAX)


# Helpers ---------------------------------------------------------------------------------------
def _describe_garbage(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        for err in exc.errors():
            value = err.get("input")
            if isinstance(value, str | bytes):
                raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                return repr(_short(raw, 200))
    return _short(str(exc), 200)


_CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


def _summarise(exc: ValidationError) -> str:
    """One line for a result that does not parse; names an unknown content type when that is why."""
    errors = exc.errors()
    for err in errors:
        value = err.get("input")
        if tuple(err.get("loc", ()))[:1] == ("content",) and isinstance(value, dict):
            kind = cast(dict[str, Any], value).get("type")
            if kind not in _CONTENT_TYPES:
                return f"unexpected content block type {kind!r}"
    if not errors:
        return _short(str(exc))
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(result)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _short(f"field {where!r}: {first.get('msg', 'invalid')}{more}")


def _describe(exc: BaseException) -> str:
    leaves = _leaves(exc)
    return "; ".join(
        _short(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, 500) for e in leaves[:3]
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_leaves(sub))
        return out
    return [exc]


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]


def _copy_error(exc: ToolError, tool_id: str | None) -> ToolError:
    if isinstance(exc, ToolTimeoutError):
        return ToolTimeoutError(str(exc), tool_id=tool_id)
    return type(exc)(str(exc), tool_id=tool_id, transient=exc.transient)
