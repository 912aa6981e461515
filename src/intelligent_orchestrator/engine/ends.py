"""Tells waiters in this process, at once, when a run of a task here has ended.

``Orchestrator.settled`` (and so ``wait``) sleeps until the end of a run this process started,
instead of polling the database: the journal tells the status the run's last commit made
durable (``ended``), and the run's end tells it again once the run is over (``over``), so a
waiter that arrives between the two needs no read either. Runs end on the application's event
loop or on DBOS's (recovered runs), so waiters are resolved thread-safely on their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from ..domain.models import TaskStatus


class TaskEnds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[asyncio.Future[TaskStatus | None]]] = {}
        self._last: dict[str, TaskStatus] = {}
        """Per task with a run under way here: the status its commit made durable, if any."""

    def watch(self, task_id: str) -> asyncio.Future[TaskStatus | None]:
        """A future told of the next end of a run of ``task_id`` here: with the status that
        end made durable, or None (read the status: the run wrote it some other way).
        Call :meth:`forget` with it if it is not awaited to the end."""
        fut: asyncio.Future[TaskStatus | None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.setdefault(task_id, []).append(fut)
        return fut

    def forget(self, task_id: str, fut: asyncio.Future[TaskStatus | None]) -> None:
        with self._lock:
            waiters = self._waiters.get(task_id)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[task_id]

    def ended(self, task_id: str, status: TaskStatus) -> None:
        """A run of ``task_id`` here has made ``status`` (finished or parked) durable."""
        with self._lock:
            self._last[task_id] = status
            waiters = self._waiters.pop(task_id, None)
        self._tell(waiters, status)

    def begin(self, task_id: str) -> None:
        """A run of ``task_id`` starts here: what an earlier run made durable is old news."""
        with self._lock:
            self._last.pop(task_id, None)

    def over(self, task_id: str) -> None:
        """A run of ``task_id`` here is over: its waiters are told the status it made
        durable, or None (they read the row: the run wrote it some other way, or crashed)."""
        with self._lock:
            status = self._last.pop(task_id, None)
            waiters = self._waiters.pop(task_id, None)
        self._tell(waiters, status)

    @staticmethod
    def _tell(
        waiters: list[asyncio.Future[TaskStatus | None]] | None, status: TaskStatus | None
    ) -> None:
        if not waiters:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for fut in waiters:
            loop = fut.get_loop()
            if loop is here:
                _tell(fut, status)
                continue
            with contextlib.suppress(RuntimeError):  # (its loop closed: nobody waits there)
                loop.call_soon_threadsafe(_tell, fut, status)


def _tell(fut: asyncio.Future[TaskStatus | None], status: TaskStatus | None) -> None:
    if not fut.done():
        fut.set_result(status)
