"""A proper MCP server (the SDK's MCPServer) whose ``sleep_forever`` tool never answers."""

import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("hang")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def sleep_forever() -> str:
    """Never returns."""
    await asyncio.sleep(3600)
    return "never"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def ping() -> str:
    """Answers pong."""
    return "pong"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with an isError result."""
    raise ToolError(f"refused: {reason}")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def big(size: int) -> str:
    """A text of ``size`` characters."""
    return "x" * size


if __name__ == "__main__":
    server.run()
