"""An MCP server that dies (os._exit) in the middle of its first ``flaky`` call.

The first call creates the marker file named by $CRASH_MARKER and exits; later calls (a new
process, once the client reconnects) see the marker and answer.
"""

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

MARKER = Path(os.environ["CRASH_MARKER"])
server = MCPServer("crash")


@server.tool()
def flaky(message: str) -> str:
    """Crashes the server on the first call ever, answers afterwards."""
    if not MARKER.exists():
        MARKER.write_text("crashed once\n")
        sys.stderr.write("broken_crash: crashing mid-call\n")
        sys.stderr.flush()
        os._exit(1)
    return f"ok: {message}"


if __name__ == "__main__":
    server.run()
