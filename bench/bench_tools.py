"""Tools used by the benchmark: no file writes, no I/O besides the sleep itself."""

from __future__ import annotations

import asyncio

from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import Tool, ToolContext, tool


@tool("bench_noop", category="bench")
async def bench_noop(value: int = 0) -> dict[str, int]:
    """Return the value."""
    return {"value": value}


@tool("bench_sleep", category="bench", timeout_seconds=600)
async def bench_sleep(seconds: float, value: int = 0) -> dict[str, int]:
    """Sleep, then return the value."""
    await asyncio.sleep(seconds)
    return {"value": value}


@tool("bench_send", category="bench", side_effects=True)
async def bench_send(ctx: ToolContext, message: str = "hi") -> dict[str, str]:
    """A side effect (parks for approval); does nothing but return a receipt."""
    return {"receipt": ctx.idempotency_key}


BENCH_TOOLS: list[Tool] = [bench_noop, bench_sleep, bench_send]


def bench_registry() -> ToolRegistry:
    return ToolRegistry(BENCH_TOOLS)
