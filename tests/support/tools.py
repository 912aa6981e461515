"""Tools used by the engine tests: they count their runs in files, so runs survive kill -9."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from intelligent_orchestrator.errors import ToolExecutionError
from intelligent_orchestrator.tools.spec import Tool, ToolContext, tool


def _count(ctx: ToolContext, name: str) -> None:
    log = ctx.workspace / "runs.log"
    with log.open("a") as f:
        f.write(f"{ctx.task_id} {ctx.step_id} {name} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def runs(workspace: Path, task_id: str | None = None) -> list[str]:
    """Step ids run so far (one entry per run), optionally for one task."""
    log = workspace / "runs.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        t, step, _name, _pid = line.split()
        if task_id is None or t == task_id:
            out.append(step)
    return out


@tool("noop", category="test")
async def noop(ctx: ToolContext, value: int = 0) -> dict[str, int]:
    """Return the value (counts its run)."""
    _count(ctx, "noop")
    return {"value": value}


@tool("add", category="test")
async def add(ctx: ToolContext, a: int, b: int = 0) -> dict[str, int]:
    """Add two numbers."""
    _count(ctx, "add")
    return {"value": a + b}


@tool("sleep", category="test", timeout_seconds=600)
async def sleep(
    ctx: ToolContext, seconds: float, value: int = 0, retry_seconds: float | None = None
) -> dict[str, int]:
    """Sleep, then return the value; a marker file shows it started. ``retry_seconds``: sleep
    this long instead on a later attempt (so a test can kill the first one at leisure)."""
    _count(ctx, "sleep")
    (ctx.workspace / f"started-{ctx.task_id}-{ctx.step_id}").touch()
    await asyncio.sleep(retry_seconds if retry_seconds is not None and ctx.attempt > 1 else seconds)
    return {"value": value}


@tool("fail", category="test")
async def fail(ctx: ToolContext, message: str = "boom", transient: bool = False) -> dict[str, int]:
    """Always fail."""
    _count(ctx, "fail")
    raise ToolExecutionError(message, tool_id="fail", transient=transient)


@tool("flaky", category="test")
async def flaky(ctx: ToolContext, failures: int) -> dict[str, int]:
    """Fail transiently ``failures`` times, then succeed."""
    _count(ctx, "flaky")
    marker = ctx.workspace / f"flaky-{ctx.task_id}-{ctx.step_id}"
    seen = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(seen + 1))
    if seen < failures:
        raise ToolExecutionError(f"transient failure {seen + 1}", tool_id="flaky", transient=True)
    return {"value": seen + 1}


@tool("crash", category="test")
async def crash(ctx: ToolContext) -> dict[str, int]:
    """A tool with a bug."""
    _count(ctx, "crash")
    raise ZeroDivisionError("division by zero")


@tool("deliver", category="test", side_effects=True)
async def deliver(ctx: ToolContext, message: str, hold_seconds: float = 0.0) -> dict[str, str]:
    """Side effect: append to outbox.log once per idempotency key (like an API that honours the key).

    ``hold_seconds`` keeps the call that delivers busy after the effect, so a test can kill it
    there (a re-run after a crash finds the message delivered and returns at once).
    """
    _count(ctx, "deliver")
    outbox = ctx.workspace / "outbox.log"
    lines = outbox.read_text().splitlines() if outbox.exists() else []
    delivered = any(line.startswith(ctx.idempotency_key + " ") for line in lines)
    if not delivered:
        with outbox.open("a") as f:
            f.write(f"{ctx.idempotency_key} {message}\n")
            f.flush()
            os.fsync(f.fileno())
    (ctx.workspace / f"delivered-{ctx.task_id}-{ctx.step_id}").touch()
    if not delivered:
        await asyncio.sleep(hold_seconds)
    return {"receipt": ctx.idempotency_key}


def run_pids(workspace: Path, task_id: str) -> set[int]:
    """Process ids that ran steps of the task."""
    log = workspace / "runs.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return {int(line.split()[3]) for line in lines if line.split()[0] == task_id}


def outbox(workspace: Path) -> list[str]:
    path = workspace / "outbox.log"
    return path.read_text().splitlines() if path.exists() else []


def mail_workflow() -> dict:
    """A draft (pure) and a send (a side effect, so gated): "v5" is sent once approved."""
    return {
        "name": "mail",
        "steps": [
            {"id": "draft", "tool": "noop", "inputs": {"value": 5}},
            {
                "id": "send",
                "tool": "deliver",
                "inputs": {"message": "v${steps.draft.output.value}"},
            },
        ],
    }


TEST_TOOLS: list[Tool] = [noop, add, sleep, fail, flaky, crash, deliver]


def register_tools(registry) -> None:  # used by the subprocess harness through tool_modules
    for t in TEST_TOOLS:
        registry.register(t)
