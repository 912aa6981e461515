"""Coalescing of calls that arrive together on one event loop into one batch call."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Handler = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


_BUSY_LINGER_SECONDS = 0.002  # a busy linger's bound in time (a turn under load is long)


def _busy(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks are ready to run on ``loop`` besides the caller (CPython's
    loops keep them in ``_ready``; a loop without it counts as idle)."""
    ready = getattr(loop, "_ready", None)
    return bool(ready)


def linger(
    loop: asyncio.AbstractEventLoop, *, turns: int, busy_turns: int, busy_seconds: float
) -> asyncio.Future[None]:
    """Let ``turns`` event-loop turns pass, then up to ``busy_turns`` more while the loop has
    other work ready, ``busy_seconds`` at most from the start (under load a turn is long)."""
    until = loop.time() + busy_seconds
    done: asyncio.Future[None] = loop.create_future()
    turn = 0  # the turns passed when the waiter wakes, one turn after ``done`` resolves

    def tick() -> None:
        nonlocal turn
        if done.done():  # (the waiter gave up)
            return
        turn += 1
        if turn >= turns and (turn >= turns + busy_turns or not _busy(loop) or loop.time() > until):
            done.set_result(None)
        else:
            loop.call_soon(tick)

    tick()
    return done


class Coalescer(Generic[T, R]):
    """``submit(item)`` resolves with ``handle``'s result for that item; ``handle`` is called
    with every item submitted on the loop since its last call, in order, and returns one
    result (or exception) per item.

    A call waits ``linger`` event-loop turns for others to join it (callers woken by the same
    event submit within a few turns), and up to ``busy_linger`` more (and ``busy_seconds``)
    while the loop has other work ready (so that work, e.g. the steps a run just launched, is
    not slowed by the call's thread taking the GIL); while one call is in flight, the next items
    gather for the one after, so a burst makes a few large calls and a lone item costs a few
    turns. An exception raised by ``handle`` itself fails every item of that call.
    """

    def __init__(
        self,
        handle: Handler[T, R],
        *,
        linger: int = 4,
        busy_linger: int = 0,
        busy_seconds: float = _BUSY_LINGER_SECONDS,
        name: str = "coalescer",
    ) -> None:
        self._handle = handle
        self._linger = linger
        self._busy_linger = busy_linger
        self._busy_seconds = busy_seconds
        self._name = name
        self._pending: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]
        ] = weakref.WeakKeyDictionary()
        self._flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
        pending.append((item, fut))
        flusher = self._flushers.get(loop)
        if flusher is None or flusher.done():
            # (In a context of its own: not the first caller's, whose context variables, a
            # DBOS workflow's for one, must not leak into every item's handling.)
            self._flushers[loop] = loop.create_task(
                self._flush(loop), name=self._name, context=contextvars.Context()
            )
        return fut

    async def drain(self) -> None:
        """Wait until every item submitted on this loop so far is handled."""
        loop = asyncio.get_running_loop()
        while (flusher := self._flushers.get(loop)) is not None and not flusher.done():
            await asyncio.shield(flusher)

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await linger(
                loop,
                turns=self._linger,
                busy_turns=self._busy_linger,
                busy_seconds=self._busy_seconds,
            )
            batch = self._pending.pop(loop, [])
            if not batch:
                return
            try:
                results = list(await self._handle([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"{self._name}: {len(results)} results for {len(batch)} items"
                    )
            except BaseException as exc:
                # Every caller hears of it (none is left waiting); only a plain error lets
                # the next batch go on.
                for _, fut in batch:
                    if fut.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # the caller gave up waiting
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
