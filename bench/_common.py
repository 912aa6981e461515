"""Shared pieces of the benchmark: workload shapes, RSS sampling, databases, machine info."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
MIB = 1024 * 1024

# Shapes ------------------------------------------------------------------------------------
CHAIN_STEPS = 100  # (a)
FANOUT_WIDTH = 50  # (b)
FANOUT_SLEEP = 0.050
BATCH_WORKFLOWS = 1000  # (d)
BATCH_STEPS = 5
BATCH_IN_FLIGHT = 100  # (d): at most this many workflows submitted and not finished, both engines
PARK_IN_FLIGHT = 50  # (e): at most this many tasks submitted and not yet parked
PARK_RESUME = 100  # (e): tasks approved and resumed per timed batch


@dataclass(frozen=True, slots=True)
class Node:
    """One step of a shape: id, seconds to sleep (0 = no-op), ids it waits for."""

    id: str
    sleep: float
    deps: tuple[str, ...]


def chain(n: int) -> list[Node]:
    return [Node(f"s{i}", 0.0, (f"s{i - 1}",) if i else ()) for i in range(n)]


def fanout(width: int = FANOUT_WIDTH, seconds: float = FANOUT_SLEEP) -> list[Node]:
    ws = [Node(f"w{i}", seconds, ("src",)) for i in range(width)]
    return [Node("src", 0.0, ()), *ws, Node("join", 0.0, tuple(w.id for w in ws))]


def uneven() -> list[Node]:
    """Critical path 200 ms: 1×200 ms, 2×100 ms chain, 4×50 ms chain, short 10–20 ms branches."""
    nodes = [
        Node("src", 0.0, ()),
        Node("a1", 0.200, ("src",)),
        Node("b1", 0.100, ("src",)),
        Node("b2", 0.100, ("b1",)),
        Node("c1", 0.050, ("src",)),
        Node("c2", 0.050, ("c1",)),
        Node("c3", 0.050, ("c2",)),
        Node("c4", 0.050, ("c3",)),
        Node("d1", 0.010, ("src",)),
        Node("d2", 0.015, ("src",)),
        Node("d3", 0.020, ("src",)),
        Node("e1", 0.010, ("src",)),
        Node("e2", 0.020, ("e1",)),
    ]
    return [*nodes, Node("join", 0.0, ("a1", "b2", "c4", "d1", "d2", "d3", "e2"))]


UNEVEN_CRITICAL_PATH = 0.200


def critical_path(nodes: list[Node]) -> float:
    finish: dict[str, float] = {}
    for n in nodes:  # listed in topological order
        finish[n.id] = n.sleep + max((finish[d] for d in n.deps), default=0.0)
    return max(finish.values())


# Memory ------------------------------------------------------------------------------------
class RssSampler:
    """Samples this process's RSS in a background thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def now(self) -> int:
        return int(self._proc.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.now())

    def reset_peak(self) -> None:
        self.peak = self.now()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


# Databases ---------------------------------------------------------------------------------
def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def create_pg_database() -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Reporting ---------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


REPO = Path(__file__).resolve().parent.parent
PACKAGE_SRC = REPO / "src" / "intelligent_orchestrator"


def tree_hash(pkg: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        digest.update(str(f.relative_to(pkg)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def snapshot_engine() -> Path:
    """Copy this repo's ``src/intelligent_orchestrator`` to a temporary folder and return the
    folder to put first on ``sys.path``: every worker imports that copy, so the whole run measures
    one version of the engine even while others edit ``src/`` (and whatever the editable install
    happens to point at)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    shutil.copytree(
        PACKAGE_SRC,
        root / "intelligent_orchestrator",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return root


def engine_source(pkg: Path = PACKAGE_SRC) -> dict[str, Any]:
    """Which engine code is measured: git HEAD of this repo, uncommitted changes under src/,
    and a hash of every .py file of the package copy."""
    import subprocess

    out: dict[str, Any] = {"src_sha256": tree_hash(pkg)}

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", "-C", str(REPO), *args],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.rstrip("\n")
        except Exception:  # no git: leave it out
            return ""

    out["git_head"] = git("log", "-1", "--format=%h %ci %s").strip()
    out["uncommitted_src"] = [
        line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()
    ]
    return out


def machine_info() -> dict[str, Any]:
    import psutil

    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "dbos": pkg_version("dbos"),
        "langgraph": pkg_version("langgraph"),
        "langgraph-checkpoint-sqlite": pkg_version("langgraph-checkpoint-sqlite"),
        "langgraph-checkpoint-postgres": pkg_version("langgraph-checkpoint-postgres"),
        "sqlalchemy": pkg_version("sqlalchemy"),
        "psycopg": pkg_version("psycopg"),
        "sqlite": __import__("sqlite3").sqlite_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgres"] = row[0] if row else "?"
    except Exception as exc:  # reported, not fatal
        info["postgres"] = f"unreachable: {exc}"
    return info


def perf() -> float:
    return time.perf_counter()
