"""Discovering the tools of every configured MCP server and turning them into registry tools.

All servers are contacted at once; each gets ``startup_timeout_seconds`` to start *and* list its
tools (listing gets at least ``_MIN_LIST_SECONDS``), so one failing or hanging server costs the
others nothing and the whole discovery ends within about that timeout. A failed server is an
entry in :attr:`DiscoveryReport.errors`, never an exception.

Mapping of an MCP tool to a :class:`ToolSpecification`:

- ``tool_id``: ``<server>_<tool>`` in snake_case (``get-tiny-image`` on ``everything`` →
  ``everything_get_tiny_image``); an id that would not start with a letter gets ``mcp_`` in front.
  Two tools that map to the same id are both left out and reported in ``problems``.
- ``category``: a ``category`` string in the tool's ``_meta``, else a keyword heuristic over the
  tool's name and title, then the server's name, then its description; ``general`` otherwise.
- ``side_effects``: ``False`` only when the server marks the tool ``readOnlyHint: true``. An
  unmarked tool might write, so it is treated as side-effecting and needs approval (the safe
  default; ``destructiveHint`` does not matter once a tool is not read-only).
- ``output_schema``: the envelope every MCP tool returns, ``{text, structured, attachments,
  truncated}``, whose ``structured`` property carries the server's ``outputSchema`` when it has
  one. Binary content (images, audio, blobs) is saved as an artifact and listed in
  ``attachments`` with its workspace path, so no base64 travels in step results.
- ``timeout_seconds``: startup + call timeout + 5 s, because a call may have to (re)start the
  server first; the call itself is bounded by ``ctx.config.mcp.call_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import copy
import mimetypes
import re
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from mcp import types

from ...domain.models import ToolSpecification
from ...errors import ConfigError, ToolError
from ...settings import McpSettings
from ..registry import ToolRegistry
from ..spec import Implementation, Tool, ToolContext
from .client import McpCallResult, McpServer
from .config import McpConfig, load_mcp_config

_MIN_LIST_SECONDS = 2.0
_DESCRIPTION_MAX = 2000
_TIMEOUT_GRACE = 5.0

# First match wins; checked against the tool's name/title words, then the server name, then the description.
_CATEGORY_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "time",
        frozenset({"time", "date", "datetime", "timezone", "timezones", "tz", "clock", "calendar"}),
    ),
    (
        "files",
        frozenset(
            {
                "file",
                "files",
                "filesystem",
                "fs",
                "directory",
                "directories",
                "folder",
                "path",
                "paths",
            }
        ),
    ),
    (
        "development",
        frozenset({"git", "github", "gitlab", "commit", "branch", "diff", "repo", "repository"}),
    ),
    (
        "data",
        frozenset(
            {"sql", "query", "database", "db", "table", "tables", "csv", "spreadsheet", "dataset"}
        ),
    ),
    (
        "communication",
        frozenset({"email", "mail", "slack", "sms", "notify", "notification", "message", "chat"}),
    ),
    (
        "network",
        frozenset(
            {
                "fetch",
                "http",
                "https",
                "url",
                "web",
                "browse",
                "browser",
                "download",
                "scrape",
                "html",
                "search",
            }
        ),
    ),
    (
        "memory",
        frozenset(
            {
                "memory",
                "memories",
                "knowledge",
                "entity",
                "entities",
                "relation",
                "relations",
                "graph",
            }
        ),
    ),
    ("media", frozenset({"image", "images", "audio", "video", "photo", "picture", "screenshot"})),
    (
        "math",
        frozenset({"sum", "add", "math", "calculate", "calculator", "multiply", "arithmetic"}),
    ),
)


@dataclass(slots=True, kw_only=True)
class ServerReport:
    """How discovery went for one server."""

    name: str
    transport: Literal["stdio", "http"]
    duration_seconds: float
    tool_ids: list[str] = field(default_factory=list)
    error: str | None = None
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True, kw_only=True)
class DiscoveryReport:
    """The tools found, per-server outcome and timing, and the live server managers.

    The managers stay connected for the tools to use; ``aclose()`` (or ``async with``) them.
    """

    tools: list[Tool] = field(default_factory=list)
    servers: dict[str, ServerReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    managers: dict[str, McpServer] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        return {name: s.error for name, s in self.servers.items() if s.error is not None}

    @property
    def tool_ids(self) -> list[str]:
        return [t.tool_id for t in self.tools]

    def tool(self, tool_id: str) -> Tool:
        for t in self.tools:
            if t.tool_id == tool_id:
                return t
        raise KeyError(tool_id)

    async def aclose(self) -> None:
        """Disconnect every server (waits, bounded, until their processes are gone)."""
        await asyncio.gather(*(m.close() for m in self.managers.values()))

    async def __aenter__(self) -> DiscoveryReport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def discover(config_file: Path, settings: McpSettings) -> DiscoveryReport:
    """Read ``config_file`` (an ``mcp.json``) and discover every server's tools concurrently.

    Raises:
        ConfigError: the file is missing or invalid (a server that fails is reported, not raised).
    """
    return await discover_servers(load_mcp_config(config_file), settings)


async def discover_servers(config: McpConfig, settings: McpSettings) -> DiscoveryReport:
    """Discover the tools of the servers of an already loaded configuration."""
    started = time.monotonic()
    report = DiscoveryReport(problems=list(config.warnings))
    report.managers = {
        name: McpServer(
            cfg,
            startup_timeout_seconds=settings.startup_timeout_seconds,
            call_timeout_seconds=settings.call_timeout_seconds,
            max_result_bytes=settings.max_result_bytes,
        )
        for name, cfg in config.servers.items()
    }
    try:
        outcomes = await asyncio.gather(
            *(_discover_one(m, settings) for m in report.managers.values())
        )
    except BaseException:
        await report.aclose()
        raise

    candidates: list[tuple[Tool, str]] = []
    for manager, (server_report, listed) in zip(report.managers.values(), outcomes, strict=True):
        report.servers[manager.name] = server_report
        for mcp_tool in listed:
            try:
                candidates.append((tool_from_mcp(manager, mcp_tool, settings), mcp_tool.name))
            except ValueError as exc:
                report.problems.append(
                    f"server {manager.name!r}: tool {mcp_tool.name!r} skipped: {exc}"
                )

    by_id: dict[str, list[tuple[Tool, str]]] = defaultdict(list)
    for tool, mcp_name in candidates:
        by_id[tool.tool_id].append((tool, mcp_name))
    for tool_id, group in by_id.items():
        if len(group) > 1:
            owners = " and ".join(f"{t.spec.source} tool {n!r}" for t, n in group)
            report.problems.append(
                f"tool id {tool_id!r} clash: {owners}; none of them is registered"
            )
            continue
        tool = group[0][0]
        report.tools.append(tool)
        report.servers[tool.spec.source.removeprefix("mcp:")].tool_ids.append(tool_id)
    report.duration_seconds = time.monotonic() - started
    return report


async def _discover_one(
    manager: McpServer, settings: McpSettings
) -> tuple[ServerReport, list[types.Tool]]:
    started = time.monotonic()
    listed: list[types.Tool] = []
    error: str | None = None
    try:
        await manager.connect()
        remaining = settings.startup_timeout_seconds - (time.monotonic() - started)
        listed = await manager.list_tools(timeout=max(remaining, _MIN_LIST_SECONDS))
    except ToolError as exc:
        error = str(exc)
    except Exception as exc:  # a bug in a server's answer must not stop the others' discovery
        error = f"MCP server {manager.name!r}: discovery failed: {type(exc).__name__}: {exc}"
    if error is not None:
        # In the background: a dying server must not hold up the report; aclose() waits for it.
        manager.disconnect()
    info = manager.server_info
    return (
        ServerReport(
            name=manager.name,
            transport=manager.transport,
            duration_seconds=time.monotonic() - started,
            error=error,
            protocol_version=manager.protocol_version if error is None else None,
            server_name=info.name if info and error is None else None,
            server_version=info.version if info and error is None else None,
        ),
        listed,
    )


# Mapping ------------------------------------------------------------------------------------
def normalise_id(text: str) -> str:
    """``getCurrentTime`` / ``get-current time`` → ``get_current_time`` (ASCII snake_case)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def tool_id_for(server: str, tool: str) -> str:
    """The registry id of ``tool`` on ``server``; always matches ``^[a-z][a-z0-9_]*$``."""
    tid = "_".join(p for p in (normalise_id(server), normalise_id(tool)) if p)
    if not tid or not tid[0].isalpha():
        tid = f"mcp_{tid}".rstrip("_")
    return tid


