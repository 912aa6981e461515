"""Step timeouts on shared timers.

``asyncio.timeout`` arms one timer per use: a 50-wide fan-out pushed fifty timers onto the
event loop's heap (and fifty cancelled ones stayed there) while its steps were starting; it
was 9% of the event loop's samples over a fan-out run (py-spy). The steps of a run that start together with the same
timeout share one timer here: a deadline is rounded up to a grain of 1/1000 of the timeout (at
most 50 ms), so a step times out at most that much late. Otherwise it behaves as
``asyncio.timeout``: the step's task is cancelled at the deadline and the cancellation is
turned into :class:`TimeoutError` where it was armed, unless someone else cancelled the task
as well.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_MAX_GRAIN = 0.05


class Deadlines:
    def __init__(self) -> None:
        self._timers: dict[float, tuple[asyncio.TimerHandle, set[asyncio.Task[object]]]] = {}
        self._armed: dict[asyncio.Task[object], tuple[float, int]] = {}
        """Per task: its deadline and how many cancel requests it had when armed."""
        self._expired: set[asyncio.Task[object]] = set()

    async def within(self, timeout: float, aw: Awaitable[T]) -> T:
        """``await aw`` in the current task, or raise :class:`TimeoutError` once ``timeout``
        seconds have passed (as ``async with asyncio.timeout(timeout)`` would)."""
        task = self.arm(timeout)
        try:
            result = await aw
        except BaseException as exc:
            if self.disarm(task, exc):
                raise TimeoutError from exc
            raise
        self.disarm(task, None)
        return result

    def arm(self, timeout: float) -> asyncio.Task[object]:
        """Cancel the current task ``timeout`` seconds from now (unless :meth:`disarm`\\ ed)."""
        task: asyncio.Task[object] | None = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.arm must be called from a task")
        if task in self._armed:
            raise RuntimeError("this task's deadline is armed already")
        loop = task.get_loop()
        grain = min(timeout / 1000, _MAX_GRAIN)
        when = loop.time() + timeout
        if math.isfinite(when) and grain > 0:  # (an infinite timeout: a timer that never fires)
            when = math.ceil(when / grain) * grain
        timer = self._timers.get(when)
        if timer is None:
            timer = self._timers[when] = (loop.call_at(when, self._expire, when), set())
        timer[1].add(task)
        self._armed[task] = (when, task.cancelling())
        return task

    def disarm(self, task: asyncio.Task[object], exc: BaseException | None) -> bool:
        """Stop ``task``'s deadline; True if the deadline (alone) caused ``exc``, a
        cancellation, which the caller then reports as a timeout."""
        when, cancelling = self._armed.pop(task)
        timer = self._timers.get(when)
        if timer is not None:
            timer[1].discard(task)
            if not timer[1]:
                timer[0].cancel()
                del self._timers[when]
        if task not in self._expired:
            return False
        self._expired.discard(task)
        # (Withdraw our cancel request, as asyncio.timeout does, whether or not it landed.)
        return task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError)

    def _expire(self, when: float) -> None:
        timer = self._timers.pop(when, None)
        if timer is None:
            return
        for task in timer[1]:
            if not task.done():
                self._expired.add(task)
                task.cancel()
