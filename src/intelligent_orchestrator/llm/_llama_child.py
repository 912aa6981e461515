"""The embedded model's server process (``local.local_server`` starts it as a script, so it
imports nothing of the orchestrator): load the model, write one JSON line saying where the
server listens (or why it could not start), serve until stdin ends."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any


def _serve(spec: dict[str, Any]) -> None:
    """The child: load the model, say where it listens, serve until stdin ends."""
    try:
        xllamacpp: Any = importlib.import_module("xllamacpp")
        params = xllamacpp.CommonParams()
        params.model.path = spec["model"]
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # a free port
        params.n_parallel = spec["n_parallel"]
        params.n_ctx = spec["n_ctx"]
        params.cpuparams.n_threads = spec["threads"]
        params.cpuparams_batch.n_threads = spec["threads"]
        params.verbosity = -1
        server = xllamacpp.Server(params)
        said: dict[str, Any] = {"url": server.listening_address}
    except Exception as exc:
        said = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(said) + "\n")
    sys.stdout.flush()
    if "url" in said:
        sys.stdin.buffer.read()  # until the parent closes it or dies
    os._exit(0 if "url" in said else 1)  # (not waiting for llama.cpp's threads)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