def guess_category(tool: types.Tool, server: str) -> str:
    """A category from the tool's ``_meta``, else keywords in its name/title, server name, description."""
    meta_category = (tool.meta or {}).get("category")
    if isinstance(meta_category, str) and normalise_id(meta_category):
        return normalise_id(meta_category)
    title = tool.title or (tool.annotations.title if tool.annotations else None) or ""
    for text in (f"{tool.name} {title}", server, tool.description or ""):
        words = set(normalise_id(text).split("_"))
        for category, keywords in _CATEGORY_WORDS:
            if words & keywords:
                return category
    return "general"


def tool_from_mcp(server: McpServer, tool: types.Tool, settings: McpSettings) -> Tool:
    """Build the registry :class:`Tool` that calls ``tool`` on ``server``.

    Raises:
        ValueError: the tool's input schema is not a valid JSON Schema object.
    """
    input_schema = dict(tool.input_schema)
    if input_schema.get("type", "object") != "object":
        raise ValueError(f"input schema must be of type 'object', not {input_schema.get('type')!r}")
    try:
        jsonschema.Draft202012Validator.check_schema(input_schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid input schema: {exc.message}") from exc
    tool_id = tool_id_for(server.name, tool.name)
    title = tool.title or (tool.annotations.title if tool.annotations else None)
    description = (tool.description or title or tool.name).strip()
    if len(description) > _DESCRIPTION_MAX:
        description = description[: _DESCRIPTION_MAX - 1] + "…"
    read_only = bool(tool.annotations and tool.annotations.read_only_hint is True)
    spec = ToolSpecification(
        tool_id=tool_id,
        name=title or tool.name,
        description=description,
        category=guess_category(tool, server.name),
        input_schema=input_schema,
        output_schema=output_envelope_schema(tool.output_schema),
        estimated_cost=0.0,
        source=f"mcp:{server.name}",
        side_effects=not read_only,
        timeout_seconds=settings.startup_timeout_seconds
        + settings.call_timeout_seconds
        + _TIMEOUT_GRACE,
    )
    return Tool(spec=spec, implementation=_implementation(server, tool.name, tool_id))


def output_envelope_schema(structured: dict[str, Any] | None) -> dict[str, Any]:
    """The output schema of every MCP tool; ``structured`` follows the server's ``outputSchema``."""
    envelope: dict[str, Any] = {
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "description": "The text content of the result, blocks joined by newlines.",
            },
            "structured": {
                "description": "The structured content of the result, if the server returned one."
            },
            "attachments": {
                "type": "array",
                "description": "Images, audio and resources; binary ones are saved as workspace artifacts.",
                "items": {"type": "object"},
            },
            "truncated": {
                "type": "boolean",
                "description": "True when the result was cut to max_result_bytes.",
            },
        },
        "required": ["text", "structured", "attachments", "truncated"],
    }
    if structured:
        hoisted = _hoist_definitions(structured)
        if hoisted is not None:
            inner, defs = hoisted
            envelope["properties"]["structured"] = {
                "anyOf": [inner, {"type": "null"}],
                "description": "The structured content of the result (null when cut for size).",
            }
            if defs:
                envelope["$defs"] = defs
    return envelope


