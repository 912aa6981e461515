"""Reading an ``mcp.json``: the ``mcpServers`` map used by Claude Desktop, Cursor, VS Code and others.

```json
{"mcpServers": {
    "time": {"command": "mcp-server-time", "args": [], "env": {"TZ": "UTC"}},
    "docs": {"url": "http://127.0.0.1:3001/mcp", "headers": {"Authorization": "Bearer ..."}}
}}
```

A server is either a stdio subprocess (``command``) or a streamable HTTP endpoint (``url``).
The keys other clients add (``disabled``, ``autoApprove``, ``timeout``...) are accepted; a key
we do not know is ignored and reported as a warning, so a typo (``"comand"``) is visible. A
server with ``"disabled": true`` is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import ConfigError

SETTING = "tools.mcp.config_file"

# Keys other MCP clients write into a server entry; accepted without a warning, not used.
_FOREIGN_KEYS = frozenset(
    {
        "disabled",
        "autoApprove",
        "alwaysAllow",
        "timeout",
        "description",
        "envFile",
        "disabledTools",
        "trust",
    }
)


class StdioServerConfig(BaseModel):
    """A server started as a subprocess and spoken to over its stdin/stdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    command: str = Field(min_length=1, description="Executable to start, found on PATH.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="Added to a minimal inherited environment (HOME, PATH, ...).",
    )
    cwd: Path | None = None

    @property
    def transport(self) -> Literal["stdio"]:
        return "stdio"


class HttpServerConfig(BaseModel):
    """A server reached over MCP streamable HTTP (one endpoint, usually ``.../mcp``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return v

    @property
    def transport(self) -> Literal["http"]:
        return "http"


McpServerConfig = StdioServerConfig | HttpServerConfig


@dataclass(frozen=True, slots=True)
class McpConfig:
    """The servers of one ``mcp.json``, in file order, and what was odd about the file."""

    servers: dict[str, McpServerConfig]
    warnings: list[str] = field(default_factory=list)
    source: str = "mcp.json"


class _Entry(BaseModel):
    """One ``mcpServers`` entry as written; turned into a Stdio/Http config after validation."""

    model_config = ConfigDict(extra="allow")

    type: Literal["stdio", "http", "streamable-http", "streamableHttp", "sse"] | None = None
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    disabled: bool = False


def load_mcp_config(path: Path) -> McpConfig:
    """Read and validate ``path``; every problem of the file is listed in one :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"MCP config file {str(path)!r} does not exist", setting=SETTING
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read MCP config file {str(path)!r}: {exc}", setting=SETTING
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            setting=SETTING,
        ) from exc
    return parse_mcp_config(data, source=str(path))


def parse_mcp_config(data: Any, *, source: str = "mcp.json") -> McpConfig:
    """Validate an already parsed ``mcp.json`` document."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a JSON object with 'mcpServers'", setting=SETTING)
    servers_raw = data.get("mcpServers")
    if servers_raw is None:
        # VS Code writes "servers"; accept it rather than make the user rename the key.
        servers_raw = data.get("servers")
    if servers_raw is None:
        raise ConfigError(
            f"{source}: missing 'mcpServers' (an object of server name -> settings)",
            setting=SETTING,
        )
    if not isinstance(servers_raw, Mapping):
        raise ConfigError(
            f"{source}: 'mcpServers' must be an object of server name -> settings", setting=SETTING
        )

    problems: list[str] = []
    warnings: list[str] = []
    servers: dict[str, McpServerConfig] = {}
    for name, raw in servers_raw.items():  # pyright: ignore[reportUnknownVariableType]  # JSON document
        name = str(name)  # pyright: ignore[reportUnknownArgumentType]
        if not name.strip() or not any(c.isalnum() for c in name):
            problems.append(f"server {name!r}: the name must contain a letter or digit")
            continue
        server, server_problems, server_warnings = _parse_entry(name, raw)
        problems.extend(server_problems)
        warnings.extend(server_warnings)
        if server is not None:
            servers[name] = server
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"{source}: invalid MCP configuration ({len(problems)} problem(s)):\n{lines}",
            setting=SETTING,
        )
    return McpConfig(servers=servers, warnings=warnings, source=source)


def _parse_entry(name: str, raw: Any) -> tuple[McpServerConfig | None, list[str], list[str]]:
    where = f"server {name!r}"
    if not isinstance(raw, Mapping):
        return None, [f"{where}: expected an object with 'command' or 'url'"], []
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        return None, [_field_problem(where, err) for err in exc.errors()], []

    warnings = [
        f"{where}: unknown key {key!r} ignored"
        for key in sorted(entry.model_extra or {})
        if key not in _FOREIGN_KEYS
    ]
    if entry.disabled:
        return None, [], [*warnings, f"{where}: disabled, skipped"]
    if entry.type == "sse":
        return (
            None,
            [
                f"{where}: field 'type': the SSE transport is not supported; use streamable HTTP ('url' of the /mcp endpoint)"
            ],
            warnings,
        )
    if entry.command is not None and entry.url is not None:
        return None, [f"{where}: give either 'command' (stdio) or 'url' (HTTP), not both"], warnings
    if entry.command is None and entry.url is None:
        return (
            None,
            [f"{where}: missing field 'command' (stdio server) or 'url' (HTTP server)"],
            warnings,
        )
    if entry.type == "stdio" and entry.command is None:
        return None, [f"{where}: field 'command': required when type is 'stdio'"], warnings
    if entry.type in {"http", "streamable-http", "streamableHttp"} and entry.url is None:
        return None, [f"{where}: field 'url': required when type is {entry.type!r}"], warnings
    try:
        if entry.command is not None:
            if entry.headers:
                warnings.append(f"{where}: 'headers' ignored for a stdio server")
            server: McpServerConfig = StdioServerConfig(
                name=name, command=entry.command, args=entry.args, env=entry.env, cwd=entry.cwd
            )
        else:
            assert entry.url is not None
            if entry.args or entry.env:
                warnings.append(f"{where}: 'args'/'env' ignored for an HTTP server")
            server = HttpServerConfig(name=name, url=entry.url, headers=entry.headers)
    except ValidationError as exc:
        return None, [_field_problem(where, err) for err in exc.errors()], warnings
    return server, [], warnings


def _field_problem(where: str, err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    shown = (
        f" (got {value!r})"
        if isinstance(value, str | int | float | bool) and len(repr(value)) < 80
        else ""
    )
    return f"{where}: field {loc!r}: {err['msg']}{shown}"
