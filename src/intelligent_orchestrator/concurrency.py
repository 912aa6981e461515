"""A limit on work in flight that holds for every event loop of the process.

The engine runs tasks on two event loops in one process: the application's (runs started
here) and DBOS's own (queued and recovered runs). An ``asyncio.Semaphore`` binds itself to the
first loop that waits on it and then refuses every other one ("is bound to a different event
loop"); :class:`Slots` may be awaited from any loop, and a slot freed on one loop wakes a
waiter on another.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import TracebackType


class Slots:
    """At most ``n`` holders at a time, served first come, first served."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"Slots needs at least one slot, not {n}")
        self._free = n
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for it (no await: the common case)."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            return False

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                queued = fut in self._waiters
                if queued:
                    self._waiters.remove(fut)
            if not queued and not fut.cancelled():
                # Woken with a slot, then cancelled before it ran: pass the slot on. (A slot
                # handed to a future cancelled first is passed on by _grant.)
                self.release()
            raise

    def release(self) -> None:
        """Free a slot: handed to the oldest waiter (on whatever loop it waits), if any."""
        with self._lock:
            while self._waiters:
                fut = self._waiters.popleft()
                try:
                    fut.get_loop().call_soon_threadsafe(_grant, fut, self)
                except RuntimeError:  # its loop is closed: nobody waits there any more
                    continue
                return
            self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _grant(fut: asyncio.Future[None], slots: Slots) -> None:
    """On the waiter's loop: wake it with its slot, or pass the slot on if it gave up."""
    if fut.cancelled():
        slots.release()
    elif not fut.done():
        fut.set_result(None)
