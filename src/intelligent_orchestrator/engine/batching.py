"""Coalescing of calls that arrive together on one event loop into one batch call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Handler = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """``submit(item)`` resolves with ``handle``'s result for that item; ``handle`` is called
    with every item submitted on the loop since its last call, in order, and returns one
    result (or exception) per item.

    A call waits ``linger`` event-loop turns for others to join it (callers woken by the same
    event submit within a few turns); while one call is in flight, the next items gather for
    the one after, so a burst makes a few large calls and a lone item costs a few turns. An
    exception raised by ``handle`` itself fails every item of that call.
    """

    def __init__(self, handle: Handler[T, R], *, linger: int = 4, name: str = "coalescer") -> None:
        self._handle = handle
        self._linger = linger
        self._name = name
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]] = {}
        self._flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.setdefault(loop, []).append((item, fut))
        flusher = self._flushers.get(loop)
        if flusher is None or flusher.done():
            self._flushers[loop] = loop.create_task(self._flush(loop), name=self._name)
        return fut

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            for _ in range(self._linger):
                await asyncio.sleep(0)
            batch = self._pending.pop(loop, [])
            if not batch:
                self._flushers.pop(loop, None)
                return
            try:
                results = await self._handle([item for item, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # the caller gave up waiting
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
