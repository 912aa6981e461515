"""A hand-written stdio JSON-RPC server whose tool results are malformed in various ways.

No SDK: it answers ``initialize`` and ``tools/list`` correctly, then returns an unknown content
type, a result that is not a CallToolResult, invalid base64, or a stray stdout line before a
good answer.
"""

import json
import sys

_EMPTY = {"type": "object", "properties": {}}
TOOLS = [
    {
        "name": "video",
        "description": "Returns a content block of an unknown type.",
        "inputSchema": _EMPTY,
    },
    {
        "name": "not_a_result",
        "description": "Returns content that is not a list.",
        "inputSchema": _EMPTY,
    },
    {
        "name": "bad_base64",
        "description": "Returns an image that is not base64.",
        "inputSchema": _EMPTY,
    },
    {
        "name": "garbage_then_ok",
        "description": "Writes a stray line, then answers.",
        "inputSchema": _EMPTY,
    },
]
RESULTS = {
    "video": {"content": [{"type": "video", "data": "AAAA"}]},
    "not_a_result": {"content": "just a string"},
    "bad_base64": {
        "content": [{"type": "image", "data": "!!! not base64 !!!", "mimeType": "image/png"}]
    },
    "garbage_then_ok": {"content": [{"type": "text", "text": "fine"}]},
}


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue  # a notification or a response
    rid, method = msg["id"], msg["method"]
    if method == "initialize":
        version = msg["params"]["protocolVersion"]
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bad", "version": "1"},
        }
        send({"jsonrpc": "2.0", "id": rid, "result": result})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name == "garbage_then_ok":
            print("a stray log line on stdout", flush=True)
        send({"jsonrpc": "2.0", "id": rid, "result": RESULTS[name]})
    else:
        send(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {"code": -32601, "message": f"Method not found: {method}"},
            }
        )
