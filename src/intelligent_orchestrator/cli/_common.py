from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..orchestrator import Orchestrator
from ..settings import load_settings

T = TypeVar("T")


def open_orchestrator() -> Orchestrator:
    return Orchestrator(load_settings())


def run_with(fn: Callable[[Orchestrator], Awaitable[T]]) -> T:
    """Open an orchestrator, run ``fn`` in one event loop, always close."""

    async def main() -> T:
        orch = open_orchestrator()
        try:
            return await fn(orch)
        finally:
            await orch.close()

    return asyncio.run(main())
