"""Tools from the user's MCP servers: configuration, a per-server connection manager, discovery."""

from .client import McpAttachment, McpCallResult, McpServer
from .config import (
    HttpServerConfig,
    McpConfig,
    McpServerConfig,
    StdioServerConfig,
    load_mcp_config,
    parse_mcp_config,
)
from .discovery import (
    DiscoveryReport,
    ServerReport,
    discover,
    discover_servers,
    normalise_id,
    register_mcp_tools,
    tool_from_mcp,
    tool_id_for,
)

__all__ = [
    "DiscoveryReport",
    "HttpServerConfig",
    "McpAttachment",
    "McpCallResult",
    "McpConfig",
    "McpServer",
    "McpServerConfig",
    "ServerReport",
    "StdioServerConfig",
    "discover",
    "discover_servers",
    "load_mcp_config",
    "normalise_id",
    "parse_mcp_config",
    "register_mcp_tools",
    "tool_from_mcp",
    "tool_id_for",
]