def _hoist_definitions(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Move ``$defs``/``definitions`` to the envelope root so ``#/...`` references still resolve.

    Returns None for a schema with other root-relative references, which cannot be nested.
    """
    inner = copy.deepcopy(schema)
    inner.pop("$schema", None)
    defs: dict[str, Any] = {}
    defs.update(inner.pop("$defs", None) or {})
    legacy = inner.pop("definitions", None) or {}
    defs.update(legacy)
    refs: list[str] = []
    _collect_refs(inner, refs)
    _collect_refs(defs, refs)
    if any(not r.startswith(("#/$defs/", "#/definitions/")) for r in refs if r.startswith("#")):
        return None
    if legacy:
        _rewrite_refs(inner)
        _rewrite_refs(defs)
    return inner, defs


def _collect_refs(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():  # pyright: ignore[reportUnknownVariableType]  # JSON schema
            if key == "$ref" and isinstance(value, str):
                out.append(value)
            else:
                _collect_refs(value, out)
    elif isinstance(node, list):
        for item in node:  # pyright: ignore[reportUnknownVariableType]
            _collect_refs(item, out)


def _rewrite_refs(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():  # pyright: ignore[reportUnknownVariableType]  # JSON schema
            if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
                node[key] = "#/$defs/" + value.removeprefix("#/definitions/")
            else:
                _rewrite_refs(value)
    elif isinstance(node, list):
        for item in node:  # pyright: ignore[reportUnknownVariableType]
            _rewrite_refs(item)


def _implementation(server: McpServer, mcp_name: str, tool_id: str) -> Implementation:
    async def call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        cfg = ctx.config.mcp
        result = await server.call_tool(
            mcp_name,
            args,
            timeout=cfg.call_timeout_seconds,
            max_result_bytes=cfg.max_result_bytes,
            tool_id=tool_id,
        )
        return result_output(result, ctx, tool_id=tool_id)

    return call


def result_output(result: McpCallResult, ctx: ToolContext, *, tool_id: str) -> dict[str, Any]:
    """The envelope a tool step returns; binary attachments become workspace artifacts."""
    attachments: list[dict[str, Any]] = []
    for index, att in enumerate(result.attachments, start=1):
        item: dict[str, Any] = {"type": att.type, "mime_type": att.mime_type, "size": att.size}
        if att.uri is not None:
            item["uri"] = att.uri
        if att.name is not None:
            item["name"] = att.name
        if att.omitted:
            item["omitted"] = True
        elif att.data is not None:
            ext = (mimetypes.guess_extension(att.mime_type) if att.mime_type else None) or ".bin"
            saved = ctx.save_artifact(f"{tool_id}-{index}{ext}", att.data, media_type=att.mime_type)
            item["artifact"] = saved.path
        elif att.text is not None:
            item["text"] = att.text
        attachments.append(item)
    return {
        "text": result.text,
        "structured": result.structured,
        "attachments": attachments,
        "truncated": result.truncated,
    }


def register_mcp_tools(registry: ToolRegistry, report: DiscoveryReport) -> list[str]:
    """Register every discovered tool; refuse all of them if any id is already registered.

    Raises:
        ConfigError: lists each clashing id and who holds it.
    """
    clashes = [
        f"{t.tool_id!r} (from {t.spec.source}, already registered by {registry.get(t.tool_id).spec.source})"
        for t in report.tools
        if t.tool_id in registry
    ]
    if clashes:
        raise ConfigError(
            "MCP tool ids clash with registered tools: "
            + ", ".join(clashes)
            + "; rename the server in the MCP config to change the id prefix",
            setting="tools.mcp.config_file",
        )
    for t in report.tools:
        registry.register(t)
    return [t.tool_id for t in report.tools]
