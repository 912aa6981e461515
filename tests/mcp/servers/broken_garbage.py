"""Not an MCP server: writes plain text to stdout, one line per line it reads, until stdin closes."""

import sys

print("Welcome! This program does not speak JSON-RPC.", flush=True)
for line in sys.stdin:
    print(f"garbage: I read {len(line)} bytes", flush=True)
